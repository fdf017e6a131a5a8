"""`embedded_twenty_questions`: a multi-turn dialogue task with an environment written in code.

Modelled on the ILQL paper's Visual Dialogue setting. An object is hidden (one of
the 8 in `OBJECTS`, each a distinct combination of three yes/no attributes).
The agent asks yes/no questions, one per turn: ``is it big ?`` (an attribute,
`ATTRIBUTES`) or ``is it a frog ?`` (a guess). The environment answers
`` yes .`` or `` no .``; an utterance it does not understand is answered
`` no .``. Each agent turn earns -1 until a guess is right (the right guess earns
0 and ends the episode); the episode also ends after `MAX_TURNS` turns.

Logged data (the offline dataset) comes from two suboptimal policies, half each:

* the *asker* asks 2 or 3 distinct attribute questions, then ignores the answers
  and guesses uniformly among all objects (repeats allowed);
* the *guesser* asks one attribute question twice (learning one bit for two
  turns), then guesses uniformly among the objects consistent with its answers,
  never repeating a wrong guess.

The best policy (`optimal_return`, by exact dynamic programming over the objects
still consistent with the answers) asks one or two distinct questions and then
guesses among the consistent objects: -2.5 per episode, against -5.1 (asker),
-3.5 (guesser) and -4.3 (the mixture). Each logging policy has one good half:
the asker's questions and the guesser's guesses. An optimal dialogue joins the
asker's informative questions to guesses consistent with the answers, which the
logged data shows only as the asker's lucky random guesses and as the guesser's
guesses after its wasted turn.
"""
from __future__ import annotations

import functools
import random

ATTRIBUTES = ("animal", "big", "green")
OBJECTS: dict[str, tuple[bool, bool, bool]] = {  # (animal, big, green)
    "crocodile": (True, True, True), "elephant": (True, True, False),
    "frog": (True, False, True), "mouse": (True, False, False),
    "tree": (False, True, True), "sun": (False, True, False),
    "leaf": (False, False, True), "lemon": (False, False, False),
}
MAX_TURNS = 6
MAX_TARGET_TOKENS = MAX_TURNS * 7  # "is it an elephant ?" + " no ." per turn, before EOS
PROMPT = "what is hidden ?"
YES, NO = " yes .", " no ."
END_OF_TURN = "?"  # every agent utterance ends with it
WORDS = ATTRIBUTES + tuple(OBJECTS) + ("what", "is", "hidden", "it", "a", "an", "yes", "no")


def question(attribute: str) -> str:
  """``is it big ?``; ``animal`` is a noun: ``is it an animal ?``."""
  return "is it an animal ?" if attribute == "animal" else f"is it {attribute} ?"


def guess(obj: str) -> str:
  """``is it a frog ?`` / ``is it an elephant ?``."""
  return f"is it {'an' if obj[0] in 'aeiou' else 'a'} {obj} ?"


QUESTIONS = {question(a): a for a in ATTRIBUTES}
GUESSES = {guess(o): o for o in OBJECTS}


def normalise(utterance: str) -> str:
  """The canonical text of an utterance (lower case, single spaces)."""
  return " ".join(utterance.lower().split())


def answer(hidden: str, utterance: str) -> tuple[str, float, bool]:
  """The environment's (answer text, reward, episode over) for one agent turn."""
  text = normalise(utterance)
  if text in GUESSES:
    right = GUESSES[text] == hidden
    return (YES if right else NO), (0.0 if right else -1.0), right
  if text in QUESTIONS:
    value = OBJECTS[hidden][ATTRIBUTES.index(QUESTIONS[text])]
    return (YES if value else NO), -1.0, False
  return NO, -1.0, False


