"""Logit processing (top-k, top-p, temperature, ILQL scores) and the decoding config."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.decoding import default_config, generate_kwargs, log_probs, token_scores
from irl_lm.decoding.sampling import Settings, choose, top_k_filter, top_p_filter

PROBS = np.log(np.array([[0.1, 0.5, 0.05, 0.3, 0.05]], np.float32))


def kept(x):
  return np.isfinite(np.asarray(x))[0].tolist()


def test_top_k_and_top_p_keep_the_expected_tokens():
  assert kept(top_k_filter(jnp.asarray(PROBS), 2)) == [False, True, False, True, False]
  assert kept(top_p_filter(jnp.asarray(PROBS), 0.75)) == [False, True, False, True, False]
  assert kept(top_p_filter(jnp.asarray(PROBS), 0.85)) == [True, True, False, True, False]
  assert kept(top_p_filter(jnp.asarray(PROBS), 1e-6)) == [False, True, False, False, False]


def test_log_probs_apply_temperature_then_filters():
  s = Settings(method="sample", max_new_tokens=1, eos_id=1, temperature=2.0, top_k=3)
  got = np.asarray(log_probs(jnp.asarray(PROBS), s))
  scaled = np.where([[True, True, False, True, False]], PROBS / 2, -np.inf)
  np.testing.assert_allclose(got, np.asarray(jax.nn.log_softmax(scaled)), rtol=1e-6)


def test_ilql_scores_follow_trlx_rule():
  rng = np.random.default_rng(0)
  f = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))
  logits, q1, q2, v = f(2, 5), f(2, 5), f(2, 5), f(2)
  s = Settings(method="greedy", max_new_tokens=1, eos_id=1, ilql=True)
  want = jax.nn.log_softmax(logits) + 0.5 * (jnp.minimum(q1, q2) - v[:, None])
  np.testing.assert_allclose(token_scores(logits, 0.5, s, (q1, q2, v)), want, rtol=1e-6)
  plain = Settings(method="greedy", max_new_tokens=1, eos_id=1)
  np.testing.assert_array_equal(token_scores(logits, 0.5, plain), logits)


def test_behaviour_filters_restrict_the_support_before_the_perturbation():
  # Behaviour probabilities 0.1, 0.5, 0.05, 0.3, 0.05; the advantage favours the tokens
  # the behaviour policy ranks lowest, so trlx's rule alone would pick token 2.
  logits = jnp.asarray(PROBS + 1.5)
  q = jnp.asarray([[0.0, 0.0, 9.0, 1.0, 8.0]])
  values, beta = (q, q + 1.0, jnp.asarray([0.5])), 2.0
  perturbed = np.asarray(PROBS + beta * (np.asarray(q) - 0.5))
  assert int(np.argmax(perturbed)) == 2
  for kw, keep, best in ((dict(behaviour_top_p=0.75), [False, True, False, True, False], 3),
                         (dict(behaviour_top_p=0.85), [True, True, False, True, False], 3),
                         (dict(behaviour_top_k=1), [False, True, False, False, False], 1),
                         (dict(behaviour_top_k=3, behaviour_top_p=0.75),
                          [False, True, False, True, False], 3)):
    s = Settings(method="greedy", max_new_tokens=1, eos_id=1, ilql=True, **kw)
    got = token_scores(logits, beta, s, values)
    assert kept(got) == keep, kw
    np.testing.assert_allclose(np.asarray(got)[0, keep], perturbed[0, keep], rtol=1e-6)
    assert choose(got, s)[0].tolist() == [best]
  s = Settings(method="greedy", max_new_tokens=1, eos_id=1, behaviour_top_p=0.75)
  assert kept(token_scores(logits, beta, s)) == [False, True, False, True, False]  # no ILQL


def test_ilql_values_take_target_or_online_q_heads():
  from irl_lm.decoding.sampling import ilql_values
  from irl_lm.models import apply_heads, apply_q_heads, init_params, preset, q_heads
  cfg = preset("gpt2-tiny", vocab_size=16)
  params = init_params(cfg, jax.random.key(0), heads=True)
  target = jax.tree.map(lambda x: x + 1.0, q_heads(params))
  h = jax.random.normal(jax.random.key(1), (3, cfg.d_model))
  q1, q2, v = apply_heads(cfg, params, h[:, None])
  t1, t2 = apply_q_heads(cfg, target, h[:, None])
  for use_target, (w1, w2) in ((True, (t1, t2)), (False, (q1, q2))):
    s = Settings(method="greedy", max_new_tokens=1, eos_id=1, ilql=True,
                 use_target_heads=use_target)
    got = ilql_values(cfg, params, target, s)(h)
    for a, b in zip(got, (w1[:, 0], w2[:, 0], v[:, 0])):
      np.testing.assert_allclose(a, b, rtol=1e-6)


def test_choose_greedy_and_sampled_tokens_with_their_log_probs():
  s = Settings(method="sample", max_new_tokens=1, eos_id=1, temperature=0.5)
  scores = jnp.asarray(PROBS + 3.0)  # an offset per row changes nothing
  logp = np.asarray(jax.nn.log_softmax(PROBS / 0.5))
  tok, lp = choose(scores, s)
  assert tok.tolist() == [1]
  np.testing.assert_allclose(lp, logp[0, 1], rtol=1e-6)
  keys = jax.random.split(jax.random.key(0), 2000)
  toks, lps = jax.vmap(lambda k: choose(scores, s, k))(keys)
  freq = np.bincount(np.asarray(toks).reshape(-1), minlength=5) / 2000
  np.testing.assert_allclose(freq, np.exp(logp[0]), atol=0.03)
  np.testing.assert_allclose(lps[:, 0], logp[0, np.asarray(toks)[:, 0]], rtol=1e-5)


def test_token_choice_without_scores_picks_the_same_tokens_and_never_a_filtered_one():
  """``scores=False`` skips only the normaliser; inverse-CDF sampling never lands on a token
  with probability 0 (here the three outside top-2), even at the ends of the CDF."""
  s = Settings(method="sample", max_new_tokens=1, eos_id=1, top_k=2)
  quiet = dataclasses.replace(s, scores=False)
  scores = jnp.asarray([[0.0, 5.0, -1.0, 4.0, 2.0], [9.0, 0.0, 0.0, 0.0, 8.0]])
  assert choose(scores, quiet)[1] is None
  assert choose(scores, quiet)[0].tolist() == choose(scores, s)[0].tolist() == [1, 0]
  keys = jax.random.split(jax.random.key(3), 4000)
  toks = np.asarray(jax.vmap(lambda k: choose(scores, quiet, k)[0])(keys))
  same = np.asarray(jax.vmap(lambda k: choose(scores, s, k)[0])(keys))
  np.testing.assert_array_equal(toks, same)
  assert set(toks[:, 0]) == {1, 3} and set(toks[:, 1]) == {0, 4}
  np.testing.assert_allclose((toks[:, 0] == 1).mean(), 1 / (1 + np.exp(-1.0)), atol=0.03)


def test_config_maps_to_generate_arguments():
  config = default_config()
  config.method, config.eos_id, config.seed = "sample", 7, 3
  kw = generate_kwargs(config)
  assert kw["method"] == "sample" and kw["eos_id"] == 7 and kw["max_new_tokens"] == 64
  assert (jax.random.key_data(kw.pop("rng")) == jax.random.key_data(jax.random.key(3))).all()
  assert set(kw) == {"method", "max_new_tokens", "temperature", "top_k", "top_p", "num_beams",
                     "num_samples", "ilql_beta", "behaviour_top_k", "behaviour_top_p",
                     "use_target_heads", "eos_id"}
  assert (kw["behaviour_top_k"], kw["behaviour_top_p"]) == (0, 1.0)  # off: trlx's rule
  assert default_config().eos_id is None
