"""Runs every benchmark, then prints one table: each target next to this run's figure.

  python bench/run_all.py [--skip=scaling] [--rounds=5]

Each benchmark runs in its own process (in turn, never two at once) and writes
its JSON to bench/results/; the table is built from those files, so it shows
exactly what the benchmarks measured. Targets are judged on the median over
interleaved rounds; the range is printed beside it. Exits 0 whether or not
the targets are met: a missed target is a finding, not a crash.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import harness

BENCHMARKS = {
    "train_step": lambda r: ["bench/train_step.py", f"--rounds={r}"],
    "decode": lambda r: ["bench/decode.py", f"--rounds={r}"],
    "scaling": lambda r: ["bench/scaling.py", f"--rounds={max(2, r // 2)}"],
}


def table(names: list[str], results: str = harness.RESULTS) -> str:
  """The targets in the named benchmarks' result files (in ``results``), as one markdown table."""
  lines = ["| benchmark | target | measured: median (min-max over rounds) | met |",
           "|---|---|---|---|"]
  machines = set()
  for name in names:
    with open(os.path.join(results, f"{name}.json")) as f:
      result = json.load(f)
    machines.add(harness.describe(result["machine"]).split(", load")[0])
    for t in result.get("targets", []):
      met = "yes" if t["met"] else "**no**"
      lines.append(f"| {t['name']} | {t['target']} | {t['measured']} | {met} |")
  return "\n".join([*sorted(machines), "", *lines])


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--skip", default="", help="comma-separated benchmarks not to run")
  ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison")
  args = ap.parse_args()
  skip = set(filter(None, args.skip.split(",")))
  if skip - set(BENCHMARKS):
    sys.exit(f"error: --skip: unknown benchmark(s) {sorted(skip - set(BENCHMARKS))}; "
             f"expected some of {sorted(BENCHMARKS)}")
  ran = []
  for name, argv in BENCHMARKS.items():
    if name not in skip:
      print(f"== {name}", file=sys.stderr, flush=True)
      subprocess.run([sys.executable, *argv(args.rounds)], check=True, cwd=harness.ROOT)
      ran.append(name)
  print("\n" + table([n for n in ran if n != "scaling"]))
  if "scaling" in ran:
    print("\nScaling table: bench/results/scaling.json, scaling_steps.png, scaling_memory.png")


if __name__ == "__main__":
  main()
