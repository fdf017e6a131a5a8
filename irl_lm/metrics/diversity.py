"""Diversity of generated token sequences: distinct n-grams and n-gram entropy."""
from collections import Counter
from collections.abc import Sequence

import numpy as np


def _ngrams(seq: Sequence[int], n: int) -> list[tuple[int, ...]]:
  return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(samples: Sequence[Sequence[int]], n: int = 2) -> float:
  """Unique n-grams over all n-grams of ``samples`` (0-100; higher = more diverse)."""
  grams = [g for s in samples for g in _ngrams(list(s), n)]
  return 100.0 * len(set(grams)) / len(grams) if grams else 0.0


def ngram_entropy(samples: Sequence[Sequence[int]], n: int = 1) -> float:
  """Shannon entropy (nats) of the n-gram distribution of ``samples`` (higher = more diverse)."""
  counts = np.array(list(Counter(g for s in samples for g in _ngrams(list(s), n)).values()),
                    float)
  if counts.size == 0:
    return 0.0
  p = counts / counts.sum()
  return float(-(p * np.log(p)).sum())
