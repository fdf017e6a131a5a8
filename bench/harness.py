"""Benchmark plumbing shared by every script in bench/: the machine, interleaved timing, results.

On a shared machine the load changes within a run, so nothing here times one
case after another. ``interleave`` runs rounds in which every case takes its
turn (A B C, A B C, ...), and comparisons are per-round ratios: their median
and min-max over rounds. Each result file carries ``machine()``: the CPU
model, core count, library versions and load average of the run that made it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the CPU benchmarks; TPU plans use libtpu apart
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
sys.path.insert(0, ROOT)


def cpu_model() -> str:
  """The CPU's marketing name, from /proc/cpuinfo where there is one."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine(**extra: Any) -> dict[str, Any]:
  """CPU, cores, library versions and load: printed and saved with every result."""
  import jax
  info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "python":
                          platform.python_version(), "jax": jax.__version__,
                          "backend": jax.default_backend(), "devices": jax.device_count()}
  for lib in ("torch", "transformers"):
    if lib in sys.modules:
      info[lib] = sys.modules[lib].__version__
  info["load_average"] = [round(x, 2) for x in os.getloadavg()]
  info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  info.update(extra)
  return info


def describe(info: dict[str, Any]) -> str:
  """One line naming the machine, for the top of a benchmark's output."""
  libs = ", ".join(f"{k} {info[k]}" for k in ("jax", "torch", "transformers") if k in info)
  line = f"{info['cpu']}, {info['cores']} cores, {libs}, load {info['load_average']}"
  if "peak_flops" in info:
    line += f", matmul peak {info['peak_flops'] / 1e9:.0f} GFLOP/s"
  return line


def interleave(cases: dict[str, Callable[[], Any]], rounds: int = 5, calls: int = 3,
               warmup: int = 1, progress: bool = True) -> dict[str, list[float]]:
  """Seconds per call of each case in each round, the cases taking turns within a round.

  Every case must block until its work is done. Each runs ``warmup`` untimed
  calls first (compilation), then ``rounds`` times ``calls`` timed calls.
  """
  for fn in cases.values():
    for _ in range(warmup):
      fn()
  times: dict[str, list[float]] = {name: [] for name in cases}
  for r in range(rounds):
    for name, fn in cases.items():
      start = time.perf_counter()
      for _ in range(calls):
        fn()
      times[name].append((time.perf_counter() - start) / calls)
    if progress:
      print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in
                                                     times.items()), file=sys.stderr, flush=True)
  return times


def spread(values: list[float]) -> dict[str, Any]:
  """Median and min-max of per-round values, with every value kept."""
  return {"median": statistics.median(values), "min": min(values), "max": max(values),
          "rounds": values}


def ratio(num: list[float], den: list[float]) -> dict[str, Any]:
  """Per-round ``num / den``: median, min-max and every round."""
  return spread([a / b for a, b in zip(num, den, strict=True)])


def fmt(s: dict[str, Any], unit: str = "x", digits: int = 2) -> str:
  """``1.23x (1.10-1.30)``: a median and its range over rounds."""
  return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def target(name: str, value: dict[str, Any], op: str, bound: float, shown: str) -> dict[str, Any]:
  """A target and whether this run's median meets it (``op`` is ``>=`` or ``<=``)."""
  met = value["median"] >= bound if op == ">=" else value["median"] <= bound
  return {"name": name, "target": f"{op} {bound:g}", "measured": shown, "met": bool(met)}


def write(name: str, payload: dict[str, Any]) -> str:
  """Writes ``bench/results/NAME.json`` and returns its path."""
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, f"{name}.json")
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
  return path


def matmul_case(n: int = 2048) -> tuple[Callable[[], Any], float]:
  """A float32 ``n x n`` matmul to interleave with the cases (the peak stand-in) and its FLOPs."""
  from irl_lm.training import flops
  return flops.matmul_call(n)


def train_step_case(run: Any, batch: dict[str, Any], state: Any = None) -> Callable[[], None]:
  """One ``run.train_step`` per call on a fixed batch; the state carries over between calls
  (``state``: the first one; default ``run.init_state()``)."""
  import jax
  box = [run.init_state() if state is None else state]
  device_batch = run.shard_batch(batch)

  def call() -> None:
    box[0], metrics = run.train_step(box[0], device_batch)
    jax.block_until_ready(metrics)
  return call


def train_step_args() -> argparse.ArgumentParser:
  """A parser with the options of every train-step benchmark: --rounds, --calls (see
  ``interleave``) and the batch shape --batch, --inputs, --targets."""
  ap = argparse.ArgumentParser()
  for name, default in (("rounds", 5), ("calls", 3), ("batch", 16), ("inputs", 128),
                        ("targets", 64)):
    ap.add_argument(f"--{name}", type=int, default=default)
  return ap
