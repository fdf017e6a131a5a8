"""LoRA against full fine-tuning: train-step time (interleaved) and the bytes of parameters
and optimizer state.

  python bench/lora.py [--rounds=3] [--calls=2]

Timed: a Llama-layout decoder (d 512, 8 layers, 8 heads of 64, GQA 4, vocab 8192), MLE,
batch 8 x 256 tokens, float32, 1 CPU device: full fine-tuning against rank-16 adapters on
q, k, v, o, gate, up and down with the frozen base in float32 and in bfloat16. Counted, not
run: the same three set-ups of llama-3.1-8b (the run's abstract state). Target (issue 24):
LoRA's optimizer state under 2% of full fine-tuning's at 8B. Writes bench/results/lora.json.
"""
from __future__ import annotations

import argparse

import harness
import jax
import numpy as np

from scaling import random_batch

SETUPS = {"full": {}, "LoRA r16": {"rank": 16},
          "LoRA r16, bf16 base": {"rank": 16, "param_dtype": "bfloat16"}}
ALL = ("q", "k", "v", "o", "gate", "up", "down")


def config(setup: dict, size: str):
  from irl_lm.training.config import base_config
  c = base_config()
  c.loss.name = "mle"
  c.train.steps = 1000
  c.mesh.num_devices = 1
  c.model.size = size
  c.model.vocab_size = 128256 if size == "llama-3.1-8b" else 8192  # the model's own
  c.data.batch_size, c.data.inputs_length, c.data.targets_length = 8, 128, 128
  c.model.lora.rank = setup.get("rank", 0)
  c.model.lora.targets = ALL
  c.model.param_dtype = setup.get("param_dtype", "float32")
  return c


def nbytes(tree) -> int:
  return sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
             if hasattr(x, "dtype"))


def rounds_args() -> argparse.Namespace:
  """--rounds (default 3) and --calls (default 2) of an interleaved benchmark."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--calls", type=int, default=2)
  return ap.parse_args()


def small_llama():
  """The timed model: Llama layout, d 512, 8 layers, 8 heads of 64, GQA 4, vocab 8192."""
  from irl_lm.models import ModelConfig
  return ModelConfig(kind="decoder", layout="llama", vocab_size=8192, d_model=512, num_heads=8,
                     num_kv_heads=4, head_dim=64, d_ff=1536, num_layers=8, eos_id=1)


def main() -> None:
  args = rounds_args()
  from irl_lm.training.builders import build_run
  small = small_llama()
  cases, sizes = {}, {}
  for name, setup in SETUPS.items():
    cfg = small.replace(lora_rank=setup.get("rank", 0), lora_targets=ALL,
                        param_dtype=setup.get("param_dtype", "float32"))
    run = build_run(config(setup, "llama-tiny"), with_task=False, model_cfg=cfg)
    cases[name] = harness.train_step_case(run, random_batch(run, np.random.default_rng(0)))
    sizes[name] = {"params": nbytes(run.state_abstract.params),
                   "optimizer": nbytes(run.state_abstract.opt_state)}
  times = harness.interleave(cases, rounds=args.rounds, calls=args.calls)
  at_8b = {}
  for name, setup in SETUPS.items():
    run = build_run(config(setup, "llama-3.1-8b"), with_task=False)
    at_8b[name] = {"params": nbytes(run.state_abstract.params),
                   "optimizer": nbytes(run.state_abstract.opt_state)}
  share = at_8b["LoRA r16"]["optimizer"] / at_8b["full"]["optimizer"]
  targets = [{"name": "LoRA: optimizer state / full fine-tuning's (llama-3.1-8b)",
              "target": "< 0.02", "measured": f"{share:.4f}", "met": share < 0.02}]
  info = harness.machine()
  setting = (f"Llama layout d 512, 8 layers, MLE, batch 8 x 256, float32 compute, 1 CPU device, "
             f"{args.rounds} rounds x {args.calls} steps")
  harness.write("lora", {"machine": info, "setting": setting, "sizes": sizes, "llama_8b": at_8b,
                         "times_s": {k: harness.spread(v) for k, v in times.items()},
                         "targets": targets})
  print(harness.describe(info))
  print(setting + "\n")
  print("| set-up | step (s) | vs full | params | optimizer state | 8B params | 8B optimizer |")
  print("|---|---|---|---|---|---|---|")
  gib = lambda b: f"{b / 2 ** 30:.2f} GiB"
  for name in SETUPS:
    print(f"| {name} | {harness.fmt(harness.spread(times[name]), 's', 3)} | "
          f"{harness.fmt(harness.ratio(times[name], times['full']))} | "
          f"{sizes[name]['params'] / 2 ** 20:.1f} MiB | {sizes[name]['optimizer'] / 2 ** 20:.1f} MiB"
          f" | {gib(at_8b[name]['params'])} | {gib(at_8b[name]['optimizer'])} |")
  for t in targets:
    print(f"{t['name']}: {t['measured']} (target {t['target']}, met: {t['met']})")


if __name__ == "__main__":
  main()
