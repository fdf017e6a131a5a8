"""Cost of the episode options: truncated-episode bootstrapping and ILQL reward normalisation.

  python bench/episode_options.py [--rounds=7] [--calls=5]

configs/ilql_embedded.py's ILQL run (t5-tiny, batch 32, targets 20) on one real
embedded_ilql batch, one CPU device. Four train steps take turns in every round:
``loss.ilql.reward_norm`` none, running and dataset, and none on the batch
without ``decoder_truncated`` (the losses' terminal-only path, the cost of the
truncation option). Step times are per-round ratios to none (median, min-max);
memory is XLA's per-device total of each compiled step (arguments + outputs +
temporaries - aliased, as the planner counts it); "dataset" also reports the one
pass over the train split that makes its statistics. Writes
bench/results/episode_options.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Callable

import harness
import jax

from irl_lm import data
from irl_lm.training.builders import Run, build_run
from irl_lm.algorithms.ilql import REWARD_NORM_MAX_EXAMPLES

CONFIG = os.path.join(harness.ROOT, "configs", "ilql_embedded.py")
NORMS = ("none", "running", "dataset")


def ilql_config(reward_norm: str):
  spec = importlib.util.spec_from_file_location("ilql_embedded", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.mesh.num_devices = 1
  config.loss.ilql.reward_norm = reward_norm
  return config


def memory(run: Run, batch: dict) -> int:
  """Per-device bytes of the compiled train step on ``batch``'s shapes."""
  abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=run.batch_sharding(v.ndim))
              for k, v in batch.items()}
  m = run.train_step.lower(run.abstract_state(), abstract).compile().memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)


def stepper(run: Run, batch: dict, stats=None) -> Callable[[], None]:
  return harness.train_step_case(run, batch, run.init_state(reward_stats=stats))


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--rounds", type=int, default=7)
  ap.add_argument("--calls", type=int, default=5)
  args = ap.parse_args()
  runs = {norm: build_run(ilql_config(norm)) for norm in NORMS}
  d = runs["none"].config.data
  batch = next(data.BatchIterator(runs["none"].task, d.train_split, runs["none"].kind,
                                  {"inputs": d.inputs_length, "targets": d.targets_length},
                                  d.batch_size, seed=0))
  plain = {k: v for k, v in batch.items() if k != "decoder_truncated"}
  start = time.perf_counter()
  stats = runs["dataset"].algorithm.startup(runs["dataset"].task)["reward_stats"]
  pass_s = time.perf_counter() - start
  cases = {norm: stepper(runs[norm], batch, stats if norm == "dataset" else None)
           for norm in NORMS}
  cases["no_truncated"] = stepper(runs["none"], plain)
  mem = {norm: memory(runs[norm], batch) for norm in NORMS}
  mem["no_truncated"] = memory(runs["none"], plain)
  times = harness.interleave(cases, rounds=args.rounds, calls=args.calls)
  ratios = {k: harness.ratio(times[k], times["none"]) for k in cases}
  info = harness.machine()
  setting = (f"configs/ilql_embedded.py (t5-tiny, batch {d.batch_size}, inputs "
             f"{d.inputs_length}, targets {d.targets_length}), 1 CPU device, {args.rounds} "
             f"rounds x {args.calls} steps")
  harness.write("episode_options", {
      "machine": info, "setting": setting,
      "times_s": {k: harness.spread(v) for k, v in times.items()}, "ratios": ratios,
      "memory_bytes": mem, "dataset_pass_s": pass_s,
      "dataset_pass_examples": min(REWARD_NORM_MAX_EXAMPLES,
                                   runs["dataset"].task.num_input_examples(d.train_split)),
      "truncated_fraction": float(batch["decoder_truncated"].any(axis=1).mean())})
  print(harness.describe(info))
  print(setting + "\n")
  print("| train step | time/step (s) | vs none | per-device memory (bytes) |")
  print("|---|---|---|---|")
  for k in cases:
    print(f"| {k} | {harness.fmt(harness.spread(times[k]), 's', 4)} | {harness.fmt(ratios[k])} | "
          f"{mem[k]:,} |")
  print(f"\nreward_norm=dataset statistics: one pass over {stats['count']:.0f} finished "
        f"episodes in {pass_s:.1f} s")


if __name__ == "__main__":
  main()
