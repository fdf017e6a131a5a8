"""Where the time goes: irl_lm (jax.profiler) beside PyTorch (torch.profiler), train step or decode.

  python bench/time_breakdown.py --what=train [--loss=mle]     # the train benchmark's T5 step
  python bench/time_breakdown.py --what=decode [--model=gpt2]  # the decode benchmark, batch 32

Each XLA thunk's time is attributed to the HLO instruction it runs (from the
HLO dump this process writes), whose metadata names the model part
(attention, MLP, LM head, embedding) and the pass (forward, backward, or the
loss and optimizer outside the model). PyTorch's time is the self CPU time of
each aten op. Both are split into matmuls, layout copies (transposes),
gathers/scatters and the remaining elementwise and reduction work. Op times add
up over XLA's threads, so they can exceed the wall time. Writes
bench/results/time_breakdown_{train,decode}.json.
"""
from __future__ import annotations

import os
import tempfile

DUMP = tempfile.mkdtemp(prefix="irl_lm_hlo_")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" --xla_dump_to={DUMP} --xla_dump_hlo_as_text").strip()

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import harness  # noqa: E402
import jax  # noqa: E402
import torch  # noqa: E402  (before irl_lm imports TensorFlow: see train_step.py)
from absl import flags  # noqa: E402

import decode  # noqa: E402
import train_step  # noqa: E402

KINDS = ("matmul", "layout copy", "gather/scatter", "elementwise/reduce")


def hlo_kind(name: str) -> str:
  """The kind of an XLA CPU thunk, from its instruction's name."""
  if name.startswith(("ynn_fusion", "xnn_fusion", "onednn", "dot", "convolution")):
    return "matmul"
  if name.startswith(("copy", "transpose", "bitcast_copy")):
    return "layout copy"
  if "scatter" in name or "gather" in name:
    return "gather/scatter"
  return "elementwise/reduce"


def hlo_part(op_name: str, outside: str) -> str:
  """The model part and pass of an instruction, from its ``op_name`` metadata.

  Instructions outside the model (no ``jvp`` in a train step, no module name
  in decoding) are labelled ``outside``.
  """
  phase = ("backward" if "transpose(jvp" in op_name else "forward" if "jvp(" in op_name
           else "")
  for part, keys in (("attention", ("attn",)), ("mlp", ("mlp",)), ("lm_head", ("lm_head",)),
                     ("embedding", ("shared", "embed")),
                     ("norm/other model", ("T5", "Decoder", "layers_"))):
    if any(k in op_name for k in keys):
      return f"{part} ({phase})" if phase else part
  return outside


def trace(call: Callable[[], Any], module: str, steps: int, outside: str) -> dict:
  """Milliseconds per call by kind, model part and instruction of XLA module ``module``.

  Instructions are named by the HLO dump that this process writes (see ``DUMP``).
  """
  call()
  dumps = sorted(glob.glob(os.path.join(DUMP, f"*{module}*after_optimizations.txt")))
  with open(dumps[-1]) as f:
    op_names = {m.group(1): m.group(2) for m in re.finditer(
        r"^\s*(?:ROOT )?%?(\S+) = .*?op_name=\"([^\"]*)\"", f.read(), re.M)}
  with tempfile.TemporaryDirectory() as d:
    start = time.perf_counter()
    jax.profiler.start_trace(d, create_perfetto_trace=True)
    for _ in range(steps):
      call()
    jax.profiler.stop_trace()
    wall = (time.perf_counter() - start) / steps
    with gzip.open(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[0]) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  by_kind, by_part, by_op = (collections.Counter() for _ in range(3))
  for e in events:
    name = e.get("name", "")
    if e.get("ph") != "X" or name.startswith(("ThunkExecutor", "$", "Slinky", "Pjit", "while")):
      continue
    ms = e.get("dur", 0) / 1e3 / steps
    by_kind[hlo_kind(name)] += ms
    by_part[hlo_part(op_names.get(name, ""), outside)] += ms
    by_op[f"{name}: {op_names.get(name, '?')[-90:]}"] += ms
  return {"wall_ms": 1e3 * wall, "by_kind": dict(by_kind), "by_part": dict(by_part),
          "top_ops": by_op.most_common(12)}


