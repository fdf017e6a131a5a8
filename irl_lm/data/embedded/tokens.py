"""The word-level tokenisation rule shared by the embedded tasks and their vocabulary.

Text is lower-cased and split into `####`, single digits, runs of letters and
single other non-space characters. Joining puts one space between tokens except
between digits, so canonical text (what the generators write) round-trips.
"""
import re

# The TF side (vocabularies.EmbeddedVocabulary) implements the same rule with RE2.
TOKEN_RE = re.compile(r"####|[0-9]|[a-z]+|[^\sa-z0-9]")
_DIGIT_GAP = re.compile(r"(?<=[0-9]) (?=[0-9])")
MAX_INPUT_TOKENS = 63  # plus EOS: 64
MAX_TARGET_TOKENS = 31  # plus EOS: 32


def split_tokens(text: str) -> list[str]:
  """Tokens of `text` under the embedded word-level rule."""
  return TOKEN_RE.findall(text.lower())


def join_tokens(tokens: list[str]) -> str:
  """Inverse of `split_tokens` on canonical text."""
  return _DIGIT_GAP.sub("", " ".join(tokens))
