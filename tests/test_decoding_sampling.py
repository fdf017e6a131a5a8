"""Logit processing (top-k, top-p, temperature, ILQL scores) and the decoding config."""
import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.decoding import default_config, generate_kwargs, log_probs, token_scores
from irl_lm.decoding.sampling import Settings, choose, top_k_filter, top_p_filter
from irl_lm.models import ModelOutput

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
  out = ModelOutput(logits=f(2, 5), q1=f(2, 5), q2=f(2, 5), v=f(2), target_q1=f(2, 5),
                    target_q2=f(2, 5))
  s = Settings(method="greedy", max_new_tokens=1, eos_id=1, ilql=True)
  lp = jax.nn.log_softmax(out.logits)
  want = lp + 0.5 * (jnp.minimum(out.target_q1, out.target_q2) - out.v[:, None])
  np.testing.assert_allclose(token_scores(out, 0.5, s), want, rtol=1e-6)
  online = Settings(method="greedy", max_new_tokens=1, eos_id=1, ilql=True,
                    use_target_heads=False)
  want = lp + 0.5 * (jnp.minimum(out.q1, out.q2) - out.v[:, None])
  np.testing.assert_allclose(token_scores(out, 0.5, online), want, rtol=1e-6)
  plain = Settings(method="greedy", max_new_tokens=1, eos_id=1)
  np.testing.assert_array_equal(token_scores(out, 0.5, plain), out.logits)


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


def test_config_maps_to_generate_arguments():
  config = default_config()
  config.method, config.eos_id, config.seed = "sample", 7, 3
  kw = generate_kwargs(config)
  assert kw["method"] == "sample" and kw["eos_id"] == 7 and kw["max_new_tokens"] == 64
  assert (jax.random.key_data(kw.pop("rng")) == jax.random.key_data(jax.random.key(3))).all()
  assert set(kw) == {"method", "max_new_tokens", "temperature", "top_k", "top_p", "num_beams",
                     "num_samples", "ilql_beta", "use_target_heads", "eos_id"}
  assert default_config().eos_id is None
