"""`embedded_ilql`: reward-labelled colour naming, logged by a suboptimal behaviour policy.

Prompt: ``what color is each : sky , coal , lemon , pig ?`` (four objects out of 32).
Response: ``sky is blue , coal is black , lemon is yellow , pig is pink .``

Reward (`score`, defined for any text): the response is split into clauses at
`,` and `.`; clause i earns a point when it reads ``<object i> is <a colour of
object i>``. The reward is points / max(4, number of clauses), in [0, 1]: 1.0 only
for four correct clauses in prompt order, and padding with extra clauses is
penalised. In the logged data the reward is dense: each clause's point (1/4)
sits on that clause's colour token, and the response's last token carries the
remainder (zero unless clauses were added or missing), so a sequence's rewards
always sum to `score`. `clause_turns` gives that split for any response.

Behaviour policy (the logger): a 50/50 mixture of two half-specialists. One
names the colours of objects 1-2 correctly with probability 0.8 and of objects
3-4 with probability 0.1; the other is its mirror image. A wrong answer is the
object's one typical confusion (`CONFUSION`, e.g. ``sky is gray``), so in the
logged data the most likely colour of every clause, given the prompt, is wrong
(0.55 against 0.45), and after a wrong clause the logger is probably the
specialist that botches that half. Each clause is correct with probability
0.45, so the behaviour policy's mean reward is 0.45, and greedy behaviour
cloning lands on half-right responses (about 0.5), while the optimum is 1.0. Only 0.8^2 * 0.1^2 = 0.64% of
logged responses are fully correct: optimal responses must stitch the correct
halves of different logged responses, which offline RL (ILQL) can do and behaviour
cloning cannot.
"""
import itertools
import math
import random
import re

COLORS_OF: dict[str, tuple[str, ...]] = {
    "sky": ("blue",), "sea": ("blue",), "grass": ("green",), "leaf": ("green",),
    "frog": ("green",), "snow": ("white",), "milk": ("white",), "cloud": ("white",),
    "coal": ("black",), "night": ("black",), "crow": ("black",), "sun": ("yellow",),
    "lemon": ("yellow",), "banana": ("yellow",), "corn": ("yellow",), "cherry": ("red",),
    "tomato": ("red",), "blood": ("red",), "strawberry": ("red",), "carrot": ("orange",),
    "pumpkin": ("orange",), "chocolate": ("brown",), "bear": ("brown",), "mud": ("brown",),
    "flamingo": ("pink",), "pig": ("pink",), "elephant": ("gray",), "mouse": ("gray",),
    "plum": ("purple",), "eggplant": ("purple",), "apple": ("red", "green"),
    "grape": ("purple", "green"),
}
COLORS = ("red", "blue", "green", "yellow", "white", "black", "brown", "orange", "pink",
          "gray", "purple")
# Each object's typical wrong colour: the next colour in COLORS that is not one of its own.
CONFUSION: dict[str, str] = {
    obj: next(COLORS[(COLORS.index(ok[0]) + k) % len(COLORS)] for k in range(1, len(COLORS))
              if COLORS[(COLORS.index(ok[0]) + k) % len(COLORS)] not in ok)
    for obj, ok in COLORS_OF.items()}
NUM_SLOTS = 4
GOOD_HALF_ACCURACY = 0.8
BAD_HALF_ACCURACY = 0.1
BEHAVIOUR_MEAN_REWARD = (GOOD_HALF_ACCURACY + BAD_HALF_ACCURACY) / 2
OPTIMAL_REWARD = 1.0
WORDS = tuple(COLORS_OF) + COLORS + ("what", "color", "is", "each")

_PROMPT_PREFIX = "what color is each :"
_CLAUSE_SPLIT = re.compile(r"[,.]")


def prompt_objects(prompt: str) -> list[str]:
  """The objects a prompt asks about, in order (empty if it is not a colour prompt)."""
  if ":" not in prompt:
    return []
  body = prompt.split(":", 1)[1].replace("?", " ")
  return [part.strip() for part in body.split(",") if part.strip()]


def score(prompt: str, response: str) -> float:
  """Reward in [0, 1] of `response` to `prompt`; see the module docstring."""
  objects = prompt_objects(prompt)
  if not objects:
    return 0.0
  clauses = [c.split() for c in _CLAUSE_SPLIT.split(response.lower()) if c.strip()]
  points = sum(
      1 for obj, clause in zip(objects, clauses)
      if len(clause) == 3 and clause[0] == obj and clause[1] == "is"
      and clause[2] in COLORS_OF.get(obj, ()))
  return points / max(len(objects), len(clauses))


