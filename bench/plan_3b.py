"""Runs the AOT planner on every 3B config for each target and writes a markdown table.

  python bench/plan_3b.py [--only=v4]   # needs the tpu extra (libtpu); ~20 min on 2 cores

Writes bench/results/plan_3b.json and bench/results/plan_3b.md (the table in docs/scaling.md).
``--only=SUBSTRING`` re-plans just the targets whose name contains it and keeps
the other rows of the existing JSON.
"""
import json
import os
import subprocess
import sys
import tempfile

CONFIGS = ["t5_xl.py", "t5_xl.py:ilql", "llama_3b.py:iqlearn", "llama_3b.py:ilql"]
TARGETS = {"TPU v5e-16 (16 GiB/chip)": ["--topology=v5e:4x4"],
           "TPU v4-32 (16 chips x 32 GiB = 32 cores x 16 GiB)": ["--topology=v4:2x2x4"],
           "8 GPUs x 80 GiB (CPU stand-in)": ["--devices=8", "--device_memory=80GiB"]}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(config: str, target: list[str]) -> dict:
  with tempfile.NamedTemporaryFile(suffix=".json") as out:
    cmd = [sys.executable, "-m", "irl_lm.plan", f"--config={ROOT}/configs/{config}",
           "--config.data.vocabulary_path=/models/none", f"--json_out={out.name}", *target]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode not in (0, 1):
      raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    with open(out.name) as f:
      return json.load(f)


def plan_columns(r: dict) -> list[str]:
  """A plan's table cells: mesh, params, optimizer state, activations + temporaries, train
  total (GiB / share), decode total, whether both fit within the headroom."""
  g = lambda b: f"{b / 2**30:.2f}"
  train, decode = r["plans"][0], r["plans"][1]
  mesh = train["name"].split("(", 1)[1].rstrip(")")
  ok = all(p["total"] <= (1 - r["headroom"]) * p["device_memory"] for p in r["plans"])
  return [mesh, g(train["params"]), g(train["optimizer"]), g(train["temporaries"]),
          f"{g(train['total'])} / {100 * train['share']:.0f}%", g(decode["total"]),
          "yes" if ok else "NO"]


def main() -> None:
  only = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")), "")
  path = os.path.join(ROOT, "bench", "results", "plan_3b.json")
  old = {}
  if only and os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
  results = {}
  for config in CONFIGS:
    for name, target in TARGETS.items():
      key = f"{config} | {name}"
      if only and only not in name and key in old:
        results[key] = old[key]
        continue
      print(f"planning {config} on {name}", flush=True)
      results[key] = run(config, target)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  lines = ["| config | target | mesh | params | opt state | activations + temp | train total (GiB / share) | decode total | fits (15% headroom) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for key, r in results.items():
    config, target = key.split(" | ")
    lines.append("| " + " | ".join([config, target, *plan_columns(r)]) + " |")
  table = "\n".join(lines) + "\n"
  with open(os.path.join(ROOT, "bench", "results", "plan_3b.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()
