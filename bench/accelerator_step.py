"""Train-step MFU and attention kernels on an accelerator (a GPU), interleaved.

  JAX_PLATFORMS=cuda python bench/accelerator_step.py [--rounds=3] [--budget=360]
  python bench/accelerator_step.py --smoke   # tiny sizes on the CPU: checks the script

Part 1: the trainer's own step (``build_run``) in bfloat16 for t5-base and llama-3.2-1b,
MLE and ILQL, with ``model.attention=auto`` (cuDNN where the model allows) and, for
Llama's MLE step, ``xla`` beside it; a bfloat16 8192^3 matmul takes turns with them in
every round, so MFU is given against that measured matmul and against the chip's
datasheet peak. Part 2: one attention layer's forward and backward at 2048-8192 tokens,
``xla`` against ``cudnn`` and ``chunked``: time and the compiled temporary memory.
Cases still to start when ``--budget`` seconds have passed are skipped and listed.
Writes bench/results/accelerator_step.json.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import harness
import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.models import attention as A
from irl_lm.models import preset
from irl_lm.training import flops
from irl_lm.training.builders import build_run
from irl_lm.training.config import base_config

DATASHEET_BF16 = {"NVIDIA H200": 989e12, "NVIDIA H100 80GB HBM3": 989e12}  # dense, SXM
# name: (preset, batch, inputs, targets)
MODELS = {"t5-base": ("t5-base", 32, 512, 128), "llama-3.2-1b": ("llama-3.2-1b", 8, 512, 512)}
SMOKE = {"t5-base": ("t5-tiny", 2, 16, 8), "llama-3.2-1b": ("llama-tiny", 2, 8, 8)}
STEPS = (("t5-base", "mle", "auto"), ("t5-base", "ilql", "auto"),
         ("llama-3.2-1b", "mle", "auto"), ("llama-3.2-1b", "ilql", "auto"),
         ("llama-3.2-1b", "mle", "xla"))


def batch_for(kind: str, b: int, li: int, lt: int, vocab: int) -> dict[str, np.ndarray]:
  """Random tokens, every target weighted, a reward on each row's last token."""
  rng = np.random.default_rng(0)
  tgt = rng.integers(2, vocab, (b, lt)).astype(np.int32)
  out = {"decoder_target_tokens": tgt, "decoder_loss_weights": np.ones((b, lt), np.int32),
         "decoder_rewards": np.where(np.arange(lt) == lt - 1, 1.0, 0.0)[None].repeat(b, 0)
         .astype(np.float32), "decoder_truncated": np.zeros((b, lt), np.int32)}
  if kind == "encdec":
    out["encoder_input_tokens"] = rng.integers(2, vocab, (b, li)).astype(np.int32)
    out["decoder_input_tokens"] = np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], 1)
    return out
  prompt = rng.integers(2, vocab, (b, li)).astype(np.int32)
  tokens = np.concatenate([prompt, tgt], 1)
  return {"decoder_input_tokens": np.concatenate([np.zeros((b, 1), np.int32), tokens[:, :-1]], 1),
          "decoder_target_tokens": tokens,
          "decoder_loss_weights": np.concatenate([np.zeros((b, li), np.int32),
                                                  out["decoder_loss_weights"]], 1),
          "decoder_rewards": np.concatenate([np.zeros((b, li), np.float32),
                                             out["decoder_rewards"]], 1),
          "decoder_truncated": np.zeros((b, li + lt), np.int32)}


def step_case(name: str, loss: str, attention: str, sizes: dict) -> tuple[Callable, float, str]:
  """One train step per call, its model FLOPs and the attention it resolved to."""
  size, b, li, lt = sizes[name]
  cfg = preset(size, dtype="bfloat16", attention=attention)
  config = base_config()
  config.loss.name = loss
  config.train.steps = 1000
  config.mesh.num_devices = 1
  config.data.batch_size, config.data.inputs_length, config.data.targets_length = b, li, lt
  run = build_run(config, with_task=False, model_cfg=cfg)
  want = run.abstract_batch()
  batch = {k: v for k, v in batch_for(cfg.kind, b, li, lt, cfg.vocab_size).items() if k in want}
  work = flops.train_flops_per_step(cfg, b, li, lt, loss == "ilql")
  return harness.train_step_case(run, batch), work, run.model.cfg.attention


def matmul_bf16(n: int) -> tuple[Callable, float]:
  a = jnp.ones((n, n), jnp.bfloat16)
  mm = jax.jit(lambda x: x @ x)
  return (lambda: mm(a).block_until_ready()), 2.0 * n ** 3


