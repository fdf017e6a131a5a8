"""Corpus BLEU and Self-BLEU via sacrebleu."""
from collections.abc import Sequence

import numpy as np
import sacrebleu


def bleu(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Corpus BLEU (0-100, sacrebleu defaults: 13a tokenisation, exp smoothing)."""
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  score = sacrebleu.corpus_bleu(list(predictions), [list(targets)])
  return {"bleu": float(score.score)}


def self_bleu(targets: Sequence[object], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
  """Self-BLEU (0-100): diversity of several samples drawn for the same prompt.

  `predictions[i]` holds the samples for prompt i (at least two). Each sample is
  scored with sentence BLEU (exp smoothing) against the other samples of its
  prompt as references; the result is the mean over samples and prompts. Lower is
  more diverse. `targets` is unused; it is there for the seqio signature.
  """
  del targets
  scores = []
  for samples in predictions:
    if len(samples) < 2:
      raise ValueError(f"Self-BLEU needs at least 2 samples per prompt, got {len(samples)}")
    for i, sample in enumerate(samples):
      refs = [s for j, s in enumerate(samples) if j != i]
      scores.append(sacrebleu.sentence_bleu(sample, refs).score)
  return {"self_bleu": float(np.mean(scores)) if scores else 0.0}
