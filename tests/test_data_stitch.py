"""`embedded_stitch`: no logged response is fully right, the logger's pattern law is exact,
and cloning, exact or per-clause, lands at the 0.75 ceiling."""
import collections
import itertools

import numpy as np
import pytest

from irl_lm import data
from irl_lm.data import embedded
from irl_lm.data.embedded import ilql, stitch


def _pattern(ex: dict) -> tuple[bool, ...]:
  objects = ilql.prompt_objects(ex["inputs"])
  clauses = ex["targets"].rstrip(" .").split(" , ")
  return tuple(c.split()[2] in ilql.COLORS_OF[o] for o, c in zip(objects, clauses))


def test_no_logged_response_reaches_the_optimum():
  for split in ("train", "validation", "test"):
    rewards = [ex["reward"] for ex in embedded.generate("embedded_stitch", split)]
    assert max(rewards) == stitch.BEST_LOGGED_RETURN == 0.75 < stitch.OPTIMAL_REWARD
  for ex in embedded.generate("embedded_stitch", "validation"):
    assert ex["reward"] == ilql.score(ex["inputs"], ex["targets"]) == sum(_pattern(ex)) / 4


def test_the_pattern_law_matches_the_logged_frequencies():
  examples = embedded.generate("embedded_stitch", "train")
  counts = collections.Counter(_pattern(ex) for ex in examples)
  patterns = list(itertools.product((False, True), repeat=4))
  assert sum(stitch.pattern_probability(p) for p in patterns) == pytest.approx(1.0)
  for p in patterns:
    assert counts[p] / len(examples) == pytest.approx(stitch.pattern_probability(p), abs=0.01)
  mean = np.mean([ex["reward"] for ex in examples])
  assert mean == pytest.approx(stitch.BEHAVIOUR_MEAN_REWARD, abs=0.01)


def test_cloning_exactly_or_by_clause_lands_at_the_ceiling():
  assert stitch.greedy_bc_return() == stitch.marginal_bc_return() == stitch.PCT_BC_CEILING
  # the same greedy choices from the logged frequencies: right, right, right, wrong
  counts = collections.Counter(_pattern(ex) for ex in embedded.generate("embedded_stitch", "train"))
  prefix: tuple[bool, ...] = ()
  for _ in range(4):
    n = lambda r: sum(c for p, c in counts.items() if p[:len(prefix) + 1] == prefix + (r,))
    prefix += (n(True) > n(False),)
  assert prefix == (True, True, True, False)


def test_the_score_sits_on_eos_only():
  batch = next(data.BatchIterator("embedded_stitch", "train", "decoder",
                                  {"inputs": 16, "targets": 20}, 8, seed=0))
  vocab = data.make_vocabulary("embedded")
  for tokens, rewards in zip(batch["decoder_target_tokens"], batch["decoder_rewards"]):
    nonzero = np.flatnonzero(rewards)
    assert all(tokens[i] == vocab.eos_id for i in nonzero) and rewards.sum() <= 0.75
