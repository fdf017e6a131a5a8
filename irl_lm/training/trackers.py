"""Where a run's scalars go besides the console (``train.trackers``): TensorBoard event files
under ``WORKDIR/tensorboard``, and Weights & Biases (the ``wandb`` extra), one W&B run per
workdir that a resumed run continues. Only process 0 writes."""
from __future__ import annotations

import importlib.util
import os
import uuid
from typing import Any

import ml_collections

from irl_lm.errors import ConfigError

TRACKERS = ("tensorboard", "wandb")
WANDB_ID_FILE = "wandb_run_id"  # in the workdir: the W&B run a resumed run continues


def names(trackers: str) -> list[str]:
  """``"tensorboard,wandb"`` -> ``["tensorboard", "wandb"]``."""
  return [t.strip() for t in trackers.split(",") if t.strip()]


def check_installed(trackers: str) -> None:
  """``ConfigError`` for a tracker whose package is not installed (before anything compiles)."""
  if "wandb" in names(trackers) and importlib.util.find_spec("wandb") is None:
    raise ConfigError("config.train.trackers names wandb, which is not installed",
                      "config.train.trackers", expected="pip install 'irl_lm[wandb]'")


class TensorBoard:
  """Scalars as TensorBoard event files in ``WORKDIR/tensorboard``."""

  def __init__(self, workdir: str):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    self._tf = tf
    self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    with self._writer.as_default(step=step):
      for k, v in scalars.items():
        self._tf.summary.scalar(k, v)
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class WandB:
  """Scalars and the run's config in a W&B run (``train.wandb``: project, entity, name); its
  files go under ``WORKDIR/wandb``, and ``WANDB_MODE=offline`` keeps them there."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    import wandb  # pylint: disable=import-outside-toplevel
    id_file = os.path.join(workdir, WANDB_ID_FILE)
    if os.path.exists(id_file):
      with open(id_file) as f:
        run_id = f.read().strip()
    else:
      run_id = uuid.uuid4().hex[:12]
      with open(id_file, "w") as f:
        f.write(run_id + "\n")
    w = config.train.wandb
    self._run = wandb.init(project=w.project, entity=w.entity or None,
                           name=w.name or os.path.basename(os.path.normpath(workdir)),
                           id=run_id, resume="allow", dir=workdir, config=config.to_dict())

  def write(self, step: int, scalars: dict[str, float]) -> None:
    self._run.log(scalars, step=step)

  def close(self) -> None:
    self._run.finish()


def make(config: ml_collections.ConfigDict | None, workdir: str) -> list[Any]:
  """The trackers ``config.train.trackers`` names (TensorBoard alone without a config)."""
  chosen = names(config.train.trackers) if config is not None else ["tensorboard"]
  return [TensorBoard(workdir) if t == "tensorboard" else WandB(workdir, config) for t in chosen]
