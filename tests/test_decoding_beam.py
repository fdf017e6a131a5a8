"""Beam search: one beam is greedy; enough beams find the exhaustive search's best sequences."""
import numpy as np
import pytest

from decoding_utils import as_batch, exhaustive, prompts, tiny
from irl_lm.decoding import generate

MODELS = [("t5-tiny", False), ("llama-tiny", True)]  # scanned layers: cache batch on axis 1


@pytest.mark.parametrize("name,scan", MODELS)
def test_one_beam_equals_greedy(name, scan):
  model, params = tiny(name, scan_layers=scan)
  batch = as_batch(model.cfg, prompts(model.cfg, [5, 2, 3]))
  greedy = generate(model, params, batch, max_new_tokens=7)
  beam = generate(model, params, batch, max_new_tokens=7, method="beam", num_beams=1)
  np.testing.assert_array_equal(beam.tokens, greedy.tokens)
  np.testing.assert_array_equal(beam.lengths, greedy.lengths)
  np.testing.assert_allclose(beam.scores, greedy.scores, rtol=1e-5)


@pytest.mark.parametrize("name,scan", MODELS)
def test_beams_match_exhaustive_search_on_tiny_vocab(name, scan):
  """With 6 tokens and 3 steps, 36 beams keep every live prefix, so the beams are
  exactly the 36 best of all continuations (ending at EOS = 5 or after 3 tokens)."""
  model, params = tiny(name, vocab=6, seed=4, scan_layers=scan)
  toks = prompts(model.cfg, [4, 2], seed=3)
  got = generate(model, params, as_batch(model.cfg, toks), max_new_tokens=3, method="beam",
                 num_beams=36)
  for i, n in enumerate([4, 2]):
    best = exhaustive(model, params, toks[i, :n], 3)[:36]
    np.testing.assert_array_equal(got.tokens[i], np.array([seq for seq, _ in best]))
    np.testing.assert_allclose(got.scores[i], [score for _, score in best], rtol=1e-5)
    ends = [(list(seq) + [5]).index(5) + 1 for seq, _ in best]
    np.testing.assert_array_equal(got.lengths[i], np.minimum(ends, 3))
