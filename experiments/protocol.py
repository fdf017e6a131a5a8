"""The reporting protocol: medians with IQRs and every point, outlier seeds, paired
comparisons and quality-matched diversity. Pure numpy; no training code."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summary(values: Sequence[float]) -> dict[str, object]:
  """Median, interquartile range and every point (finite values only; NaN counted apart)."""
  v = np.asarray(values, float)
  ok = v[np.isfinite(v)]
  if ok.size == 0:
    return {"median": float("nan"), "q1": float("nan"), "q3": float("nan"), "n": 0,
            "points": v.tolist(), "nonfinite": int(v.size)}
  q1, med, q3 = np.percentile(ok, [25, 50, 75])
  return {"median": float(med), "q1": float(q1), "q3": float(q3), "n": int(ok.size),
          "points": v.tolist(), "nonfinite": int(v.size - ok.size)}


def fmt(values: Sequence[float], digits: int = 2) -> str:
  """``median [q1, q3] (n=k)`` for a table cell; '–' when there is nothing."""
  s = summary(values)
  if not s["n"]:
    return "–"
  return f"{s['median']:.{digits}f} [{s['q1']:.{digits}f}, {s['q3']:.{digits}f}] (n={s['n']})"


def outliers(values: dict[str, float], k: float = 3.0, rel: float = 0.02) -> list[str]:
  """Keys whose value is non-finite, or both more than ``k`` scaled MADs and more than
  ``rel`` (relative) from the median: a seed within 2% of the median is never an outlier."""
  keys = list(values)
  v = np.array([values[x] for x in keys], float)
  bad = [x for x, y in zip(keys, v) if not np.isfinite(y)]
  ok = v[np.isfinite(v)]
  if ok.size < 3:
    return bad
  med = np.median(ok)
  mad = 1.4826 * np.median(np.abs(ok - med))
  limit = max(k * mad, rel * abs(med), 1e-12)
  return bad + [x for x, y in zip(keys, v) if np.isfinite(y) and abs(y - med) > limit]


def paired(a: dict[int, float], b: dict[int, float]) -> dict[str, object]:
  """Per-seed differences a - b on the seeds both have: summary plus wins/losses/ties."""
  seeds = sorted(set(a) & set(b))
  d = np.array([a[s] - b[s] for s in seeds], float)
  return {**summary(d), "seeds": seeds, "wins": int((d > 0).sum()), "losses": int((d < 0).sum()),
          "ties": int((d == 0).sum())}


def at_quality(quality: Sequence[float], diversity: Sequence[float], levels: Sequence[float]
               ) -> np.ndarray:
  """Diversity interpolated at quality ``levels`` along a curve of (quality, diversity)
  points (NaN outside the curve's quality range)."""
  q, d = np.asarray(quality, float), np.asarray(diversity, float)
  order = np.argsort(q)
  q, d = q[order], d[order]
  out = np.interp(levels, q, d)
  out[(np.asarray(levels) < q[0]) | (np.asarray(levels) > q[-1])] = np.nan
  return out


def flat_tail(curve: Sequence[float], fraction: float = 0.3, tolerance: float = 0.02) -> bool:
  """Whether a training-loss curve has converged: the mean of the second half of its last
  ``fraction`` of points is within ``tolerance`` (relative) of the first half's mean (means,
  so that one noisy logged batch does not decide)."""
  v = np.asarray(curve, float)
  tail = v[int(len(v) * (1 - fraction)):]
  if tail.size < 2:
    return False
  first, second = tail[:tail.size // 2].mean(), tail[tail.size // 2:].mean()
  return bool(abs(second - first) <= tolerance * max(abs(first), 1e-12))


def correlations(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, float]:
  """Pearson and Spearman correlation overall, and Pearson within groups (each group's
  mean removed from both)."""
  from scipy import stats
  xc, yc = x.astype(float).copy(), y.astype(float).copy()
  for g in np.unique(groups):
    m = groups == g
    xc[m] -= xc[m].mean()
    yc[m] -= yc[m].mean()
  safe = lambda f, a, b: float(f(a, b)[0]) if np.std(a) > 0 and np.std(b) > 0 else float("nan")
  return {"pearson": safe(stats.pearsonr, x, y), "spearman": safe(stats.spearmanr, x, y),
          "pearson_within_prompt": safe(stats.pearsonr, xc, yc)}