class Episode:
  """One dialogue against the environment: feed agent utterances, read answers."""

  def __init__(self, hidden: str):
    self.hidden = hidden
    self.turns: list[tuple[str, str, float]] = []  # (utterance, answer, reward)
    self.done = False

  def step(self, utterance: str) -> str:
    """Plays one agent turn; returns the environment's answer text."""
    if self.done:
      raise ValueError("the episode is over")
    reply, reward, solved = answer(self.hidden, utterance)
    self.turns.append((normalise(utterance), reply, reward))
    self.done = solved or len(self.turns) >= MAX_TURNS
    return reply

  @property
  def total_reward(self) -> float:
    return sum(r for _, _, r in self.turns)

  def as_turns(self) -> list[tuple[str, bool, float]]:
    """The dialogue as (text, is_action, reward) turns (agent turns carry the rewards)."""
    out: list[tuple[str, bool, float]] = []
    for i, (utterance, reply, reward) in enumerate(self.turns):
      out += [((" " if i else "") + utterance, True, reward), (reply, False, 0.0)]
    return out


def _consistent(answers: dict[str, bool]) -> list[str]:
  return [o for o, v in OBJECTS.items()
          if all(v[ATTRIBUTES.index(a)] == yes for a, yes in answers.items())]


def _asker(rng: random.Random, ep: Episode) -> None:
  for attribute in rng.sample(ATTRIBUTES, rng.choice((2, 3))):
    ep.step(question(attribute))
  while not ep.done:
    ep.step(guess(rng.choice(sorted(OBJECTS))))


def _guesser(rng: random.Random, ep: Episode) -> None:
  attribute = rng.choice(ATTRIBUTES)
  reply = ""
  for _ in range(2):
    reply = ep.step(question(attribute))
  candidates = _consistent({attribute: reply == YES})
  rng.shuffle(candidates)
  while not ep.done and candidates:
    ep.step(guess(candidates.pop()))


LOGGING_POLICIES = {"asker": _asker, "guesser": _guesser}


def logged_episode(rng: random.Random, policy: str | None = None) -> Episode:
  """One episode of a logging policy (None: the mixture, asker or guesser half each)."""
  ep = Episode(rng.choice(sorted(OBJECTS)))
  LOGGING_POLICIES[policy or rng.choice(sorted(LOGGING_POLICIES))](rng, ep)
  return ep


@functools.lru_cache(maxsize=None)
def _value(candidates: frozenset[str], asked: frozenset[str], turns_left: int) -> float:
  """Best expected return from a belief (objects consistent so far), hidden uniform in it."""
  if turns_left == 0:
    return 0.0
  best = -float(turns_left)  # e.g. repeating a question until the end
  for obj in candidates:  # guess obj: right with prob 1/|candidates|
    rest = candidates - {obj}
    p = 1.0 / len(candidates)
    value = (1 - p) * (-1.0 + (_value(rest, asked, turns_left - 1) if rest else 0.0))
    best = max(best, value)
  for a in set(ATTRIBUTES) - asked:
    i = ATTRIBUTES.index(a)
    yes = frozenset(o for o in candidates if OBJECTS[o][i])
    no = candidates - yes
    value = -1.0 + sum(len(part) / len(candidates) * _value(part, asked | {a}, turns_left - 1)
                       for part in (yes, no) if part)
    best = max(best, value)
  return best


def optimal_return() -> float:
  """The best achievable expected return per episode (exact, hidden object uniform)."""
  return _value(frozenset(OBJECTS), frozenset(), MAX_TURNS)


def logging_return(policy: str | None = None, episodes: int = 20_000, seed: int = 0) -> float:
  """A logging policy's mean return (Monte Carlo; None: the mixture)."""
  rng = random.Random(seed)
  return sum(logged_episode(rng, policy).total_reward for _ in range(episodes)) / episodes


def make_example(rng: random.Random) -> dict[str, object]:
  """One logged row: {"inputs", "targets", "reward", "turns": [(text, is_action, reward)]}."""
  ep = logged_episode(rng)
  turns = ep.as_turns()
  return {"inputs": PROMPT, "targets": "".join(t for t, _, _ in turns),
          "reward": ep.total_reward, "turns": turns, "hidden": ep.hidden}
