"""ILQL-guided decoding: trlx's rule, beta = 0 is the behaviour policy, online/target heads."""
import jax
import numpy as np
import pytest

from decoding_utils import as_batch, prompts, reference_greedy, tiny
from irl_lm.decoding import generate
from irl_lm.models import q_heads, trunk_params


def with_heads(name):
  model, params = tiny(name, value_heads=True)
  noisy = jax.tree.map(lambda x: x + 0.5 * jax.random.normal(jax.random.key(9), x.shape),
                       q_heads(params))
  return model, params, noisy


def test_beta_zero_reproduces_the_behaviour_policy():
  model, params, tq = with_heads("t5-tiny")
  trunk = trunk_params(params)
  batch = as_batch(model.cfg, prompts(model.cfg, [4, 2]))
  kw = dict(max_new_tokens=6, method="sample", num_samples=2, rng=jax.random.key(3),
            temperature=0.8)
  got = generate(model, params, batch, ilql_beta=0.0, target_heads=tq, **kw)
  want = generate(model, trunk, batch, **kw)
  np.testing.assert_array_equal(got.tokens, want.tokens)
  np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("name", ["t5-tiny", "gpt2-tiny"])
def test_guided_greedy_follows_trlx_rule_with_target_or_online_heads(name):
  model, params, noisy = with_heads(name)
  lengths = [4, 2]
  toks = prompts(model.cfg, lengths)
  kw = dict(max_new_tokens=6, eos_id=-1, ilql_beta=2.0)
  target = generate(model, params, as_batch(model.cfg, toks), target_heads=noisy, **kw)
  online = generate(model, params, as_batch(model.cfg, toks), use_target_heads=False, **kw)
  copied = generate(model, params, as_batch(model.cfg, toks),
                    target_heads=q_heads(params), **kw)
  np.testing.assert_array_equal(copied.tokens, online.tokens)
  np.testing.assert_allclose(copied.scores, online.scores, rtol=1e-5)
  for got, heads, use_target in ((target, noisy, True), (online, None, False)):
    for i, n in enumerate(lengths):
      want, score = reference_greedy(model, params, toks[i, :n], 6, eos=-1, beta=2.0, tq=heads,
                                     target=use_target)
      np.testing.assert_array_equal(got.tokens[i, 0], want)
      np.testing.assert_allclose(got.scores[i, 0], score, rtol=1e-4, atol=1e-5)
  assert (np.asarray(target.tokens) != np.asarray(online.tokens)).any()


def test_target_heads_required_unless_online_chosen():
  model, params, _ = with_heads("gpt2-tiny")
  with pytest.raises(ValueError, match="use_target_heads=False"):
    generate(model, params, {"decoder_input_tokens": np.ones((1, 2), np.int32)},
             max_new_tokens=2, ilql_beta=1.0)
