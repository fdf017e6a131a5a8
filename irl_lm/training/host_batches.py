"""This process's rows of each global batch, read from its data shards.

The run's data layout is ``num_shards`` seqio shards (by default one per
data-parallel process group at the first start, then kept in the
checkpoint). A process reads the shards of the rows its devices hold and
concatenates them, so the global batch of every step is the same whatever
the number of processes that later resumes the run.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import seqio

from irl_lm import data
from irl_lm.errors import ConfigError


class HostBatches(Iterator[dict[str, np.ndarray]]):
  """Training batches for process group ``index`` of ``count``, from ``num_shards`` shards."""

  def __init__(self, task: seqio.Task, split: str, kind: str, lengths: Mapping[str, int],
               global_batch_size: int, *, seed: int, pack: bool, index: int, count: int,
               num_shards: int | None = None):
    self.num_shards = num_shards or count
    if self.num_shards % count:
      raise ConfigError("the saved data layout does not split over this mesh",
                        "config.mesh.shape",
                        expected=f"a number of data-parallel process groups dividing "
                        f"{self.num_shards} (the run's data shards)", found=count)
    per = self.num_shards // count
    self._iters = [data.BatchIterator(task, split, kind, lengths, global_batch_size, seed=seed,
                                      shuffle=True, pack=pack, repeat=True, shard_index=s,
                                      num_shards=self.num_shards)
                   for s in range(index * per, (index + 1) * per)]

  def __next__(self) -> dict[str, np.ndarray]:
    parts = [next(it) for it in self._iters]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def state(self) -> dict[str, Any]:
    """Position (identical for every shard) and the layout, JSON-serialisable."""
    return {**self._iters[0].state(), "num_shards": self.num_shards}

  def restore(self, state: Mapping[str, Any]) -> None:
    for it in self._iters:
      it.restore(state)


def saved_num_shards(state: Mapping[str, Any] | None) -> int | None:
  """The data layout recorded in a checkpoint's data state (None for a fresh run)."""
  return None if state is None else int(state.get("num_shards", 1))
