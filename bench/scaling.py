"""Scaling table: step time and tokens/s against sequence length and batch, and planner memory.

  python bench/scaling.py [--part=steps|memory|all] [--rounds=3]

``steps``: a small GPT-2-layout decoder's MLE and ILQL train steps (taking
turns in every round) over sequence lengths 128-2048 at batch 8 and batches
8-32 at length 512, on 1 CPU device and on 8 simulated ones (each device
count in its own process, as JAX fixes it at start-up). On a 2-core machine
the 8 simulated devices share the same cores, so that column shows the cost of
sharding, not a speed-up.

``memory``: the AOT planner's per-chip train-step memory for T5 small to XL
and Llama 1B and 3B on a TPU v5e-16 (via libtpu: the tpu extra), with and
without remat (layers scanned), and for T5-small also with unrolled layers.

Writes bench/results/scaling.json, scaling_steps.png and scaling_memory.png.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import harness

STEP_SETTINGS = [(128, 8), (512, 8), (2048, 8), (512, 16), (512, 32)]  # (sequence, batch)
DEVICE_COUNTS = (1, 8)
MEMORY_MODELS = [("t5_xl.py", "t5-small"), ("t5_xl.py", "t5-base"), ("t5_xl.py", "t5-large"),
                 ("t5_xl.py", "t5-xl"), ("llama_3b.py", "llama-1b"),
                 ("llama_3b.py", "llama-3b")]
MEMORY_VARIANTS = [("full", True), ("none", True), ("full", False), ("none", False)]
UNSCANNED_MODEL = "t5-small"  # compiling unrolled layers for a TPU takes ~4 min a model here


def step_worker(rounds: int, out: str) -> None:
  """Times every setting on this process's devices (set through JAX_NUM_CPU_DEVICES)."""
  import jax
  import numpy as np

  from irl_lm.models import ModelConfig
  from irl_lm.training import flops
  from irl_lm.training.builders import build_run
  from irl_lm.training.config import base_config
  cfg = ModelConfig(kind="decoder", layout="gpt2", vocab_size=8192, d_model=256, num_heads=4,
                    head_dim=64, d_ff=1024, num_layers=4, layer_norm_eps=1e-5,
                    tie_word_embeddings=True, eos_id=1)
  rows = []
  for seq, batch in STEP_SETTINGS:
    cases = {}
    for loss in ("mle", "ilql"):
      c = base_config()
      c.loss.name = loss
      c.train.steps = 1000
      c.data.batch_size, c.data.inputs_length, c.data.targets_length = batch, seq // 2, seq // 2
      run = build_run(c, with_task=False, model_cfg=cfg)
      cases[loss] = _stepper(run, random_batch(run, np.random.default_rng(0)))
    times = harness.interleave(cases, rounds=rounds, calls=2)
    for loss, ts in times.items():
      s = harness.spread(ts)
      rows.append({"loss": loss, "seq": seq, "batch": batch, "devices": jax.device_count(),
                   "step_s": s, "tokens_per_s": batch * seq / s["median"],
                   "model_tflop_per_step": flops.train_flops_per_step(
                       cfg, batch, seq // 2, seq // 2, loss == "ilql") / 1e12})
  with open(out, "w") as f:
    json.dump({"machine": harness.machine(), "rows": rows}, f)


def random_batch(run, rng) -> dict:
  """A batch of the run's shapes: random tokens, one finished segment per row, every target
  weighted."""
  import numpy as np
  out = {}
  for k, s in run.abstract_batch().items():
    b, n = s.shape
    if k == "decoder_rewards":
      out[k] = np.where(np.arange(n) == n - 1, 1.0, 0.0)[None].repeat(b, 0).astype(np.float32)
    elif k in ("decoder_loss_weights", "decoder_segment_ids"):
      out[k] = np.ones((b, n), np.int32)
    elif k == "decoder_truncated":
      out[k] = np.zeros((b, n), np.int32)
    elif k == "decoder_positions":
      out[k] = np.arange(n, dtype=np.int32)[None].repeat(b, 0)
    else:
      out[k] = rng.integers(2, run.model_cfg.vocab_size, (b, n)).astype(np.int32)
  return run.shard_batch(out)


def _stepper(run, batch):
  import jax
  box = [run.init_state()]

  def call() -> None:
    box[0], metrics = run.train_step(box[0], batch)
    jax.block_until_ready(metrics)
  return call


def steps(rounds: int) -> list[dict]:
  """Runs the step worker once per device count, each in a fresh process."""
  rows = []
  for n in DEVICE_COUNTS:
    print(f"step times on {n} device(s)", file=sys.stderr, flush=True)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
      env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(n), JAX_PLATFORMS="cpu")
      subprocess.run([sys.executable, __file__, "--worker", f"--rounds={rounds}",
                      f"--out={out.name}"], check=True, env=env)
      with open(out.name) as f:
        rows += json.load(f)["rows"]
  return rows


def memory() -> list[dict]:
  """Per-chip train memory on a TPU v5e-16 for each model, remat and scan setting."""
  import jax

  from irl_lm.cli import load_config_file
  from irl_lm.models import init_params
  from irl_lm.planning import plan_train, tpu_devices
  from irl_lm.training.builders import model_config
  devices, chip_memory, _ = tpu_devices("v5e:4x4")
  rows = []
  for config_file, size in MEMORY_MODELS:
    for remat, scan in MEMORY_VARIANTS:
      if not scan and size != UNSCANNED_MODEL:
        continue
      c = load_config_file(os.path.join(harness.ROOT, "configs", config_file))
      c.model.size, c.model.remat, c.model.scan_layers = size, remat, scan
      c.data.vocabulary_path = "/models/none"  # the planner reads no data
      print(f"planning {size} remat={remat} scan={scan}", file=sys.stderr, flush=True)
      p = plan_train(c, devices, chip_memory)
      shapes = jax.eval_shape(lambda: init_params(model_config(c, None), jax.random.key(0)))
      rows.append({"model": size, "config": config_file, "remat": remat, "scan": scan,
                   "params_b": sum(x.size for x in jax.tree.leaves(shapes)) / 1e9,
                   "batch": c.data.batch_size, "inputs": c.data.inputs_length,
                   "targets": c.data.targets_length, "plan": p.as_dict(),
                   "total_gib": p.total / 2**30, "chip_gib": chip_memory / 2**30})
  return rows


def plot(result: dict) -> None:
  """scaling_steps.png (tokens/s) and scaling_memory.png (GiB per chip)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  if result.get("steps"):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for loss in ("mle", "ilql"):
      for n in DEVICE_COUNTS:
        rows = [r for r in result["steps"] if r["loss"] == loss and r["devices"] == n]
        by_seq = sorted((r["seq"], r["tokens_per_s"]) for r in rows if r["batch"] == 8)
        by_batch = sorted((r["batch"], r["tokens_per_s"]) for r in rows if r["seq"] == 512)
        style = "-o" if n == 1 else "--s"
        axes[0].plot(*zip(*by_seq), style, label=f"{loss}, {n} device(s)")
        axes[1].plot(*zip(*by_batch), style, label=f"{loss}, {n} device(s)")
    axes[0].set(xscale="log", xlabel="sequence length (batch 8)", ylabel="tokens / s",
                title="Train step throughput vs sequence length")
    axes[1].set(xscale="log", xlabel="batch size (sequence 512)", ylabel="tokens / s",
                title="Train step throughput vs batch size")
    for ax in axes:
      ax.grid(alpha=0.3)
      ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(harness.RESULTS, "scaling_steps.png"), dpi=110)
  if result.get("memory"):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for remat, scan in MEMORY_VARIANTS:
      rows = [r for r in result["memory"] if r["remat"] == remat and r["scan"] == scan]
      for family, marker in (("t5", "o"), ("llama", "s")):
        pts = sorted((r["params_b"], r["total_gib"]) for r in rows
                     if r["model"].startswith(family))
        if not pts:
          continue
        ax.plot(*zip(*pts), f"-{marker}", label=f"{family}, remat={remat}, scan={scan}")
    ax.axhline(result["memory"][0]["chip_gib"], color="k", lw=0.8, ls=":",
               label="v5e chip memory")
    ax.set(xscale="log", yscale="log", xlabel="parameters (B)",
           ylabel="train step memory per chip (GiB)",
           title="Planner: per-chip memory on TPU v5e-16 (fsdp=16)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(harness.RESULTS, "scaling_memory.png"), dpi=110)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--part", choices=("steps", "memory", "all"), default="all")
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--out", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    step_worker(args.rounds, args.out)
    return
  path = os.path.join(harness.RESULTS, "scaling.json")
  result = {}
  if os.path.exists(path):
    with open(path) as f:
      result = json.load(f)  # a part not re-run keeps its last figures
  if args.part in ("steps", "all"):
    result["steps"] = steps(args.rounds)
  if args.part in ("memory", "all"):
    result["memory"] = memory()
  result["machine"] = harness.machine()
  harness.write("scaling", result)
  plot(result)
  print(harness.describe(result["machine"]))
  print_tables(result)


def print_tables(result: dict) -> None:
  """Markdown tables of both parts."""
  if result.get("steps"):
    print("\n| loss | devices | sequence | batch | step (s, min-max) | tokens/s | TFLOP/step |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(result["steps"], key=lambda r: (r["loss"], r["devices"], r["batch"],
                                                    r["seq"])):
      print(f"| {r['loss']} | {r['devices']} | {r['seq']} | {r['batch']} | "
            f"{harness.fmt(r['step_s'], 's', 3)} | {r['tokens_per_s']:.0f} | "
            f"{r['model_tflop_per_step']:.3f} |")
  if result.get("memory"):
    print("\n| model | params (B) | remat | scan | params + opt (GiB) | temporaries (GiB) | "
          "total per chip (GiB) | fits 16 GiB (15% headroom) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["memory"]:
      p = r["plan"]
      print(f"| {r['model']} | {r['params_b']:.2f} | {r['remat']} | {r['scan']} | "
            f"{(p['params'] + p['optimizer']) / 2**30:.2f} | {p['temporaries'] / 2**30:.2f} | "
            f"{r['total_gib']:.2f} | {'yes' if r['total_gib'] <= 0.85 * r['chip_gib'] else 'NO'}"
            " |")


if __name__ == "__main__":
  main()
