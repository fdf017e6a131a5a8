"""Attention implementations: the train step's compiled memory and time, ``xla`` against
``chunked``, over sequence lengths, interleaved.

  python bench/attention.py [--rounds=3] [--calls=2] [--lengths=128,512,...,8192]
                            [--tokens=8192] [--max_run_gib=6]

A small GPT-2-layout decoder (d 256, 4 layers, 4 heads of 64) trains with MLE on 1 CPU
device, ``--tokens`` tokens per step (batch = tokens / length, at least 1). For each length
both implementations are compiled (the compiler's temporary memory is read from
``memory_analysis``) and take turns in every round; a program whose temporary memory
exceeds ``--max_run_gib`` is compiled but not run. Targets (issue 24): chunked's temporary
memory per token stays flat from 1024 to 8192 (linear in length), and its tokens/s at 2048
are at least 0.8x those at 128; the model FLOPs per token at each length are printed beside
them (attention's grow with the length). Writes bench/results/attention.json.
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
  ap.add_argument("--lengths", default="128,512,1024,2048,4096,8192")
  ap.add_argument("--tokens", type=int, default=8192)
  ap.add_argument("--max_run_gib", type=float, default=6.0)
  args = ap.parse_args()
  from irl_lm.models import ModelConfig
  from irl_lm.training import flops
  from irl_lm.training.builders import build_run
  from irl_lm.training.config import base_config
  rows = []
  for seq in (int(n) for n in args.lengths.split(",")):
    cases, temp = {}, {}
    batch_size = max(1, args.tokens // seq)
    for impl in ("xla", "chunked"):
      cfg = ModelConfig(kind="decoder", layout="gpt2", vocab_size=8192, d_model=256, num_heads=4,
                        head_dim=64, d_ff=1024, num_layers=4, layer_norm_eps=1e-5,
                        tie_word_embeddings=True, eos_id=1, attention=impl)
      c = base_config()
      c.loss.name = "mle"
      c.train.steps = 1000
      c.mesh.num_devices = 1
      c.data.batch_size = batch_size
      c.data.inputs_length, c.data.targets_length = seq // 2, seq // 2
      run = build_run(c, with_task=False, model_cfg=cfg)
      batch = random_batch(run, np.random.default_rng(0))
      compiled = run.train_step.lower(run.abstract_state(), run.abstract_batch()).compile()
      temp[impl] = compiled.memory_analysis().temp_size_in_bytes
      if temp[impl] <= args.max_run_gib * 2 ** 30:
        cases[impl] = harness.train_step_case(run, batch)
      del compiled
    times = harness.interleave(cases, rounds=args.rounds, calls=args.calls)
    tokens = batch_size * seq
    rows.append({"sequence": seq, "batch": batch_size, "temp_bytes": temp,
                 "model_flops_per_token": flops.train_flops_per_step(cfg, 1, seq // 2, seq // 2)
                 / seq, "times_s": {k: harness.spread(v) for k, v in times.items()},
                 "tokens_per_s": {k: harness.spread([tokens / t for t in v])
                                  for k, v in times.items()},
                 "chunked/xla": harness.ratio(times["chunked"], times["xla"])
                 if len(times) == 2 else None})
  by = {r["sequence"]: r for r in rows}
  targets = []
  if 1024 in by and max(by) > 1024:
    per_token = lambda n: by[n]["temp_bytes"]["chunked"] / (by[n]["batch"] * n)
    growth = per_token(max(by)) / per_token(1024)
    targets.append({"name": f"attention: chunked temp memory per token, {max(by)} / 1024",
                    "target": "<= 1.25", "measured": f"{growth:.2f}x", "met": growth <= 1.25})
  if 128 in by and 2048 in by:
    tps = harness.ratio(by[2048]["tokens_per_s"]["chunked"]["rounds"],
                        by[128]["tokens_per_s"]["chunked"]["rounds"])
    targets.append(harness.target("attention: chunked tokens/s at 2048 / at 128", tps, ">=",
                                  0.8, harness.fmt(tps)))
  info = harness.machine()
  setting = (f"GPT-2 layout d 256, 4 layers, 4 heads, {args.tokens} tokens per step, MLE, "
             f"float32, 1 CPU device, {args.rounds} rounds x {args.calls} steps")
  harness.write("attention", {"machine": info, "setting": setting, "rows": rows,
                              "targets": targets})
  print(harness.describe(info))
  print(setting + "\n")
  print("| sequence | batch | model MFLOP / token | temp memory xla | temp memory chunked | "
        "tokens/s xla | tokens/s chunked | chunked / xla time |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    t = r["tokens_per_s"]
    shown = lambda impl: harness.fmt(t[impl], "", 0) if impl in t else "not run"
    print(f"| {r['sequence']} | {r['batch']} | {r['model_flops_per_token'] / 1e6:.0f} | "
          f"{r['temp_bytes']['xla'] / 2**20:.0f} MiB | "
          f"{r['temp_bytes']['chunked'] / 2**20:.0f} MiB | {shown('xla')} | {shown('chunked')} | "
          f"{harness.fmt(r['chunked/xla']) if r['chunked/xla'] else '-'} |")
  for t in targets:
    print(f"{t['name']}: {t['measured']} (target {t['target']}, met: {t['met']})")


if __name__ == "__main__":
  main()
