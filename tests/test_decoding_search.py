"""Greedy decoding and sampling with the cache against full recomputation."""
import jax
import numpy as np
import pytest

from decoding_utils import as_batch, next_outputs, prompts, reference_greedy, tiny
from irl_lm.decoding import generate

LAYOUTS = [("t5-tiny", False), ("gpt2-tiny", False), ("llama-tiny", False), ("llama-tiny", True)]
LENGTHS = [5, 2, 3]  # a mixed-length batch; the greedy runs below share one compilation


def greedy(model, params, toks, eos_id=-1):
  return generate(model, params, as_batch(model.cfg, toks), max_new_tokens=7, eos_id=eos_id)


@pytest.mark.parametrize("name,scan", LAYOUTS)
def test_cached_greedy_equals_full_recompute(name, scan):
  model, params = tiny(name, scan_layers=scan)
  toks = prompts(model.cfg, LENGTHS)
  got = greedy(model, params, toks)
  assert got.tokens.shape == (3, 1, 7) and got.scores.shape == got.lengths.shape == (3, 1)
  for i, n in enumerate(LENGTHS):
    want, score = reference_greedy(model, params, toks[i, :n], 7, eos=-1)
    np.testing.assert_array_equal(got.tokens[i, 0], want, err_msg=f"row {i}")
    np.testing.assert_allclose(got.scores[i, 0], score, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got.lengths, 7)


@pytest.mark.parametrize("name", ["t5-tiny", "gpt2-tiny"])
def test_mixed_length_batch_equals_each_prompt_alone(name):
  model, params = tiny(name)
  toks = prompts(model.cfg, LENGTHS)
  got = greedy(model, params, toks)
  for i in (1, 2):  # the rows padded in the batch (row 0 is the longest)
    alone = greedy(model, params, toks[i:i + 1, :LENGTHS[i]])
    np.testing.assert_array_equal(alone.tokens[0], got.tokens[i])
    np.testing.assert_allclose(alone.scores[0], got.scores[i], rtol=1e-5)


@pytest.mark.parametrize("name", ["t5-tiny", "gpt2-tiny"])
def test_each_row_stops_at_its_eos(name):
  model, params = tiny(name)
  toks = prompts(model.cfg, LENGTHS)
  free = np.asarray(greedy(model, params, toks).tokens[:, 0])
  eos = int(free[0, 2])  # a token the first row produces at step 3
  got = greedy(model, params, toks, eos_id=eos)
  for row, tokens, length in zip(free, np.asarray(got.tokens[:, 0]), np.asarray(got.lengths)):
    stop = int(np.argmax(row == eos)) + 1 if (row == eos).any() else 7
    assert length[0] == stop
    np.testing.assert_array_equal(tokens[:stop], row[:stop])
    np.testing.assert_array_equal(tokens[stop:], 0)
  assert got.lengths[0, 0] <= 3


@pytest.mark.parametrize("name,opts", [("t5-tiny", dict(top_k=1)),
                                       ("llama-tiny", dict(top_p=1e-6, temperature=3.0))])
def test_sampling_with_one_token_left_equals_greedy_and_rng_reproduces(name, opts):
  model, params = tiny(name)
  toks = prompts(model.cfg, LENGTHS)
  kw = dict(method="sample", num_samples=2, max_new_tokens=7, eos_id=-1)
  s = generate(model, params, as_batch(model.cfg, toks), rng=jax.random.key(1), **opts, **kw)
  np.testing.assert_array_equal(s.tokens, np.repeat(greedy(model, params, toks).tokens, 2, 1))
  np.testing.assert_allclose(s.scores, 0.0, atol=1e-6)  # one token left: log-prob 0
  a, b, c = (generate(model, params, as_batch(model.cfg, toks), rng=jax.random.key(r), **kw)
             for r in (7, 7, 8))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.scores, b.scores)
  assert (np.asarray(a.tokens) != np.asarray(c.tokens)).any()
  assert (np.asarray(a.tokens[:, 0]) != np.asarray(a.tokens[:, 1])).any()


def test_sample_scores_are_log_probs_under_the_decoding_distribution():
  model, params = tiny("gpt2-tiny")
  toks = prompts(model.cfg, [3], seed=2)
  got = generate(model, params, {"decoder_input_tokens": toks}, max_new_tokens=5, eos_id=-1,
                 method="sample", num_samples=4, rng=jax.random.key(0), temperature=0.7,
                 top_k=10)
  seqs = np.asarray(got.tokens[0])
  logits = np.asarray(next_outputs(model, params, toks[0], seqs[:, :-1]).logits) / 0.7
  kth = np.sort(logits, -1)[..., -10][..., None]
  logp = np.asarray(jax.nn.log_softmax(np.where(logits < kth, -np.inf, logits), -1))
  want = np.take_along_axis(logp, seqs[..., None], -1)[..., 0].sum(-1)
  np.testing.assert_allclose(got.scores[0], want, rtol=1e-4)


def test_sample_frequencies_follow_softmax_with_temperature():
  model, params = tiny("llama-tiny", vocab=8, seed=1)
  toks = prompts(model.cfg, [3])
  got = generate(model, params, {"decoder_input_tokens": toks}, max_new_tokens=1,
                 method="sample", num_samples=4000, temperature=0.5, rng=jax.random.key(2))
  logits = np.asarray(next_outputs(model, params, toks[0], toks[:, :0]).logits[0, -1])
  want = np.asarray(jax.nn.softmax(logits / 0.5))
  freq = np.bincount(np.asarray(got.tokens).reshape(-1), minlength=8) / 4000
  np.testing.assert_allclose(freq, want, atol=0.03)


@pytest.mark.parametrize("kw,msg", [
    (dict(method="topk"), "decoding.method='topk'"),
    (dict(method="greedy", num_samples=2), "decoding.num_samples=2"),
    (dict(method="sample", temperature=0.0), "decoding.temperature=0.0"),
    (dict(method="sample", top_p=0.0), "decoding.top_p=0.0"),
    (dict(ilql_beta=1.0), "no value heads"),
    (dict(max_new_tokens=1100), "needs 1104 positions"),
])
def test_bad_options_name_the_setting(kw, msg):
  model, params = tiny("gpt2-tiny")
  kw = {"max_new_tokens": 2, **kw}
  with pytest.raises(ValueError, match=msg):
    generate(model, params, {"decoder_input_tokens": np.ones((1, 5), np.int32)}, **kw)


def test_empty_decoder_prompt_is_an_error():
  model, params = tiny("gpt2-tiny")
  with pytest.raises(ValueError, match="at least one token"):
    generate(model, params, {"decoder_input_tokens": np.array([[3, 4], [0, 0]])},
             max_new_tokens=2)
