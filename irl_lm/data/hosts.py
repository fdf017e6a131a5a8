"""Which shard of the data this process reads, from how the mesh lays out the batch axis."""
from collections.abc import Sequence

import jax
import numpy as np
import seqio

from irl_lm.errors import ConfigError


def shard_info_from_mesh(mesh: jax.sharding.Mesh, batch_axes: Sequence[str]) -> seqio.ShardInfo:
  """This process's `seqio.ShardInfo` when the batch is split over `batch_axes` of `mesh`
  (`irl_lm.sharding.batch_axes` of the run's rules).

  Processes whose devices hold the same rows of the batch (model-parallel across
  hosts) get the same shard.
  """
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  num_batch_shards = int(np.prod([mesh.shape[a] for a in axes]))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axes or None))
  index_map = sharding.devices_indices_map((num_batch_shards,))
  local = sorted({index_map[d][0].start or 0 for d in mesh.devices.flat
                  if d.process_index == jax.process_index()})
  return shard_info_from_rows(local, num_batch_shards)


def shard_info_from_rows(local_rows: Sequence[int], num_rows: int) -> seqio.ShardInfo:
  """ShardInfo for a process holding `local_rows` (a contiguous block) of `num_rows` batch shards."""
  local_rows = sorted(local_rows)
  per_process = len(local_rows)
  first = local_rows[0]
  if (local_rows != list(range(first, first + per_process)) or first % per_process
      or num_rows % per_process):
    raise ConfigError(f"This process holds batch shards {local_rows} of {num_rows}: not one "
                      "aligned contiguous block, so it cannot read a single data shard")
  return seqio.ShardInfo(index=first // per_process, num_shards=num_rows // per_process)
