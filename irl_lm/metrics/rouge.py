"""ROUGE-1/2/L via the rouge-score package."""
from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer

_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Mean ROUGE-1/2/L F-measure (x100) over examples, with Porter stemming."""
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  scorer = rouge_scorer.RougeScorer(list(_TYPES), use_stemmer=True)
  totals = {t: [] for t in _TYPES}
  for target, prediction in zip(targets, predictions):
    scores = scorer.score(target, prediction)
    for t in _TYPES:
      totals[t].append(scores[t].fmeasure)
  return {t: 100.0 * float(np.mean(v)) if v else 0.0 for t, v in totals.items()}