def optimal_response(prompt: str) -> str:
  """A reward-1.0 response (first listed colour of each object)."""
  return " , ".join(f"{o} is {COLORS_OF[o][0]}" for o in prompt_objects(prompt)) + " ."


def behaviour_response(rng: random.Random, objects: list[str]) -> str:
  """One response from the logged behaviour policy (the half-specialist mixture)."""
  first_half_good = rng.random() < 0.5
  clauses = []
  for i, obj in enumerate(objects):
    good = (i < NUM_SLOTS // 2) == first_half_good
    accuracy = GOOD_HALF_ACCURACY if good else BAD_HALF_ACCURACY
    if rng.random() < accuracy:
      color = rng.choice(COLORS_OF[obj])
    else:
      color = CONFUSION[obj]
    clauses.append(f"{obj} is {color}")
  return " , ".join(clauses) + " ."


def clause_turns(prompt: str, response: str) -> list[tuple[str, float]]:
  """The response as (text, reward) turns whose texts join to it and rewards sum to `score`.

  Each ``, ``-separated clause is a turn rewarded with its own point
  (1 / max(4, clauses)); the final `` .`` turn carries the rest of the score.
  """
  parts = response.rsplit(" .", 1)
  body, tail = (parts[0], " ." + parts[1]) if len(parts) == 2 else (response, "")
  clauses = body.split(" , ")
  n = max(len(prompt_objects(prompt)), len(clauses))
  turns = []
  for i, clause in enumerate(clauses):
    text = clause if i == 0 else " , " + clause
    turns.append((text, _clause_point(prompt, i, clause) / n))
  rest = score(prompt, response) - sum(r for _, r in turns)
  if tail:
    turns.append((tail, rest))
  else:
    turns[-1] = (turns[-1][0], turns[-1][1] + rest)
  return turns


def _clause_point(prompt: str, i: int, clause: str) -> float:
  objects = prompt_objects(prompt)
  words = clause.split()
  return float(i < len(objects) and len(words) == 3 and words[0] == objects[i]
               and words[1] == "is" and words[2] in COLORS_OF.get(objects[i], ()))


def make_example(rng: random.Random) -> dict[str, str | float | list]:
  """One logged row: {"inputs": prompt, "targets": response, "reward": score, "turns": ...}."""
  objects = rng.sample(sorted(COLORS_OF), NUM_SLOTS)
  prompt = f"{_PROMPT_PREFIX} {' , '.join(objects)} ?"
  response = behaviour_response(rng, objects)
  return {"inputs": prompt, "targets": response, "reward": score(prompt, response),
          "turns": clause_turns(prompt, response)}


def reward_metric(targets: list[str], predictions: list[str]) -> dict[str, float]:
  """seqio metric: mean `score` of predictions; `targets` are the prompts (`prompt_as_target`)."""
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} prompts but {len(predictions)} predictions")
  total = sum(score(p, r) for p, r in zip(targets, predictions))
  return {"reward": total / len(targets) if targets else 0.0}


def bc_loss_floor(examples: list[dict], token_counts: list[int]) -> float:
  """The lowest mean per-token NLL a behaviour-cloning model can reach on ``examples``.

  Only the colours are random under the logging policy (everything else in a
  response follows from the prompt), so the floor is the entropy of the four
  colour choices under the half-specialist mixture, divided by the number of
  response tokens (``token_counts``, EOS included).
  """
  accuracy = {True: GOOD_HALF_ACCURACY, False: BAD_HALF_ACCURACY}
  total = 0.0
  for ex in examples:
    objects = prompt_objects(ex["inputs"])
    for right in itertools.product((False, True), repeat=len(objects)):
      p = sum(0.5 * math.prod(accuracy[(i < NUM_SLOTS // 2) == first_good] if r else
                              1 - accuracy[(i < NUM_SLOTS // 2) == first_good]
                              for i, r in enumerate(right))
              for first_good in (True, False))
      # a right answer is uniform over the object's colours
      total += p * (-math.log(p) + sum(math.log(len(COLORS_OF[o]))
                                       for o, r in zip(objects, right) if r))
  return total / sum(token_counts)
