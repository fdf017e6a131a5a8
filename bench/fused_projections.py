"""Fused q/k/v and gate/up projections against separate ones: train-step time, interleaved.

  python bench/fused_projections.py [--rounds=3] [--calls=2]

A Llama-layout decoder (d 512, 8 layers, 8 heads of 64, GQA 4, d_ff 1536, vocab 8192), MLE,
batch 8 x 256 tokens, float32, 1 CPU device, with ``model.fused_projections`` off and on. Also
prints the compiled step's layout copies (copy/transpose instructions, and the elements they
move) for each. Writes bench/results/fused_projections.json.
"""
from __future__ import annotations

import re

import harness
import numpy as np

from lora import config, rounds_args, small_llama
from scaling import random_batch

COPY = re.compile(r"= \w+\[([\d,]*)\]\{[\d,]*\} (?:copy|transpose)\(%?(\S+?)\)")


def layout_copies(run, batch) -> tuple[int, int]:
  """(instructions, elements) of the compiled train step's copies and transposes, less the
  copies of broadcast constants."""
  text = run.train_step.lower(run.abstract_state(), run.abstract_batch()).compile().as_text()
  hits = [m for m in COPY.finditer(text) if "broadcast" not in m.group(2)]
  elements = sum(int(np.prod([int(d) for d in m.group(1).split(",") if d])) for m in hits)
  return len(hits), elements


def main() -> None:
  args = rounds_args()
  from irl_lm.training.builders import build_run
  small = small_llama()
  cases, copies = {}, {}
  for name, fused in (("separate", False), ("fused", True)):
    run = build_run(config({}, "llama-tiny"), with_task=False,
                    model_cfg=small.replace(fused_projections=fused))
    batch = random_batch(run, np.random.default_rng(0))
    cases[name] = harness.train_step_case(run, batch)
    copies[name] = layout_copies(run, batch)
  times = harness.interleave(cases, rounds=args.rounds, calls=args.calls)
  ratio = harness.ratio(times["separate"], times["fused"])
  info = harness.machine()
  setting = (f"Llama layout d 512, 8 layers, GQA 4, MLE, batch 8 x 256, float32, 1 CPU device, "
             f"{args.rounds} rounds x {args.calls} steps")
  harness.write("fused_projections", {
      "machine": info, "setting": setting, "copies": copies, "separate/fused": ratio,
      "times_s": {k: harness.spread(v) for k, v in times.items()}})
  print(harness.describe(info))
  print(setting + "\n")
  print("| projections | step (s) | separate / this (speed-up) | layout copies (instructions, "
        "elements) |\n|---|---|---|---|")
  for name in cases:
    print(f"| {name} | {harness.fmt(harness.spread(times[name]), 's', 3)} | "
          f"{harness.fmt(harness.ratio(times['separate'], times[name]))} | "
          f"{copies[name][0]}, {copies[name][1] / 1e6:.1f}M |")


if __name__ == "__main__":
  main()
