"""Decoding throughput: irl_lm.decoding.generate (JAX) against transformers' PyTorch generate.

  python bench/decode.py [--models=gpt2,llama,t5] [--methods=greedy,sample] [--batches=32]

Both decode exactly ``--new_tokens`` tokens (no early EOS: irl_lm gets
``eos_id=-1``, PyTorch ``min_new_tokens``) from the same random prompts on
identical float32 weights: a random irl_lm model exported with
``save_pretrained`` and loaded by transformers. Sampling is plain temperature-1
sampling in both (no top-k, no top-p). For each setting irl_lm and PyTorch,
once per ``--torch_threads`` count, take turns in every round; the speedup of a
round is against that round's fastest PyTorch, so it is the conservative one.
Greedy must give identical tokens. Writes bench/results/decode.json.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from typing import Any

import harness
import jax
import numpy as np
import torch  # before irl_lm imports TensorFlow: triton's extension crashes when loaded after it
from absl import app, flags
from transformers import GPT2LMHeadModel, LlamaForCausalLM, T5ForConditionalGeneration

from irl_lm.decoding import generate
from irl_lm.models import ModelConfig, build_model, init_params, save_pretrained

_MODELS = flags.DEFINE_list("models", ["gpt2", "llama", "t5"], "Model layouts to measure.")
_METHODS = flags.DEFINE_list("methods", ["greedy", "sample"], "Decoding methods.")
_BATCHES = flags.DEFINE_list("batches", ["32"], "Batch sizes.")
_PROMPT = flags.DEFINE_integer("prompt_len", 32, "Prompt (T5: encoder input) tokens.")
_NEW = flags.DEFINE_integer("new_tokens", 64, "Generated tokens per row.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved rounds per setting.")
_THREADS = flags.DEFINE_list("torch_threads", sorted({"1", str(torch.get_num_threads())}),
                             "PyTorch intra-op thread counts to try.")

CONFIGS = {  # small models with the real vocabularies (the LM head dominates per-token cost)
    "gpt2": ModelConfig(kind="decoder", layout="gpt2", vocab_size=50257, d_model=256,
                        num_heads=4, head_dim=64, d_ff=1024, num_layers=4,
                        layer_norm_eps=1e-5, tie_word_embeddings=True, eos_id=50256),
    "llama": ModelConfig(kind="decoder", layout="llama", vocab_size=32000, d_model=256,
                         num_heads=4, num_kv_heads=2, head_dim=64, d_ff=688, num_layers=4,
                         layer_norm_eps=1e-5, eos_id=2),
    "t5": ModelConfig(kind="encdec", layout="v1_1", vocab_size=32128, d_model=256, num_heads=4,
                      head_dim=64, d_ff=1024, num_layers=4, num_encoder_layers=4),
}
HF_CLASSES = {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM,
              "t5": T5ForConditionalGeneration}


def cases(name: str, method: str, batch: int
          ) -> tuple[dict[str, Callable[[], Any]], float, float]:
  """irl_lm's and PyTorch's decode of one setting, their greedy agreement, and M params."""
  cfg = CONFIGS[name]
  model, params = build_model(cfg), init_params(cfg, jax.random.key(0))
  with tempfile.TemporaryDirectory() as tmp:
    save_pretrained(model, params, tmp)
    hf = HF_CLASSES[name].from_pretrained(tmp).eval()
  prompts = np.random.default_rng(0).integers(2, 1000, (batch, _PROMPT.value)).astype(np.int32)
  key = "encoder_input_tokens" if cfg.kind == "encdec" else "decoder_input_tokens"
  n = _NEW.value
  ids = torch.tensor(prompts, dtype=torch.long)
  sample = method == "sample"

  def run_jax() -> np.ndarray:
    out = generate(model, params, {key: prompts}, max_new_tokens=n, eos_id=-1,
                   method=method, temperature=1.0, with_scores=False)  # as HF's default
    return np.asarray(out.tokens[:, 0])

  def torch_at(threads: int) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
      torch.set_num_threads(threads)
      with torch.inference_mode():
        out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=sample,
                          num_beams=1, max_new_tokens=n, min_new_tokens=n, top_k=0,
                          top_p=1.0, temperature=1.0, pad_token_id=cfg.pad_id)
      return out[:, -n:].numpy()
    return run

  fns = {"irl_lm": run_jax, **{f"torch_t{t}": torch_at(int(t)) for t in _THREADS.value}}
  agree = float(np.mean(run_jax() == fns[f"torch_t{_THREADS.value[0]}"]())) if not sample \
      else float("nan")
  return fns, agree, sum(x.size for x in jax.tree.leaves(params)) / 1e6


def main(argv: list[str]) -> None:
  del argv
  rows, targets = [], []
  for name in _MODELS.value:
    for method in _METHODS.value:
      for batch in map(int, _BATCHES.value):
        print(f"{name} {method} batch {batch}", file=sys.stderr, flush=True)
        fns, agree, params_m = cases(name, method, batch)
        times = harness.interleave(fns, rounds=_ROUNDS.value, calls=1)
        fastest_torch = [min(ts) for ts in zip(*(v for k, v in times.items() if k != "irl_lm"))]
        speedup = harness.ratio(fastest_torch, times["irl_lm"])
        tokens = batch * _NEW.value
        row = {"model": name, "method": method, "batch": batch,
               "params_m": round(params_m, 1),
               "irl_lm_tok_s": tokens / harness.spread(times["irl_lm"])["median"],
               "torch_tok_s": {k: tokens / harness.spread(v)["median"]
                               for k, v in times.items() if k != "irl_lm"},
               "speedup": speedup, "greedy_token_agreement": agree,
               "times_s": {k: harness.spread(v) for k, v in times.items()}}
        rows.append(row)
        if batch == 32:
          targets.append(harness.target(f"decode: {name} {method} batch 32 vs HF generate",
                                        speedup, ">=", 3.0, harness.fmt(speedup)))
          if method == "greedy":
            targets.append({"name": f"decode: {name} greedy tokens equal HF's",
                            "target": "100%", "measured": f"{agree:.1%}",
                            "met": agree == 1.0})
  info = harness.machine(torch_threads=_THREADS.value)
  harness.write("decode", {"machine": info, "command": " ".join(["python bench/decode.py",
                                                                  *sys.argv[1:]]),
                           "new_tokens": _NEW.value, "prompt_len": _PROMPT.value,
                           "dtype": "float32", "rows": rows, "targets": targets})
  print(harness.describe(info))
  print(f"prompt {_PROMPT.value} tokens, {_NEW.value} new tokens, float32, "
        f"{_ROUNDS.value} interleaved rounds\n")
  header = ("model", "method", "batch", "params (M)", "irl_lm tok/s", "PyTorch tok/s (best)",
            "speedup (min-max)", "greedy tokens equal")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for r in rows:
    best = max(r["torch_tok_s"].values())
    same = "" if r["method"] != "greedy" else f"{r['greedy_token_agreement']:.0%}"
    print(f"| {r['model']} | {r['method']} | {r['batch']} | {r['params_m']} | "
          f"{r['irl_lm_tok_s']:.0f} | {best:.0f} | {harness.fmt(r['speedup'])} | {same} |")


if __name__ == "__main__":
  app.run(main)
