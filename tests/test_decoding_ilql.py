"""ILQL-guided decoding: trlx's rule, beta = 0 is the behaviour policy, online/target heads,
behaviour-policy filtering and a separate value trunk."""
import jax
import numpy as np
import pytest

from decoding_utils import as_batch, prompts, reference_greedy, tiny
from irl_lm.decoding import generate
from irl_lm.models import VALUE_TRUNK, q_heads, trunk_params


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


@pytest.mark.parametrize("kw,message", [
    (dict(behaviour_top_k=65), r"decoding.behaviour_top_k=65: must be in \[0, vocab_size=64\]"),
    (dict(behaviour_top_p=1.5), r"decoding.behaviour_top_p=1.5: must be in \(0, 1\]")])
def test_behaviour_filters_are_checked(kw, message):
  model, params, tq = with_heads("gpt2-tiny")
  with pytest.raises(ValueError, match=message):
    generate(model, params, {"decoder_input_tokens": np.ones((1, 2), np.int32)},
             max_new_tokens=2, ilql_beta=1.0, target_heads=tq, **kw)


def with_value_trunk(name, scale=0.5):
  """Value heads on a separate value trunk: a noisy copy of the policy trunk (scale 0: exact)."""
  model, params, tq = with_heads(name)
  trunk = trunk_params(params)
  noise = lambda x: scale * jax.random.normal(jax.random.key(11), x.shape)
  return model, {**params, VALUE_TRUNK: jax.tree.map(lambda x: x + noise(x), trunk)}, tq


@pytest.mark.parametrize("name", ["t5-tiny", "gpt2-tiny"])
def test_behaviour_top_k_one_decodes_the_greedy_behaviour_policy_for_any_beta(name):
  model, params, tq = with_heads(name)
  batch = as_batch(model.cfg, prompts(model.cfg, [4, 2]))
  kw = dict(max_new_tokens=6, eos_id=-1, target_heads=tq)
  want = generate(model, params, batch, **kw).tokens[:, 0]
  unfiltered = generate(model, params, batch, ilql_beta=1e3, **kw).tokens[:, 0]
  assert (np.asarray(unfiltered) != np.asarray(want)).any()  # beta alone changes the tokens
  for method, extra in (("greedy", {}), ("sample", dict(num_samples=2, temperature=2.0)),
                        ("beam", dict(num_beams=3))):
    got = generate(model, params, batch, ilql_beta=1e3, behaviour_top_k=1, method=method,
                   top_k=5, **extra, **kw)
    np.testing.assert_array_equal(got.tokens[:, 0], want, err_msg=method)
    np.testing.assert_array_equal(got.scores[:, 0], 0.0, err_msg=method)  # one-token support
    if method == "sample":
      np.testing.assert_array_equal(got.tokens[:, 1], want)


def test_separate_value_trunk_with_beta_zero_decodes_the_policy_trunk():
  model, params, tq = with_value_trunk("gpt2-tiny")
  batch = as_batch(model.cfg, prompts(model.cfg, [4, 2]))
  kw = dict(max_new_tokens=6, method="sample", num_samples=2, rng=jax.random.key(3))
  got = generate(model, params, batch, ilql_beta=0.0, target_heads=tq, **kw)
  want = generate(model, trunk_params(params), batch, **kw)
  np.testing.assert_array_equal(got.tokens, want.tokens)
  np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("name", ["t5-tiny", "gpt2-tiny"])
def test_separate_value_trunk_cached_decoding_equals_full_recompute(name):
  model, params, tq = with_value_trunk(name)
  lengths = [4, 2]
  toks = prompts(model.cfg, lengths)
  got = generate(model, params, as_batch(model.cfg, toks), max_new_tokens=6, eos_id=-1,
                 ilql_beta=2.0, target_heads=tq)
  shared = generate(model, {k: v for k, v in params.items() if k != VALUE_TRUNK},
                    as_batch(model.cfg, toks), max_new_tokens=6, eos_id=-1, ilql_beta=2.0,
                    target_heads=tq)
  assert (np.asarray(got.tokens) != np.asarray(shared.tokens)).any()  # the value trunk counts
  for i, n in enumerate(lengths):
    want, score = reference_greedy(model, params, toks[i, :n], 6, eos=-1, beta=2.0, tq=tq)
    np.testing.assert_array_equal(got.tokens[i, 0], want)
    np.testing.assert_allclose(got.scores[i, 0], score, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method,extra", [("beam", dict(num_beams=3)),
                                          ("sample", dict(num_samples=3))])
def test_value_trunk_copy_decodes_as_the_shared_trunk(method, extra):
  """Both caches follow the rows (beam reordering included): a value trunk that equals the
  policy trunk gives the shared trunk's tokens."""
  model, params, tq = with_value_trunk("gpt2-tiny", scale=0.0)
  shared = {k: v for k, v in params.items() if k != VALUE_TRUNK}
  batch = as_batch(model.cfg, prompts(model.cfg, [4, 2]))
  kw = dict(max_new_tokens=6, ilql_beta=4.0, target_heads=tq, method=method,
            rng=jax.random.key(5), **extra)
  got, want = generate(model, params, batch, **kw), generate(model, shared, batch, **kw)
  np.testing.assert_array_equal(got.tokens, want.tokens)
  np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