def attention_case(impl: str, length: int, heads: int = 32, kv: int = 8, d: int = 64
                   ) -> tuple[Callable, float]:
  """Forward and backward of one causal attention over ``length`` tokens (bfloat16), and
  the compiled program's temporary bytes."""
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, length, heads, d)), jnp.bfloat16)
  k, v = (jnp.asarray(rng.normal(size=(1, kv, length, d)), jnp.bfloat16) for _ in range(2))
  seg = jnp.ones((1, length), jnp.int32)
  pos = jnp.arange(length)[None]
  mask = A.CausalMask(seg, seg, pos, pos, jnp.int32(0))

  def loss(q, k, v):
    return jnp.sum(A.attend(q, k, v, mask, None, d ** -0.5, 0.0, impl, 512).astype(jnp.float32))

  compiled = jax.jit(jax.grad(loss, (0, 1, 2))).lower(q, k, v).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  return (lambda: jax.block_until_ready(compiled(q, k, v))), temp


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--calls", type=int, default=3)
  ap.add_argument("--budget", type=float, default=360.0, help="seconds before skipping cases")
  ap.add_argument("--smoke", action="store_true", help="tiny sizes (checks the script on CPU)")
  args = ap.parse_args()
  start = time.perf_counter()
  sizes = SMOKE if args.smoke else MODELS
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", device.platform)
  cases, work, resolved, skipped = {}, {}, {}, []
  for name, loss, attention in STEPS:
    label = f"{name} {loss} ({attention})"
    if time.perf_counter() - start > args.budget:
      skipped.append(label)
      continue
    t = time.perf_counter()
    cases[label], work[label], resolved[label] = step_case(name, loss, attention, sizes)
    print(f"built {label} -> attention {resolved[label]} in {time.perf_counter() - t:.0f}s",
          flush=True)
  n = 256 if args.smoke else 8192
  cases["matmul"], mm_work = matmul_bf16(n)
  times = harness.interleave(cases, rounds=args.rounds, calls=args.calls)
  peak = [mm_work / t for t in times["matmul"]]
  datasheet = DATASHEET_BF16.get(kind)
  steps = {}
  for label in work:
    ts = times[label]
    steps[label] = {"attention": resolved[label], "time_s": harness.spread(ts),
                    "mfu_vs_matmul": harness.spread([work[label] / t / p
                                                     for t, p in zip(ts, peak)]),
                    "mfu_vs_datasheet": harness.spread([work[label] / t / datasheet for t in ts])
                    if datasheet else None, "model_flops": work[label]}
  attention = {}
  for length in ((256, 512) if args.smoke else (2048, 4096, 8192)):
    row, calls = {}, {}
    for impl in ("xla", "cudnn", "chunked"):
      if impl == "cudnn" and device.platform != "gpu":
        continue
      if time.perf_counter() - start > args.budget:
        skipped.append(f"attention {impl} {length}")
        continue
      try:
        calls[impl], temp = attention_case(impl, length)
      except Exception as e:  # pylint: disable=broad-except  # an out-of-memory is a finding
        row[impl] = {"error": str(e).splitlines()[0][:200]}
        continue
      row[impl] = {"temp_bytes": temp}
    for impl, s in harness.interleave(calls, rounds=args.rounds, calls=args.calls,
                                      progress=False).items():
      row[impl]["time_s"] = harness.spread(s)
    attention[length] = row
  info = harness.machine(device=kind, peak_flops=float(np.median(peak)),
                         datasheet_bf16=datasheet)
  harness.write("accelerator_step_smoke" if args.smoke else "accelerator_step", {
      "machine": info, "sizes": {k: dict(zip(("preset", "batch", "inputs", "targets"), v))
                                 for k, v in sizes.items()},
      "steps": steps, "attention": attention, "skipped": skipped,
      "times_s": {k: harness.spread(v) for k, v in times.items()}})
  print(f"{kind}; {harness.describe(info)}; bf16 {n}^3 matmul "
        f"{np.median(peak) / 1e12:.0f} TFLOP/s" + (f", datasheet {datasheet / 1e12:.0f}"
                                                    if datasheet else ""))
  print("\n| step (bfloat16) | attention | time/step (s) | MFU vs matmul | MFU vs datasheet |")
  print("|---|---|---|---|---|")
  pct = lambda s: f"{100 * s['median']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f})"
  for label, s in steps.items():
    print(f"| {label} | {s['attention']} | {harness.fmt(s['time_s'], 's', 3)} | "
          f"{pct(s['mfu_vs_matmul'])} | {pct(s['mfu_vs_datasheet']) if datasheet else '-'} |")
  print("\n| attention fwd+bwd, 1 row, 32 heads (8 kv), d 64 | impl | time (ms) | temp MiB |")
  print("|---|---|---|---|")
  for length, row in attention.items():
    for impl, r in row.items():
      if "error" in r:
        print(f"| {length} | {impl} | {r['error']} | |")
        continue
      print(f"| {length} | {impl} | {1e3 * r['time_s']['median']:.2f} | "
            f"{r['temp_bytes'] / 2 ** 20:.0f} |")
  if skipped:
    print(f"\nskipped (over --budget): {', '.join(skipped)}")


if __name__ == "__main__":
  main()
