"""Roofline estimates for the presets' plans: the lower bound on step time that ``irl_lm.plan``
derives from the compiled step's FLOPs and bytes accessed at the chip's published peaks.

  python bench/plan_roofline.py [--only=REGEX] [--force]   # needs the tpu extra (libtpu)

Each row is one ``irl_lm.plan`` run (train step and one cached decode step). Rows already in
bench/results/plan_roofline.json are kept unless ``--force``; ``--only`` plans the rows whose
key matches. Writes bench/results/plan_roofline.{json,md} (the table in docs/scaling.md).
These are estimates, not measurements: they assume compute and memory traffic overlap
perfectly and ignore communication.
"""
import json
import os
import re
import sys

import jax
from plan_3b import ROOT, run

jax.config.update("jax_platforms", "cpu")  # libtpu stays free for the planner's subprocesses

SEQ_4096 = ["--config.data.task=embedded_summarize", "--config.data.vocabulary=",
            "--config.data.inputs_length=2048", "--config.data.targets_length=2048"]
LORA = ["--config.model.lora.rank=16",
        "--config.model.lora.targets=('q','k','v','o','gate','up','down')"]
ROWS = {
    "t5_xl.py (mle) | v5e-16": ("t5_xl.py", ["--topology=v5e:4x4"]),
    "llama_3b.py:iqlearn | v5e-16": ("llama_3b.py:iqlearn", ["--topology=v5e:4x4"]),
    "llama_3b.py:ilql | v5e-16": ("llama_3b.py:ilql", ["--topology=v5e:4x4"]),
    "llama-3.1-8b mle, full, splash | v5e-32": ("llama_3b.py:mle", [
        "--topology=v5e:4x8", "--config.model.size=llama-3.1-8b",
        "--config.model.vocab_size=128256", "--config.model.attention=splash", *SEQ_4096,
        "--config.data.batch_size=32", "--config.eval.batch_size=32"]),
    "llama-3.1-8b mle, LoRA r16, splash | v5e-8": ("llama_3b.py:mle", [
        "--topology=v5e:2x4", "--config.model.size=llama-3.1-8b",
        "--config.model.vocab_size=128256", "--config.model.attention=splash", *SEQ_4096,
        *LORA, "--config.data.batch_size=8", "--config.eval.batch_size=8"]),
}


def cells(r: dict) -> list[str]:
  """Train step bound (ms, which side), tokens/s per chip, MFU bound, decode step bound."""
  train, decode = r["plans"][0], r["plans"][1]
  if "roofline" not in train:
    return ["(not compiled: " + train["note"][:60] + ")", "", "", ""]
  t = train["roofline"]
  d = decode.get("roofline")
  return [f"{1e3 * t['step_s']:.0f} ({t['bound']})", f"{t['tokens_per_s_per_chip']:,.0f}",
          f"{100 * t['mfu']:.0f}%",
          f"{1e3 * d['step_s']:.2f} ({d['bound']})" if d else ""]


def main() -> None:
  only = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")), "")
  path = os.path.join(ROOT, "bench", "results", "plan_roofline.json")
  results = {}
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)
  for key, (config, flags) in ROWS.items():
    if not re.search(only, key) or key in results and "--force" not in sys.argv:
      continue
    print(f"planning {key}", flush=True)
    results[key] = run(config, flags)
    with open(path, "w") as f:
      json.dump(results, f, indent=2)
  lines = ["| config | target | train step at least (ms) | tokens/s per chip at most "
           "| MFU at most | decode step at least (ms) |", "|---|---|---|---|---|---|"]
  for key in ROWS:
    if key in results:
      lines.append("| " + " | ".join([*key.split(" | "), *cells(results[key])]) + " |")
  table = "\n".join(lines) + "\n"
  with open(os.path.join(ROOT, "bench", "results", "plan_roofline.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()
