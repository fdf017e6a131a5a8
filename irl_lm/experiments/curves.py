"""Training curves of a finished run, read back from its TensorBoard event files."""
from __future__ import annotations

import glob
import os


def read_scalars(workdir: str, tag: str) -> list[tuple[int, float]]:
  """``[(step, value)]`` of one scalar (e.g. ``train/loss``) from ``WORKDIR/tensorboard``."""
  import tensorflow as tf
  points: dict[int, float] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          points[int(event.step)] = float(tf.make_ndarray(value.tensor))
  return sorted(points.items())