def train_cases(loss: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
  """irl_lm's ``loss`` step and PyTorch's MLE step on the train benchmark's model and batch."""
  batch = train_step.make_batch(16, 128, 64, train_step.MODEL.vocab_size)
  call, init, _ = train_step.jax_case(loss, batch)
  return call, train_step.torch_case(*init, batch)


def decode_cases(model: str, method: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
  """irl_lm's and PyTorch's (2 threads) decode of the decode benchmark's setting."""
  fns, _, _ = decode.cases(model, method, 32)
  return fns["irl_lm"], fns[f"torch_t{torch.get_num_threads()}"]


TORCH_KINDS = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul"),
               "layout copy": ("aten::copy_", "aten::clone", "aten::contiguous",
                               "aten::_to_copy"),
               "gather/scatter": ("aten::embedding", "aten::index", "aten::scatter",
                                  "aten::embedding_dense_backward", "aten::index_add_",
                                  "aten::gather")}


def torch_trace(call: Callable[[], Any], steps: int) -> dict:
  """Milliseconds per call by kind and aten op (self CPU time) of a PyTorch call."""
  call()
  start = time.perf_counter()
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(steps):
      call()
  wall = (time.perf_counter() - start) / steps
  by_kind, by_op = collections.Counter(), collections.Counter()
  for ev in prof.key_averages():
    ms = ev.self_cpu_time_total / 1e3 / steps
    kind = next((k for k, names in TORCH_KINDS.items() if ev.key in names),
                "elementwise/reduce")
    by_kind[kind] += ms
    by_op[ev.key] += ms
  return {"wall_ms": 1e3 * wall, "by_kind": dict(by_kind), "top_ops": by_op.most_common(12)}


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--what", choices=("train", "decode"), default="train")
  ap.add_argument("--loss", default="mle", choices=train_step.LOSSES)
  ap.add_argument("--model", default="gpt2", choices=sorted(decode.CONFIGS))
  ap.add_argument("--method", default="greedy", choices=("greedy", "sample"))
  ap.add_argument("--steps", type=int, default=3)
  args = ap.parse_args()
  flags.FLAGS.mark_as_parsed()  # decode.py's flags keep their defaults
  if args.what == "train":
    ours, theirs = train_cases(args.loss)
    module, outside = "jit_train_step", "loss + optimizer"
    label = f"T5 train step (irl_lm {args.loss}, PyTorch mle)"
  else:
    ours, theirs = decode_cases(args.model, args.method)
    module, outside = "jit_run", "token choice + loop"
    label = f"{args.model} {args.method} decode, batch 32, 64 new tokens"
  mine, torch_side = trace(ours, module, args.steps, outside), torch_trace(theirs, args.steps)
  info = harness.machine()
  harness.write(f"time_breakdown_{args.what}", {"machine": info, "setting": label,
                                                "args": vars(args), "irl_lm": mine,
                                                "torch": torch_side})
  print(harness.describe(info))
  print(f"{label}; ms per call (op times summed over threads)\n")
  print("| kind | irl_lm | PyTorch |\n|---|---|---|")
  for k in KINDS:
    print(f"| {k} | {mine['by_kind'].get(k, 0):.0f} | {torch_side['by_kind'].get(k, 0):.0f} |")
  print(f"| wall time per call | {mine['wall_ms']:.0f} | {torch_side['wall_ms']:.0f} |\n")
  print("| irl_lm part (pass) | ms per call |\n|---|---|")
  for part, ms in sorted(mine["by_part"].items(), key=lambda kv: -kv[1]):
    print(f"| {part} | {ms:.0f} |")
  print("\nirl_lm's slowest instructions:")
  for op, ms in mine["top_ops"]:
    print(f"  {ms:7.1f} ms  {op}")
  print("PyTorch's slowest ops (self time):")
  for op, ms in torch_side["top_ops"]:
    print(f"  {ms:7.1f} ms  {op}")


if __name__ == "__main__":
  main()
