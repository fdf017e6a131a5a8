"""Checks a run makes on its data before anything compiles: seconds, not minutes, in."""
from __future__ import annotations

from collections.abc import Mapping

import seqio
import tensorflow as tf

from irl_lm.errors import ConfigError, InputError, UserError

REWARD_COLUMNS = ("reward", "turn_rewards")


def _raw_dataset(task: seqio.Task, split: str, where: str) -> tf.data.Dataset:
  if split not in task.source.splits:
    raise ConfigError(f"task {task.name!r} has no split {split!r}", where,
                      expected=f"one of {sorted(task.source.splits)}", found=repr(split))
  return task.source.get_dataset(split=split, shuffle=False)


def has_rewards(task: seqio.Task, split: str) -> bool:
  """Whether the task's raw examples carry a reward column (single- or multi-turn)."""
  spec = _raw_dataset(task, split, "config.data.train_split").element_spec
  return any(k in spec for k in REWARD_COLUMNS)


def check_split(task: seqio.Task, split: str, lengths: Mapping[str, int], where: str) -> None:
  """Reads (and so parses) the split and preprocesses its first example.

  Files behind the task (JSONL, TSV, TFDS) are opened here, so a malformed
  line or a missing dataset fails before compilation. Errors name ``where``
  (the config key) with the task and split.
  """
  _raw_dataset(task, split, where)
  try:
    ds = task.get_dataset(sequence_length=dict(lengths), split=split, shuffle=False,
                          num_epochs=1, use_cached=False, try_in_mem_cache=False)
    first = next(iter(ds.take(1)), None)
  except UserError:
    raise
  except tf.errors.OpError as e:
    message = " ".join(str(e.message).split())[:200]
    raise InputError(f"the input pipeline of task {task.name!r} failed ({message})",
                     f"{where}={split!r}") from None
  if first is None:
    raise InputError(f"task {task.name!r} split {split!r} has no examples", where)
