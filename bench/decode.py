"""Decoding throughput: irl_lm.decoding.generate (JAX) vs transformers' PyTorch generate.

Both run greedy decoding of exactly ``--new_tokens`` tokens (no early EOS:
irl_lm gets ``eos_id=-1``, PyTorch ``min_new_tokens``) from the same random
prompts on identical float32 weights: a random irl_lm model exported with
``save_pretrained`` and loaded by transformers. Timings are the median of
``--repeats`` runs after a warm-up (compilation excluded), interleaved so both
frameworks see the same machine load. PyTorch runs with each ``--torch_threads``
setting and the table shows its fastest (on a busy 2-core machine one thread
often beats two), so the speedup is the conservative one. Prints a table and
writes JSON.

  python bench/decode.py [--models=gpt2,t5] [--batches=1,32] [--new_tokens=64]
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import torch
import transformers
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from irl_lm.decoding import generate  # noqa: E402
from irl_lm.models import ModelConfig, build_model, init_params, save_pretrained  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["gpt2", "t5"], "Model layouts to measure.")
_BATCHES = flags.DEFINE_list("batches", ["1", "32"], "Batch sizes.")
_PROMPT = flags.DEFINE_integer("prompt_len", 32, "Prompt (T5: encoder input) tokens.")
_NEW = flags.DEFINE_integer("new_tokens", 64, "Generated tokens per row.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per setting (median reported).")
_THREADS = flags.DEFINE_list("torch_threads", ["1", str(torch.get_num_threads())],
                             "PyTorch intra-op thread counts to try.")
_OUT = flags.DEFINE_string("output", os.path.join(os.path.dirname(__file__), "results",
                                                  "decode.json"), "JSON results file.")

CONFIGS = {  # small models with the real vocabularies (the LM head dominates per-token cost)
    "gpt2": ModelConfig(kind="decoder", layout="gpt2", vocab_size=50257, d_model=256,
                        num_heads=4, head_dim=64, d_ff=1024, num_layers=4,
                        layer_norm_eps=1e-5, tie_word_embeddings=True, eos_id=50256),
    "t5": ModelConfig(kind="encdec", layout="v1_1", vocab_size=32128, d_model=256, num_heads=4,
                      head_dim=64, d_ff=1024, num_layers=4, num_encoder_layers=4),
}
HF_CLASSES = {"gpt2": transformers.GPT2LMHeadModel,
              "t5": transformers.T5ForConditionalGeneration}


def timed(fn: Callable[[], object]) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def measure(name: str, batch: int) -> dict[str, Any]:
  """Tokens/s of both frameworks on one model and batch size."""
  cfg = CONFIGS[name]
  model, params = build_model(cfg), init_params(cfg, jax.random.key(0))
  with tempfile.TemporaryDirectory() as tmp:
    save_pretrained(model, params, tmp)
    hf = HF_CLASSES[name].from_pretrained(tmp).eval()
  prompts = np.random.default_rng(0).integers(2, 1000, (batch, _PROMPT.value)).astype(np.int32)
  key = "encoder_input_tokens" if cfg.kind == "encdec" else "decoder_input_tokens"
  n = _NEW.value
  ids = torch.tensor(prompts, dtype=torch.long)

  def run_jax():
    return np.asarray(generate(model, params, {key: prompts}, max_new_tokens=n,
                               eos_id=-1).tokens[:, 0])

  def run_torch():
    with torch.inference_mode():
      out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                        num_beams=1, max_new_tokens=n, min_new_tokens=n,
                        pad_token_id=cfg.pad_id)
    return out[:, -n:].numpy()

  agree = float(np.mean(run_jax() == run_torch()))  # also the warm-up (JAX compiles here)
  threads = sorted({int(t) for t in _THREADS.value})
  t_jax, t_torch = [], {t: [] for t in threads}
  for _ in range(_REPEATS.value):
    for t in threads:
      t_jax.append(timed(run_jax))
      torch.set_num_threads(t)
      t_torch[t].append(timed(run_torch))
  tokens = batch * n
  jax_tps = tokens / statistics.median(t_jax)
  torch_by_threads = {t: round(tokens / statistics.median(v), 1) for t, v in t_torch.items()}
  best = max(torch_by_threads, key=torch_by_threads.get)
  params_m = sum(x.size for x in jax.tree.leaves(params)) / 1e6
  return {"model": name, "params_m": round(params_m, 1), "batch": batch,
          "prompt_len": _PROMPT.value, "new_tokens": n, "jax_tok_s": round(jax_tps, 1),
          "torch_tok_s": torch_by_threads[best], "torch_threads": best,
          "torch_tok_s_by_threads": torch_by_threads,
          "speedup": round(jax_tps / torch_by_threads[best], 2),
          "greedy_token_agreement": round(agree, 3)}


def main(argv: list[str]) -> None:
  del argv
  rows = [measure(m, int(b)) for m in _MODELS.value for b in _BATCHES.value]
  header = ("model", "params (M)", "batch", "irl_lm JAX tok/s", "PyTorch tok/s (threads)",
            "speedup", "same tokens")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for r in rows:
    print(f"| {r['model']} | {r['params_m']} | {r['batch']} | {r['jax_tok_s']} | "
          f"{r['torch_tok_s']} ({r['torch_threads']}) | {r['speedup']}x | "
          f"{r['greedy_token_agreement']:.0%} |")
  meta = {"command": " ".join(["python bench/decode.py", *sys.argv[1:]]),
          "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
          "jax": jax.__version__, "torch": torch.__version__,
          "transformers": transformers.__version__,
          "load_average": [round(x, 2) for x in os.getloadavg()], "dtype": "float32",
          "method": "greedy"}
  os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump({"meta": meta, "results": rows}, f, indent=2)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
