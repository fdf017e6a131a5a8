"""AOT-plans 7-9B models at sequence 4096 for MLE, IQLearn and ILQL: full fine-tuning with
FSDP on a TPU v5e-32 (or v5p-16), and LoRA on a TPU v5e-8 (or v4-8), its frozen base in
float32 or bfloat16.

  python bench/plan_8b.py [--only=REGEX] [--force]  # needs the tpu extra

Each row is ``irl_lm.plan`` on ``configs/llama_3b.py:LOSS`` with ``model.size`` one of
llama-3.1-8b, qwen2.5-7b and gemma-2-9b (each with its own vocabulary), bfloat16 compute,
full remat, scanned layers, blockwise attention (``model.attention=chunked``; rows marked
``splash`` use the Pallas TPU kernel), rows of 2048 prompt + 2048 response tokens, one row
per device (a v4 chip shows two); LoRA rows add rank-16 adapters on q, k, v, o, gate, up and
down. ``--only`` plans the rows whose key (``model | loss | setup[ | splash]``) matches it;
rows already in the results are kept unless ``--force``. Writes bench/results/plan_8b.json
and .md (the table in docs/scaling.md).
"""
import json
import os
import re
import sys

import jax
from plan_3b import ROOT, plan_columns, run

jax.config.update("jax_platforms", "cpu")  # libtpu stays free for the planner's subprocesses

MODELS = {"llama-3.1-8b": 128256, "qwen2.5-7b": 152064, "gemma-2-9b": 256000}
COMMON = ["--config.data.task=embedded_summarize", "--config.data.vocabulary=",
          "--config.data.inputs_length=2048", "--config.data.targets_length=2048"]
LORA = ["--config.model.lora.rank=16",
        "--config.model.lora.targets=('q','k','v','o','gate','up','down')"]
BF16_BASE = ["--config.model.param_dtype=bfloat16"]
SETUPS = {"full, FSDP": ("v5e:4x8", 32, []), "LoRA r16": ("v5e:2x4", 8, LORA),
          "full, FSDP, v5p-16": ("v5p:2x2x2", 8, []),
          "LoRA r16, bf16 base": ("v5e:2x4", 8, LORA + BF16_BASE),
          "LoRA r16, bf16 base, v4-8": ("v4:2x2x1", 8, LORA + BF16_BASE)}  # 2 cores a chip


def main() -> None:
  only = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--only=")), "")
  path = os.path.join(ROOT, "bench", "results", "plan_8b.json")
  results = {}
  if os.path.exists(path):
    with open(path) as f:  # rows planned before the model was part of the key: Llama's
      results = {k if k.count(" | ") >= 2 else f"llama-3.1-8b | {k}": v
                 for k, v in json.load(f).items()}
  for model, vocab in MODELS.items():
    for attention in ("chunked", "splash"):
      for loss in ("mle", "iqlearn", "ilql"):
        for setup, (topology, chips, extra) in SETUPS.items():
          key = f"{model} | {loss} | {setup}" + (" | splash" if attention == "splash" else "")
          if not re.search(only, key) or key in results and "--force" not in sys.argv:
            continue
          print(f"planning {key} on {topology}", flush=True)
          results[key] = run(f"llama_3b.py:{loss}", [
              f"--topology={topology}", f"--config.model.size={model}",
              f"--config.model.vocab_size={vocab}", f"--config.model.attention={attention}",
              *COMMON, *extra, f"--config.data.batch_size={chips}",
              f"--config.eval.batch_size={chips}"])
          with open(path, "w") as f:
            json.dump(results, f, indent=2)
  lines = ["| model | loss | setup | target | mesh | params / chip | opt state | activations + temp "
           "| train total (GiB / share) | decode total | fits (15% headroom) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for key, r in sorted(results.items()):
    model, loss, setup, *kernel = key.split(" | ")
    setup += f", {kernel[0]}" if kernel else ""
    lines.append("| " + " | ".join([model, loss, setup, r["where"], *plan_columns(r)]) + " |")
  table = "\n".join(lines) + "\n"
  with open(os.path.join(ROOT, "bench", "results", "plan_8b.md"), "w") as f:
    f.write(table)
  print(table)


if __name__ == "__main__":
  main()
