"""Training curves of a finished run, read back from its TensorBoard event files."""
from __future__ import annotations

import glob
import os


def read_scalars(workdir: str, tag: str) -> list[tuple[int, float]]:
  """``[(step, value)]`` of one scalar (e.g. ``train/loss``) from ``WORKDIR/tensorboard``."""
  import tensorflow as tf
  from tensorflow.core.util import event_pb2
  points: dict[int, float] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == tag:
          points[int(event.step)] = float(tf.make_ndarray(value.tensor))
  return sorted(points.items())
