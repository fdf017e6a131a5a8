"""`embedded_stitch`: the colour task with a logger whose every response has a wrong clause.

Same prompts, responses and reward as `embedded_ilql` (`ilql.score`: points / 4,
on the response's EOS). The logging policy botches one clause per response (it
names that object's `ilql.CONFUSION`), the last with probability 0.7 and each
other with 0.1 (`BOTCH_PROBABILITIES`), and names every other colour correctly
with probability `ACCURACY`, else its confusion.

So no logged response is fully correct: the best logged return is 0.75
(`BEST_LOGGED_RETURN`), and any policy that only produces responses seen in the
data, which is all that filtered behaviour cloning (%BC) imitates whatever its
fraction, scores at most 0.75 (`PCT_BC_CEILING`). The optimum 1.0 needs the last
right clause after three right ones: never logged after that prefix, but logged
and rewarded after every prefix with an earlier wrong clause. Only a policy that
carries that credit across prefixes reaches it.

Cloning lands at 0.75 whether it fits the logger exactly (`greedy_bc_return`:
right, right, right, wrong) or only each clause's marginal (`marginal_bc_return`:
the last clause is right in 0.3 * 0.7 of logged responses, and in 0.3 of the
0.75-return responses that %BC keeps), so a model that under-fits the clauses'
dependence cannot stitch by accident.
"""
from __future__ import annotations

import itertools
import random

from irl_lm.data.embedded import ilql

ACCURACY = 0.7
BOTCH_PROBABILITIES = (0.1, 0.1, 0.1, 0.7)
NUM_SLOTS = ilql.NUM_SLOTS
BEHAVIOUR_MEAN_REWARD = sum((1 - p) * ACCURACY for p in BOTCH_PROBABILITIES) / NUM_SLOTS
BEST_LOGGED_RETURN = PCT_BC_CEILING = (NUM_SLOTS - 1) / NUM_SLOTS
OPTIMAL_REWARD = 1.0
WORDS = ilql.WORDS


def behaviour_response(rng: random.Random, objects: list[str]) -> str:
  """One logged response: one botched slot, the others right with probability `ACCURACY`."""
  botched = rng.choices(range(NUM_SLOTS), BOTCH_PROBABILITIES)[0]
  clauses = []
  for i, obj in enumerate(objects):
    right = i != botched and rng.random() < ACCURACY
    clauses.append(f"{obj} is {rng.choice(ilql.COLORS_OF[obj]) if right else ilql.CONFUSION[obj]}")
  return " , ".join(clauses) + " ."


def make_example(rng: random.Random) -> dict[str, str | float]:
  """One logged row: {"inputs": prompt, "targets": response, "reward": score}."""
  objects = rng.sample(sorted(ilql.COLORS_OF), NUM_SLOTS)
  prompt = f"what color is each : {' , '.join(objects)} ?"
  response = behaviour_response(rng, objects)
  return {"inputs": prompt, "targets": response, "reward": ilql.score(prompt, response)}


def pattern_probability(right: tuple[bool, ...]) -> float:
  """The logger's probability of a pattern of right (True) and wrong clauses."""
  total = 0.0
  for botched, p in enumerate(BOTCH_PROBABILITIES):
    for i, r in enumerate(right):
      p *= (0.0 if r else 1.0) if i == botched else (ACCURACY if r else 1 - ACCURACY)
    total += p
  return total


def greedy_bc_return() -> float:
  """The return of the logger's most likely clause at every step (exact greedy BC; a tie
  goes to the right colour)."""
  right: tuple[bool, ...] = ()
  for _ in range(NUM_SLOTS):
    joint = lambda r: sum(pattern_probability(right + (r,) + rest)
                          for rest in itertools.product((False, True),
                                                        repeat=NUM_SLOTS - len(right) - 1))
    right += (joint(True) >= joint(False),)
  return sum(right) / NUM_SLOTS


def marginal_bc_return() -> float:
  """The return of greedy cloning of each clause's marginal (ignoring earlier clauses)."""
  return sum((1 - p) * ACCURACY >= 0.5 for p in BOTCH_PROBABILITIES) / NUM_SLOTS
