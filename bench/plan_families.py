"""AOT-plans an IQLearn fine-tune of every real-size family preset on one TPU topology.

  python bench/plan_families.py [--topology=v5e:4x4] [--only=SUBSTRING]  # needs the tpu extra

Each preset is planned by ``irl_lm.plan`` (the real train step and one decode step,
compiled for the topology by libtpu on this CPU machine) with bfloat16 compute, full
remat, scanned layers, FSDP over all chips, 64 rows of 256 + 256 tokens. Writes
bench/results/plan_families.json and .md (the table in docs/scaling.md).
"""
import json
import os
import sys

import jax
from plan_3b import ROOT, plan_columns, run

jax.config.update("jax_platforms", "cpu")  # libtpu stays free for the planner's subprocesses

from irl_lm.models.config import PRESETS as PRESETS_BY_NAME
from irl_lm.models.factory import param_logical_specs

PRESETS = ["llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "qwen2.5-0.5b", "qwen2.5-1.5b",
           "qwen2.5-7b", "qwen3-0.6b", "qwen3-4b", "qwen3-8b", "mistral-7b", "gemma-2-2b",
           "gemma-2-9b", "gemma-3-1b", "gemma-3-4b", "mt5-base", "mt5-xl"]


def flags(preset: str) -> tuple[str, list[str]]:
  """(config file, overrides) planning ``preset`` with its own vocabulary."""
  config = "t5_xl.py:iqlearn" if preset.startswith("mt5") else "llama_3b.py:iqlearn"
  vocab = PRESETS_BY_NAME[preset].vocab_size
  return config, [f"--config.model.size={preset}", f"--config.model.vocab_size={vocab}",
                  "--config.data.task=embedded_summarize", "--config.data.vocabulary=",
                  "--config.data.inputs_length=256", "--config.data.targets_length=256"]


def main() -> None:
  args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
  topology, only = args.get("topology", "v5e:4x4"), args.get("only", "")
  path = os.path.join(ROOT, "bench", "results", "plan_families.json")
  results = {}
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)
  for preset in PRESETS:
    if only and only not in preset:
      continue
    config, extra = flags(preset)
    print(f"planning {preset} on {topology}", flush=True)
    results[preset] = run(config, [f"--topology={topology}", *extra])
    abstract = param_logical_specs(PRESETS_BY_NAME[preset].replace(scan_layers=True))[1]
    results[preset]["num_params"] = sum(x.size for x in jax.tree.leaves(abstract))
    with open(path, "w") as f:
      json.dump(results, f, indent=2)
  lines = ["| preset | params | target | mesh | params / chip | opt state | activations + temp "
           "| train total (GiB / share) | decode total | fits (15% headroom) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for preset in (p for p in PRESETS if p in results):
    r = results[preset]
    cells = [preset, f"{r['num_params'] / 1e9:.2f}B", r["where"], *plan_columns(r)]
    lines.append("| " + " | ".join(cells) + " |")
  table = "\n".join(lines) + "\n"
  with open(os.path.join(ROOT, "bench", "results", "plan_families.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()
