"""An in-memory seqio DataSource: exact per-seed shuffles and example-level host shards.

Used by the embedded tasks and the JSONL reward source. A split is loaded once
(lazily) as columns of numpy arrays. Multi-turn rows carry padded turn columns
plus `num_turns`; the dataset trims them back to their true length.
"""
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from irl_lm.errors import ConfigError

Columns = Mapping[str, np.ndarray]
TURN_COLUMNS = ("turn_texts", "turn_is_action", "turn_rewards")


class InMemorySource(seqio.DataSource):
  """Rows from `load_split(split) -> columns`, shuffled with a full permutation from the seed.

  With `seqio.ShardInfo(index, num_shards)` a shard keeps every num_shards-th row
  of the (shared) permutation, so shards are disjoint and cover the split.
  """

  def __init__(self, load_split: Callable[[str], Columns], splits: Sequence[str]):
    super().__init__(splits=splits, caching_permitted=False, performs_internal_shuffling=True)
    self._load_split = load_split
    self._columns: dict[str, Columns] = {}

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [split]

  def columns(self, split: str) -> Columns:
    """The split's columns (loaded on first use)."""
    if split not in self.splits:
      raise ConfigError(f"Unknown split {split!r}; this source has {list(self.splits)}")
    if split not in self._columns:
      self._columns[split] = self._load_split(split)
    return self._columns[split]

  def num_input_examples(self, split: str) -> int:
    return len(next(iter(self.columns(split).values())))

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                  use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # seqio's Task handles these.
    columns = self.columns(split)
    order = np.arange(self.num_input_examples(split))
    if shuffle:
      order = np.random.default_rng(0 if seed is None else int(seed)).permutation(order)
    if shard_info is not None:
      order = order[shard_info.index::shard_info.num_shards]
    ds = tf.data.Dataset.from_tensor_slices({k: v[order] for k, v in columns.items()})
    if "num_turns" in columns:
      ds = ds.map(_trim_turns)
    return ds


def _trim_turns(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  n = ex["num_turns"]
  return {k: (v[:n] if k in TURN_COLUMNS else v) for k, v in ex.items() if k != "num_turns"}
