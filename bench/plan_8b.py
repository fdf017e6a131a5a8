"""AOT-plans Llama 3.1 8B at sequence 4096 for MLE, IQLearn and ILQL: full fine-tuning with
FSDP on a TPU v5e-32, and LoRA on a TPU v5e-8.

  python bench/plan_8b.py [--only=SUBSTRING]  # needs the tpu extra

Each row is ``irl_lm.plan`` on ``configs/llama_3b.py:LOSS`` with ``model.size=llama-3.1-8b``
(its own 128256-token vocabulary), bfloat16 compute, full remat, scanned layers, blockwise
attention (``model.attention=chunked``), rows of 2048 prompt + 2048 response tokens, one row
per chip; LoRA rows add rank-16 adapters on q, k, v, o, gate, up and down. Writes
bench/results/plan_8b.json and .md (the table in docs/scaling.md).
"""
import json
import os
import sys

import jax
from plan_3b import ROOT, plan_columns, run

jax.config.update("jax_platforms", "cpu")  # libtpu stays free for the planner's subprocesses

COMMON = ["--config.model.size=llama-3.1-8b", "--config.model.vocab_size=128256",
          "--config.data.task=embedded_summarize", "--config.data.vocabulary=",
          "--config.data.inputs_length=2048", "--config.data.targets_length=2048",
          "--config.model.attention=chunked"]
LORA = ["--config.model.lora.rank=16",
        "--config.model.lora.targets=('q','k','v','o','gate','up','down')"]
SETUPS = {"full, FSDP": ("v5e:4x8", 32, []), "LoRA r16": ("v5e:2x4", 8, LORA)}


def main() -> None:
  only = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")), "")
  path = os.path.join(ROOT, "bench", "results", "plan_8b.json")
  results = {}
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)
  for loss in ("mle", "iqlearn", "ilql"):
    for setup, (topology, chips, extra) in SETUPS.items():
      key = f"{loss} | {setup}"
      if only and only not in key:
        continue
      print(f"planning {key} on {topology}", flush=True)
      results[key] = run(f"llama_3b.py:{loss}", [f"--topology={topology}", *COMMON, *extra,
                                                  f"--config.data.batch_size={chips}",
                                                  f"--config.eval.batch_size={chips}"])
      with open(path, "w") as f:
        json.dump(results, f, indent=2)
  lines = ["| loss | setup | target | mesh | params / chip | opt state | activations + temp "
           "| train total (GiB / share) | decode total | fits (15% headroom) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for key, r in results.items():
    lines.append("| " + " | ".join([*key.split(" | "), r["where"], *plan_columns(r)]) + " |")
  table = "\n".join(lines) + "\n"
  with open(os.path.join(ROOT, "bench", "results", "plan_8b.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()
