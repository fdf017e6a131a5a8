"""`embedded_arithmetic`: GSM8k-style word problems with worked answers (exact accuracy).

Eight problem types need one to three steps (+, -, *, /) over small numbers,
written with digits. The answer lists each step as `a op b = c .` and ends with
`#### result`, the GSM8k convention the accuracy metric reads. The operand order
of + and * (and the order of independent steps) is drawn at random, so several
worked answers are correct and a sampling policy can vary them while keeping the
final number right.
"""
import random
from collections.abc import Callable

NAMES = ("anna", "ben", "carl", "dora", "emma", "finn", "gina", "hugo", "iris", "jack",
         "kate", "leon", "mia", "noah", "olga", "paul")
ITEMS = ("apples", "pens", "cards", "eggs", "coins", "stickers", "marbles", "cookies",
         "books", "flowers")
CONTAINERS = ("boxes", "bags", "baskets", "jars", "packs", "trays")
FUNCTION_WORDS = ("has", "buys", "more", "how", "many", "does", "have", "now", "gives",
                  "to", "left", "with", "in", "each", "also", "loose", "then", "loses",
                  "of", "away", "are", "and", "they", "share", "them", "equally",
                  "among", "friends", "friend", "get", "total", "at", "dollars", "pays",
                  "much", "change")
WORDS = NAMES + ITEMS + CONTAINERS + FUNCTION_WORDS


def _sum(rng: random.Random, a: int, b: int) -> tuple[str, int]:
  x, y = (a, b) if rng.random() < 0.5 else (b, a)
  return f"{x} + {y} = {a + b}", a + b


def _product(rng: random.Random, a: int, b: int) -> tuple[str, int]:
  x, y = (a, b) if rng.random() < 0.5 else (b, a)
  return f"{x} * {y} = {a * b}", a * b


def _add(rng, v):
  step, s = _sum(rng, v["a"], v["b"])
  return (f"{v['name']} has {v['a']} {v['item']} . {v['name']} buys {v['b']} more {v['item']} . "
          f"how many {v['item']} does {v['name']} have now ?", [step], s)


def _subtract(rng, v):
  a, b = v["a"] + v["b"], v["b"]
  return (f"{v['name']} has {a} {v['item']} . {v['name']} gives {b} {v['item']} to {v['friend']} . "
          f"how many {v['item']} does {v['name']} have left ?", [f"{a} - {b} = {a - b}"], a - b)


def _multiply_add(rng, v):
  step1, p = _product(rng, v["m"], v["k"])
  step2, s = _sum(rng, p, v["c"])
  return (f"{v['name']} has {v['m']} {v['cont']} with {v['k']} {v['item']} in each . "
          f"{v['name']} also has {v['c']} loose {v['item']} . "
          f"how many {v['item']} does {v['name']} have ?", [step1, step2], s)


def _add_subtract(rng, v):
  step1, s = _sum(rng, v["a"], v["b"])
  c = rng.randint(1, s - 1)
  return (f"{v['name']} has {v['a']} {v['item']} . {v['friend']} gives {v['name']} {v['b']} more . "
          f"then {v['name']} loses {c} {v['item']} . how many {v['item']} does {v['name']} have now ?",
          [step1, f"{s} - {c} = {s - c}"], s - c)


def _multiply_subtract(rng, v):
  step1, p = _product(rng, v["m"], v["k"])
  c = rng.randint(1, p - 1)
  return (f"{v['name']} buys {v['m']} {v['cont']} of {v['item']} . each has {v['k']} {v['item']} . "
          f"{v['name']} gives away {c} {v['item']} . how many {v['item']} are left ?",
          [step1, f"{p} - {c} = {p - c}"], p - c)


def _add_divide(rng, v):
  people, each = v["m"], v["k"]
  a = rng.randint(1, people * each - 1)
  step1, s = _sum(rng, a, people * each - a)
  return (f"{v['name']} has {a} {v['item']} and {v['friend']} has {s - a} {v['item']} . "
          f"they share them equally among {people} friends . "
          f"how many {v['item']} does each friend get ?", [step1, f"{s} / {people} = {each}"], each)


def _two_products(rng, v):
  c, d = rng.randint(2, 9), rng.randint(2, 9)
  steps = [_product(rng, v["m"], v["k"]), _product(rng, c, d)]
  rng.shuffle(steps)
  step3, s = _sum(rng, steps[0][1], steps[1][1])
  cont2 = rng.choice([x for x in CONTAINERS if x != v["cont"]])
  return (f"{v['name']} has {v['m']} {v['cont']} with {v['k']} {v['item']} each and {c} {cont2} "
          f"with {d} {v['item']} each . how many {v['item']} does {v['name']} have in total ?",
          [steps[0][0], steps[1][0], step3], s)


def _change(rng, v):
  step1, p = _product(rng, v["m"], v["k"])
  paid = p + rng.randint(1, 20)
  return (f"{v['name']} buys {v['m']} {v['item']} at {v['k']} dollars each and pays with "
          f"{paid} dollars . how much change does {v['name']} get ?",
          [step1, f"{paid} - {p} = {paid - p}"], paid - p)


_PROBLEMS: tuple[Callable, ...] = (_add, _subtract, _multiply_add, _add_subtract,
                                   _multiply_subtract, _add_divide, _two_products, _change)


def make_example(rng: random.Random) -> dict[str, str]:
  """One word problem as {"inputs": question, "targets": "steps . #### answer"}."""
  name, friend = rng.sample(NAMES, 2)
  values = {"name": name, "friend": friend, "item": rng.choice(ITEMS),
            "cont": rng.choice(CONTAINERS), "a": rng.randint(2, 40), "b": rng.randint(2, 40),
            "c": rng.randint(1, 30), "m": rng.randint(2, 9), "k": rng.randint(2, 12)}
  question, steps, answer = rng.choice(_PROBLEMS)(rng, values)
  return {"inputs": question, "targets": " . ".join(steps) + f" . #### {answer}"}
