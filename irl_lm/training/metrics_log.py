"""Scalars to the run's trackers (TensorBoard, W&B), a console progress line with ETA, a
summary table and a plot."""
from __future__ import annotations

import io
import logging
import time
from collections import defaultdict
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from irl_lm.training import trackers


class MetricsLog:
  """Writes scalars to the trackers ``config.train.trackers`` names (TensorBoard alone without
  a config) and keeps their history; process 0 writes."""

  def __init__(self, workdir: str, total_steps: int, start_step: int = 0,
               config: ml_collections.ConfigDict | None = None):
    self.workdir = workdir
    self.total_steps = total_steps
    self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)
    self._t0, self._s0 = time.time(), start_step
    self._trackers = trackers.make(config, workdir) if jax.process_index() == 0 else []

  def write(self, step: int, scalars: dict[str, Any]) -> None:
    """Records ``scalars`` (names like ``train/loss``, ``eval/rougeL``) at ``step``."""
    clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
    for k, v in clean.items():
      self.history[k].append((step, v))
    for tracker in self._trackers:
      tracker.write(step, clean)

  def close(self) -> None:
    """Flushes and closes the trackers (a W&B run is marked finished)."""
    for tracker in self._trackers:
      tracker.close()
    self._trackers = []

  def progress(self, step: int, scalars: dict[str, Any]) -> str:
    """One console line: step, key metrics, throughput and ETA."""
    done = step - self._s0
    rate = done / max(time.time() - self._t0, 1e-9)
    eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
    shown = " | ".join(f"{k.split('/', 1)[-1]} {float(np.asarray(v)):.4g}"
                       for k, v in scalars.items())
    line = f"step {step}/{self.total_steps} | {shown} | ETA {_duration(eta)}"
    logging.info(line)
    return line

  def summary_table(self) -> str:
    """First and last value of every scalar, as a fixed-width table."""
    rows = [("metric", "first", "last", "steps")]
    for k in sorted(self.history):
      h = self.history[k]
      rows.append((k, f"{h[0][1]:.5g}", f"{h[-1][1]:.5g}", f"{h[0][0]}-{h[-1][0]}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)

  def plot(self, path: str, keys: list[str]) -> None:
    """Plots the named scalars against step into a PNG (one panel each)."""
    keys = [k for k in keys if self.history.get(k)]
    if jax.process_index() != 0 or not keys:
      return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
      steps, vals = zip(*self.history[k])
      ax.plot(steps, vals, marker="." if len(steps) < 30 else None)
      ax.set_title(k)
      ax.set_xlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    epath.Path(path).write_bytes(buf.getvalue())  # local or gs://


def _duration(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
