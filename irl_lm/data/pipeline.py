"""Numpy batches for training and evaluation: seeded, host-sharded and resumable.

Training (`repeat=True`): epochs repeat forever; epoch e is shuffled with a seed
derived from (seed, e), so the stream is fixed by the seed, and `state()` /
`restore()` (epoch and batches consumed in it) let a resumed run see exactly the
batches an uninterrupted run would. A last partial batch is dropped.
Evaluation (`repeat=False`, usually `shuffle=False`): one pass; the last batch is
padded with all-zero rows (weight 0, segment 0) to the full batch size.

Each host passes its shard (see `hosts.shard_info_from_mesh`) and gets
global_batch_size / num_shards rows per batch; the shards are disjoint.
"""
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf

from irl_lm.data.feature_converters import add_default_labels, get_feature_converter
from irl_lm.data.framing import framing_for
from irl_lm.data.postprocessors import as_text
from irl_lm.data.registry import get_task
from irl_lm.errors import ConfigError

Batch = dict[str, np.ndarray]


def _resolve(task: str | seqio.Task) -> seqio.Task:
  return get_task(task) if isinstance(task, str) else task


def epoch_seed(seed: int, epoch: int) -> int:
  """The shuffle seed of one epoch."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class BatchIterator(Iterator[Batch]):
  """Iterates batches of `task` in the layout of `feature_converters` for `model_kind`.

  Args:
    task: a registered task name (see `get_task`) or a seqio.Task.
    split: e.g. "train" or "validation".
    model_kind: "encdec" (T5) or "decoder" (GPT-2/Llama).
    sequence_lengths: {"inputs": N, "targets": M}; decoder rows have length N + M.
    global_batch_size: rows per step over all hosts.
    seed: fixes the order of every epoch.
    shuffle: shuffle each epoch (training).
    pack: pack several examples per row.
    repeat: loop over epochs forever (training) or stop after one pass (evaluation).
    shard_index, num_shards: this host's data shard.
  """

  def __init__(self, task: str | seqio.Task, split: str, model_kind: str,
               sequence_lengths: Mapping[str, int], global_batch_size: int, *, seed: int = 0,
               shuffle: bool = True, pack: bool = False, repeat: bool = True,
               shard_index: int = 0, num_shards: int = 1):
    if global_batch_size % num_shards:
      raise ConfigError(f"global_batch_size {global_batch_size} is not divisible by "
                        f"num_shards {num_shards}")
    if not 0 <= shard_index < num_shards:
      raise ConfigError(f"shard_index {shard_index} is not in [0, {num_shards})")
    self.task = _resolve(task)
    self.split = split
    self.sequence_lengths = {"inputs": sequence_lengths["inputs"],
                             "targets": sequence_lengths["targets"]}
    self.local_batch_size = global_batch_size // num_shards
    self.seed, self.shuffle, self.repeat = seed, shuffle, repeat
    self.shard_info = seqio.ShardInfo(shard_index, num_shards) if num_shards > 1 else None
    self._converter = get_feature_converter(
        model_kind, pack, framing_for(self.task.output_features["targets"].vocabulary))
    self._epoch = 0
    self._batches_in_epoch = 0
    self._iterator: Iterator[Batch] | None = None

  def _dataset(self, epoch: int) -> tf.data.Dataset:
    ds = self.task.get_dataset(
        sequence_length=self.sequence_lengths, split=self.split, shuffle=self.shuffle,
        seed=epoch_seed(self.seed, epoch), shard_info=self.shard_info, num_epochs=1,
        use_cached=False, try_in_mem_cache=False)
    ds = self._converter(ds, self.sequence_lengths)
    ds = ds.batch(self.local_batch_size, drop_remainder=self.repeat)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)

  def _open(self) -> Iterator[Batch]:
    ds = self._dataset(self._epoch).skip(self._batches_in_epoch).prefetch(2)
    return map(self._pad_rows, ds.as_numpy_iterator())

  def _pad_rows(self, batch: Batch) -> Batch:
    missing = self.local_batch_size - len(next(iter(batch.values())))
    if not missing:
      return batch
    return {k: np.concatenate([v, np.zeros((missing,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()}

  def __next__(self) -> Batch:
    if self._iterator is None:
      self._iterator = self._open()
    try:
      batch = next(self._iterator)
    except StopIteration:
      if not self.repeat:
        raise
      if self._batches_in_epoch == 0:
        raise ConfigError(f"Task {self.task.name!r} split {self.split!r} has fewer examples "
                          f"than one local batch ({self.local_batch_size})") from None
      self._epoch, self._batches_in_epoch = self._epoch + 1, 0
      self._iterator = self._open()
      batch = next(self._iterator)
    self._batches_in_epoch += 1
    return batch

  def state(self) -> dict[str, int]:
    """The position, JSON-serialisable: {"epoch": e, "batches_in_epoch": k}."""
    return {"epoch": self._epoch, "batches_in_epoch": self._batches_in_epoch}

  def restore(self, state: Mapping[str, int]) -> None:
    """Continues from a position saved by `state()` (same task, seed and sharding)."""
    self._epoch = int(state["epoch"])
    self._batches_in_epoch = int(state["batches_in_epoch"])
    self._iterator = None


def eval_examples(task: str | seqio.Task, split: str = "validation",
                  max_examples: int | None = None,
                  sequence_lengths: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
  """The first examples of a split, unshuffled, for generation and metrics.

  Each dict has "inputs" and "targets" (int32 token ids, cut to `sequence_lengths`
  if given: EOS ends the inputs and finished targets), "rewards", "weights",
  "truncated", and the texts
  "inputs_pretokenized" and "targets_pretokenized" (str). To generate with a
  decoder-only model, feed ``framing_for(vocabulary).prompt(inputs)``.
  """
  task = _resolve(task)
  ds = task.get_dataset(sequence_length=sequence_lengths, split=split, shuffle=False,
                        try_in_mem_cache=False)
  if max_examples is not None:
    ds = ds.take(max_examples)
  return [{k: as_text(v) if isinstance(v, bytes) else v for k, v in ex.items()}
          for ex in ds.as_numpy_iterator()]


def split_returns(task: str | seqio.Task, split: str, sequence_lengths: Mapping[str, int],
                  max_examples: int) -> np.ndarray:
  """float32 returns (sums of the action rewards) of the finished episodes among the first
  `max_examples` examples of a split, unshuffled and cut to `sequence_lengths` as in the
  batches; episodes that did not end (``truncated``) are left out."""
  ds = _resolve(task).get_dataset(sequence_length=dict(sequence_lengths), split=split,
                                  shuffle=False, num_epochs=1, use_cached=False,
                                  try_in_mem_cache=False)

  def summary(ex):
    total = tf.reduce_sum(tf.where(ex["weights"] > 0, ex["rewards"], 0.0))
    return total, tf.reduce_any(ex["truncated"] > 0)

  rows = add_default_labels(ds.take(max_examples)).map(summary).as_numpy_iterator()
  return np.array([total for total, cut in rows if not cut], np.float32)


def compute_metrics(task: str | seqio.Task, examples: Sequence[Mapping[str, Any]],
                    predictions: Sequence[str]) -> dict[str, float]:
  """Runs the task's postprocess_fn and metric_fns on decoded predictions for `examples`."""
  task = _resolve(task)
  if len(examples) != len(predictions):
    raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
  targets = [task.postprocess_fn(ex["targets_pretokenized"], example=ex, is_target=True)
             for ex in examples]
  outputs = [task.postprocess_fn(p, example=ex, is_target=False)
             for ex, p in zip(examples, predictions)]
  results: dict[str, float] = {}
  for metric_fn in task.predict_metric_fns:
    results.update(metric_fn(targets, outputs))
  return results
