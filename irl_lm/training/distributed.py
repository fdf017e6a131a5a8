"""Multi-process start-up: ``jax.distributed.initialize`` when a run spans processes."""
from __future__ import annotations

import logging
import os

import jax
import ml_collections


def spans_processes(env: dict[str, str] | None = None) -> bool:
  """True on a multi-host TPU slice or a multi-task SLURM job."""
  env = dict(os.environ) if env is None else env
  if int(env.get("SLURM_NTASKS", "1")) > 1:
    return True
  hosts = env.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def maybe_initialize(dist: ml_collections.ConfigDict) -> None:
  """Initialises jax.distributed from explicit settings or the environment.

  Explicit ``coordinator_address`` / ``num_processes`` / ``process_id`` win;
  otherwise TPU pods and SLURM jobs are detected and JAX reads their
  environment. A single process does nothing.
  """
  if dist.coordinator_address:
    jax.distributed.initialize(dist.coordinator_address, num_processes=dist.num_processes,
                               process_id=dist.process_id)
  elif spans_processes():
    jax.distributed.initialize()
  else:
    return
  logging.info("process %d of %d; %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
