"""Generators for the three embedded offline tasks (no download needed).

`generate(task, split)` returns the same examples for the same `data_seed` on
every machine. Every example fits the embedded vocabulary and the length limits
(inputs <= 63 and targets <= 31 tokens before EOS); the generators resample
otherwise.
"""
import functools
import random
from types import ModuleType

from irl_lm.data.embedded import arithmetic, ilql, summarize
from irl_lm.data.embedded.ilql import score
from irl_lm.data.embedded.tokens import MAX_INPUT_TOKENS, MAX_TARGET_TOKENS, split_tokens
from irl_lm.errors import ConfigError

GENERATORS: dict[str, ModuleType] = {
    "embedded_summarize": summarize,
    "embedded_arithmetic": arithmetic,
    "embedded_ilql": ilql,
}
SPLIT_SIZES = {"train": 20_000, "validation": 1_000, "test": 1_000}
PUNCTUATION = (".", ",", "?", ":", "+", "-", "*", "/", "=", "####", "'", "!", "(", ")", ";")
DIGITS = tuple("0123456789")
SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")  # ids 0, 1, 2


def vocabulary_tokens() -> tuple[str, ...]:
  """The embedded vocabulary, id order: specials, digits, punctuation, sorted words."""
  words = sorted({w for module in GENERATORS.values() for w in module.WORDS})
  return SPECIAL_TOKENS + DIGITS + PUNCTUATION + tuple(words)


@functools.lru_cache(maxsize=None)
def generate(task: str, split: str, data_seed: int = 0) -> tuple[dict, ...]:
  """The examples of one embedded task split, as dicts with "inputs", "targets" (and "reward")."""
  if task not in GENERATORS:
    raise ConfigError(f"Unknown embedded task {task!r}; choose from {sorted(GENERATORS)}")
  if split not in SPLIT_SIZES:
    raise ConfigError(f"Unknown split {split!r}; choose from {sorted(SPLIT_SIZES)}")
  rng = random.Random(f"{task}/{split}/{data_seed}")
  examples = []
  while len(examples) < SPLIT_SIZES[split]:
    ex = GENERATORS[task].make_example(rng)
    if (len(split_tokens(ex["inputs"])) <= MAX_INPUT_TOKENS
        and len(split_tokens(ex["targets"])) <= MAX_TARGET_TOKENS):
      examples.append(ex)
  return tuple(examples)


__all__ = ["GENERATORS", "SPLIT_SIZES", "generate", "score", "vocabulary_tokens"]
