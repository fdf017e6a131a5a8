"""Generators for the embedded offline tasks (no download needed).

`generate(task, split)` returns the same examples for the same `data_seed` on
every machine. Every example fits the embedded vocabulary and the length limits
(inputs <= 63 and targets <= 31 tokens before EOS, or the generator module's own
`MAX_TARGET_TOKENS`); the generators resample otherwise.
"""
import functools
import random
from types import ModuleType

from irl_lm.data.embedded import arithmetic, ilql, stitch, summarize, twenty_questions
from irl_lm.data.embedded.ilql import score
from irl_lm.data.embedded.tokens import MAX_INPUT_TOKENS, MAX_TARGET_TOKENS, split_tokens
from irl_lm.errors import ConfigError

GENERATORS: dict[str, ModuleType] = {
    "embedded_summarize": summarize,
    "embedded_arithmetic": arithmetic,
    "embedded_ilql": ilql,
    "embedded_twenty_questions": twenty_questions,
    "embedded_stitch": stitch,
}
# The vocabulary of the first three tasks keeps its ids; later tasks' new words follow them.
_FIRST_GENERATORS = ("embedded_summarize", "embedded_arithmetic", "embedded_ilql")
SPLIT_SIZES = {"train": 20_000, "validation": 1_000, "test": 1_000}
PUNCTUATION = (".", ",", "?", ":", "+", "-", "*", "/", "=", "####", "'", "!", "(", ")", ";")
DIGITS = tuple("0123456789")
SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")  # ids 0, 1, 2


def vocabulary_tokens() -> tuple[str, ...]:
  """The embedded vocabulary, id order: specials, digits, punctuation, sorted words.

  The words of the first three tasks come first (sorted) and later tasks' new
  words after them (sorted), so adding a task never changes an existing id.
  """
  first = sorted({w for name in _FIRST_GENERATORS for w in GENERATORS[name].WORDS})
  later = sorted({w for module in GENERATORS.values() for w in module.WORDS} - set(first))
  return SPECIAL_TOKENS + DIGITS + PUNCTUATION + tuple(first) + tuple(later)


@functools.lru_cache(maxsize=None)
def generate(task: str, split: str, data_seed: int = 0) -> tuple[dict, ...]:
  """The examples of one embedded task split, as dicts with "inputs", "targets" (and "reward")."""
  if task not in GENERATORS:
    raise ConfigError(f"Unknown embedded task {task!r}; choose from {sorted(GENERATORS)}")
  if split not in SPLIT_SIZES:
    raise ConfigError(f"Unknown split {split!r}; choose from {sorted(SPLIT_SIZES)}")
  rng = random.Random(f"{task}/{split}/{data_seed}")
  module = GENERATORS[task]
  max_targets = getattr(module, "MAX_TARGET_TOKENS", MAX_TARGET_TOKENS)
  examples = []
  while len(examples) < SPLIT_SIZES[split]:
    ex = module.make_example(rng)
    if (len(split_tokens(ex["inputs"])) <= MAX_INPUT_TOKENS
        and len(split_tokens(ex["targets"])) <= max_targets):
      examples.append(ex)
  return tuple(examples)


__all__ = ["GENERATORS", "SPLIT_SIZES", "generate", "score", "vocabulary_tokens"]
