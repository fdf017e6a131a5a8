"""One process of the 2-process CPU run in test_multihost.py (not collected by pytest).

Usage: python multihost_worker.py PORT PROCESS_ID WORKDIR STEPS
"""
import json
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["JAX_NUM_CPU_DEVICES"] = "4"

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from irl_lm import data  # noqa: E402
from irl_lm import sharding as shd  # noqa: E402
from irl_lm.training import builders  # noqa: E402
from irl_lm.training.distributed import maybe_initialize  # noqa: E402
from irl_lm.training.host_batches import HostBatches  # noqa: E402
from irl_lm.training.trainer import train_and_evaluate  # noqa: E402
from multihost_config import config_for  # noqa: E402


def main(port: str, pid: str, workdir: str, steps: str) -> None:
  config = config_for(int(steps))
  config.distributed.coordinator_address = f"127.0.0.1:{port}"
  config.distributed.num_processes = 2
  config.distributed.process_id = int(pid)
  maybe_initialize(config.distributed)
  assert jax.process_count() == 2 and jax.device_count() == 8
  mesh = builders.make_mesh(config)
  shard = data.shard_info_from_mesh(mesh, shd.batch_axes(mesh, tuple(config.mesh.rules)))
  index, count = shard.index, shard.num_shards
  first = next(HostBatches(builders.get_task(config), "train", "encdec",
                           {"inputs": 32, "targets": 16}, config.data.batch_size, seed=config.seed,
                           pack=False, index=index, count=count))
  metrics = train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, f"process_{pid}.json"), "w") as f:
    json.dump({"shard": [index, count], "loss": metrics["train/loss"],
               "first_inputs": first["encoder_input_tokens"].tolist()}, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
