"""Attention implementations: the train step's compiled memory and time, ``xla`` against
``chunked``, over sequence lengths, interleaved.

  python bench/attention.py [--rounds=3] [--calls=2] [--lengths=512,1024,2048]

A small GPT-2-layout decoder (d 256, 4 layers, 4 heads of 64) trains with MLE at batch 4
on 1 CPU device. For each length both implementations are compiled (the compiler's
temporary memory is read from ``memory_analysis``) and take turns in every round. Writes
bench/results/attention.json.
"""
from __future__ import annotations

import argparse

import harness
import numpy as np

from scaling import random_batch


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--calls", type=int, default=2)
  ap.add_argument("--lengths", default="512,1024,2048")
  args = ap.parse_args()
  from irl_lm.models import ModelConfig
  from irl_lm.training.builders import build_run
  from irl_lm.training.config import base_config
  rows = []
  for seq in (int(n) for n in args.lengths.split(",")):
    cases, temp = {}, {}
    for impl in ("xla", "chunked"):
      cfg = ModelConfig(kind="decoder", layout="gpt2", vocab_size=8192, d_model=256, num_heads=4,
                        head_dim=64, d_ff=1024, num_layers=4, layer_norm_eps=1e-5,
                        tie_word_embeddings=True, eos_id=1, attention=impl)
      c = base_config()
      c.loss.name = "mle"
      c.train.steps = 1000
      c.mesh.num_devices = 1
      c.data.batch_size, c.data.inputs_length, c.data.targets_length = 4, seq // 2, seq // 2
      run = build_run(c, with_task=False, model_cfg=cfg)
      batch = random_batch(run, np.random.default_rng(0))
      compiled = run.train_step.lower(run.abstract_state(), run.abstract_batch()).compile()
      temp[impl] = compiled.memory_analysis().temp_size_in_bytes
      cases[impl] = harness.train_step_case(run, batch)
    times = harness.interleave(cases, rounds=args.rounds, calls=args.calls)
    rows.append({"sequence": seq, "temp_bytes": temp,
                 "times_s": {k: harness.spread(v) for k, v in times.items()},
                 "chunked/xla": harness.ratio(times["chunked"], times["xla"])})
  info = harness.machine()
  setting = (f"GPT-2 layout d 256, 4 layers, 4 heads, batch 4, MLE, float32, 1 CPU device, "
             f"{args.rounds} rounds x {args.calls} steps")
  harness.write("attention", {"machine": info, "setting": setting, "rows": rows})
  print(harness.describe(info))
  print(setting + "\n")
  print("| sequence | temp memory xla | temp memory chunked | step xla (s) | step chunked (s) "
        "| chunked / xla time |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    t = r["times_s"]
    print(f"| {r['sequence']} | {r['temp_bytes']['xla'] / 2**20:.0f} MiB | "
          f"{r['temp_bytes']['chunked'] / 2**20:.0f} MiB | {harness.fmt(t['xla'], 's', 3)} | "
          f"{harness.fmt(t['chunked'], 's', 3)} | {harness.fmt(r['chunked/xla'])} |")


if __name__ == "__main__":
  main()
