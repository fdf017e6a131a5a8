"""Train-step benchmark: mle vs iqlearn vs ilql, MFU, and transformers' PyTorch T5 on the same weights.

  python bench/train_step.py [--steps=10] [--batch=16]

One moderately sized T5 (v1.1 layout, ~32M parameters), one batch, everything
measured side by side in one run. Writes bench/results/train_step.json and
prints a markdown table. Needs the bench extra (torch).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from irl_lm.models import preset, save_pretrained
from irl_lm.training import flops
from irl_lm.training.builders import build_run
from irl_lm.training.config import base_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = preset("t5-small", vocab_size=8192, num_layers=4, num_encoder_layers=4)


def make_batch(b: int, li: int, lt: int, vocab: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  tgt = rng.integers(2, vocab, (b, lt)).astype(np.int32)
  return {"encoder_input_tokens": rng.integers(2, vocab, (b, li)).astype(np.int32),
          "decoder_input_tokens": np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], 1),
          "decoder_target_tokens": tgt, "decoder_loss_weights": np.ones((b, lt), np.int32),
          "decoder_rewards": np.where(np.arange(lt) == lt - 1, 1.0, 0.0)[None].repeat(b, 0)
          .astype(np.float32)}


def time_jax(loss: str, batch: dict[str, np.ndarray], steps: int) -> tuple[float, object, object]:
  config = base_config()
  config.loss.name = loss
  config.train.steps = 1000
  config.mesh.num_devices = 1
  config.data.batch_size = batch["decoder_target_tokens"].shape[0]
  run = build_run(config, with_task=False, model_cfg=MODEL)
  state = run.init_state()
  step = run.train_step
  batch = run.shard_batch(batch)
  for _ in range(2):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  return (time.perf_counter() - t) / steps, run.model, state.params


def time_torch(model, params, batch: dict[str, np.ndarray], steps: int) -> float:
  import torch
  import transformers
  with tempfile.TemporaryDirectory() as d:
    save_pretrained(model, params, d)
    tm = transformers.T5ForConditionalGeneration.from_pretrained(d)
  tm.train()
  opt = torch.optim.AdamW(tm.parameters(), lr=1e-4)
  enc = torch.tensor(batch["encoder_input_tokens"], dtype=torch.long)
  dec = torch.tensor(batch["decoder_input_tokens"], dtype=torch.long)
  labels = torch.tensor(batch["decoder_target_tokens"], dtype=torch.long)

  def step():
    opt.zero_grad()
    out = tm(input_ids=enc, decoder_input_ids=dec, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
    opt.step()
  for _ in range(2):
    step()
  t = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - t) / steps


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--inputs", type=int, default=128)
  ap.add_argument("--targets", type=int, default=64)
  args = ap.parse_args()
  batch = make_batch(args.batch, args.inputs, args.targets, MODEL.vocab_size)
  peak = flops.measure_peak_flops()
  rows, params_for_torch = {}, None
  for loss in ("mle", "iqlearn", "ilql"):
    dt, model, params = time_jax(loss, batch, args.steps)
    f = flops.train_flops_per_step(MODEL, args.batch, args.inputs, args.targets, loss == "ilql")
    rows[loss] = {"step_s": dt, "tokens_per_s": args.batch * args.targets / dt,
                  "mfu": f / dt / peak}
    if loss == "mle":
      params_for_torch = (model, params)  # MLE params have no value heads
      n_params = sum(x.size for x in jax.tree.leaves(params))
  torch_dt = time_torch(*params_for_torch, batch, args.steps)
  result = {
      "model": f"T5 v1.1 layout, {n_params / 1e6:.1f}M params, batch {args.batch}, "
               f"inputs {args.inputs}, targets {args.targets}, float32, 1 CPU device",
      "peak_flops_matmul": peak, "rows": rows,
      "ratios": {"iqlearn/mle": rows["iqlearn"]["step_s"] / rows["mle"]["step_s"],
                 "ilql/mle": rows["ilql"]["step_s"] / rows["mle"]["step_s"]},
      "torch_mle_step_s": torch_dt,
      "speed_vs_torch_mle": torch_dt / rows["mle"]["step_s"]}
  os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
  with open(os.path.join(ROOT, "bench", "results", "train_step.json"), "w") as fh:
    json.dump(result, fh, indent=2)
  print(f"{result['model']}; matmul peak {peak / 1e9:.0f} GFLOP/s\n")
  print("| step | time/step (s) | target tokens/s | MFU | vs mle |")
  print("|---|---|---|---|---|")
  for loss, r in rows.items():
    print(f"| {loss} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {100 * r['mfu']:.1f}% | "
          f"{r['step_s'] / rows['mle']['step_s']:.2f}x |")
  print(f"| PyTorch T5 (transformers) mle | {torch_dt:.3f} | "
        f"{args.batch * args.targets / torch_dt:.0f} | | irl_lm is "
        f"{result['speed_vs_torch_mle']:.2f}x as fast |")


if __name__ == "__main__":
  main()
