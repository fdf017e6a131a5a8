"""Online IQLearn's cost: train-step time and planner memory with online on and off, interleaved.

  python bench/online_iqlearn.py [--rounds=7] [--calls=3] [--size=t5-tiny] [--every=1]

The quickstart's tiny IQLearn run (embedded_summarize, batch 32, inputs 64,
targets 24) on one CPU device. Each call of the online case is a train step
that decodes (every ``--every`` steps) and trains on a policy batch besides the
expert one; the cases take turns within every round and the ratio is taken per
round. Also plans both steps (``irl_lm.planning.plan_train``) and reports their
per-device memory. Writes bench/results/online_iqlearn.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Callable

import harness
import jax

from irl_lm import data
from irl_lm.planning import plan_train
from irl_lm.planning.devices import GIB
from irl_lm.training.builders import build_run


def quickstart(size: str, online: bool, every: int):
  spec = importlib.util.spec_from_file_location(
      "quickstart", os.path.join(harness.ROOT, "configs", "quickstart.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.model.size = size
  config.mesh.num_devices = 1
  config.loss.iqlearn.online.enable = online
  config.loss.iqlearn.online.every = every
  return config


def case(config) -> Callable[[], None]:
  """One train step per call on a fixed batch (the state carries over)."""
  run = build_run(config)
  d = config.data
  batch = next(data.BatchIterator(run.task, d.train_split, run.kind,
                                  {"inputs": d.inputs_length, "targets": d.targets_length},
                                  d.batch_size, seed=0))
  return harness.train_step_case(run, batch)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--rounds", type=int, default=7)
  ap.add_argument("--calls", type=int, default=3)
  ap.add_argument("--size", default="t5-tiny")
  ap.add_argument("--every", type=int, default=1)
  args = ap.parse_args()
  configs = {name: quickstart(args.size, name == "online", args.every)
             for name in ("offline", "online")}
  times = harness.interleave({k: case(c) for k, c in configs.items()}, rounds=args.rounds,
                             calls=args.calls)
  ratio = harness.ratio(times["online"], times["offline"])
  plans = {k: plan_train(c, jax.devices()[:1], 16 * GIB) for k, c in configs.items()}
  info = harness.machine()
  setting = (f"{args.size}, quickstart data (batch 32, inputs 64, targets 24), online every "
             f"{args.every} step(s), 1 CPU device, {args.rounds} rounds x {args.calls} steps")
  harness.write("online_iqlearn", {
      "machine": info, "setting": setting,
      "times_s": {k: harness.spread(v) for k, v in times.items()}, "online/offline": ratio,
      "plans": {k: p.as_dict() for k, p in plans.items()}})
  print(harness.describe(info))
  print(setting + "\n")
  for k, v in times.items():
    print(f"{k}: {harness.fmt(harness.spread(v), 's', 3)} per step")
  print(f"online / offline step time: {harness.fmt(ratio)}")
  for k, p in plans.items():
    print(f"plan {k}: temporaries {p.temporaries / 2**20:.1f} MiB, other state "
          f"{p.other_state / 2**10:.1f} KiB, total {p.total / 2**20:.1f} MiB per device")


if __name__ == "__main__":
  main()
