"""Name and layout map between irl_lm parameters and Hugging Face state-dict keys."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from irl_lm.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Entry:
  """One irl_lm parameter and where it lives in a Hugging Face checkpoint.

  ``transpose``: the HF tensor is ``[out, in]`` (``nn.Linear``) rather than
  ``[in, out]``. ``n_in``: how many leading axes of our kernel are inputs.
  ``part``: (i, n) when our parameter is slice i of n along the HF tensor's
  last axis (GPT-2's fused ``c_attn``).
  """

  path: tuple[str, ...]
  hf_key: str
  transpose: bool = False
  n_in: int = 1
  part: tuple[int, int] | None = None

  def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of this parameter's HF tensor (the whole tensor, not one part)."""
    if self.path[-1] == "bias" or len(shape) == 1:
      flat = (math.prod(shape),)
    else:
      flat = (math.prod(shape[:self.n_in]), math.prod(shape[self.n_in:]))
      if self.transpose:
        flat = flat[::-1]
    if self.part:
      flat = flat[:-1] + (flat[-1] * self.part[1],)
    return flat

  def to_ours(self, hf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(hf)
    if self.part:
      i, n = self.part
      w = x.shape[-1] // n
      x = x[..., i * w:(i + 1) * w]
    if self.transpose:
      x = x.T
    return np.ascontiguousarray(x.reshape(shape), dtype=np.float32)

  def to_hf(self, ours: np.ndarray) -> np.ndarray:
    shape = self.hf_shape(ours.shape)
    if self.part:
      shape = shape[:-1] + (shape[-1] // self.part[1],)
    if self.transpose:
      return np.ascontiguousarray(ours.reshape(shape[::-1]).T)
    return np.ascontiguousarray(ours.reshape(shape))


def _t5_entries(cfg: ModelConfig) -> list[Entry]:
  out = [Entry(("shared", "embedding"), "shared.weight")]
  rel = "SelfAttention.relative_attention_bias.weight"
  for side, short in (("encoder", "enc"), ("decoder", "dec")):
    if not cfg.rel_bias_per_layer:  # mT5 / T5: block 0 holds the stack's bias
      out.append(Entry((f"{short}_relpos", "rel_embedding"), f"{side}.block.0.layer.0.{rel}"))
    subs = [("attn", "SelfAttention")] + ([("cross", "EncDecAttention")] if side == "decoder" else [])
    subs.append(("mlp", "DenseReluDense"))
    n = cfg.num_encoder_layers if side == "encoder" else cfg.num_layers
    for i in range(n):
      ours = (side, f"layers_{i}")
      if cfg.rel_bias_per_layer:  # UMT5: every block its own
        out.append(Entry(ours + ("relpos", "rel_embedding"), f"{side}.block.{i}.layer.0.{rel}"))
      for j, (sub, hf_sub) in enumerate(subs):
        base = f"{side}.block.{i}.layer.{j}"
        out.append(Entry(ours + (f"{sub}_norm", "scale"), f"{base}.layer_norm.weight"))
        if sub == "mlp":
          names = ("wi_0", "wi_1", "wo") if cfg.gated_mlp else ("wi", "wo")
          out += [Entry(ours + ("mlp", w, "kernel"), f"{base}.{hf_sub}.{w}.weight", True)
                  for w in names]
        else:
          out += [Entry(ours + (sub, w, "kernel"), f"{base}.{hf_sub}.{h}.weight", True,
                        n_in=2 if w == "out" else 1)
                  for w, h in zip(("query", "key", "value", "out"), "qkvo")]
    out.append(Entry((f"{side}_norm", "scale"), f"{side}.final_layer_norm.weight"))
  if not cfg.tie_word_embeddings:
    out.append(Entry(("lm_head", "kernel"), "lm_head.weight", True))
  return out


def _gpt2_entries(cfg: ModelConfig) -> list[Entry]:
  out = [Entry(("embed", "embedding"), "transformer.wte.weight"),
         Entry(("wpe", "embedding"), "transformer.wpe.weight")]
  for i in range(cfg.num_layers):
    ours, base = ("decoder", f"layers_{i}"), f"transformer.h.{i}"
    for p, hf_p in (("scale", "weight"), ("bias", "bias")):
      out.append(Entry(ours + ("attn_norm", p), f"{base}.ln_1.{hf_p}"))
      out.append(Entry(ours + ("mlp_norm", p), f"{base}.ln_2.{hf_p}"))
    for p, hf_p in (("kernel", "weight"), ("bias", "bias")):
      out += [Entry(ours + ("attn", w, p), f"{base}.attn.c_attn.{hf_p}", part=(k, 3))
              for k, w in enumerate(("query", "key", "value"))]
      out.append(Entry(ours + ("attn", "out", p), f"{base}.attn.c_proj.{hf_p}", n_in=2))
      out.append(Entry(ours + ("mlp", "wi", p), f"{base}.mlp.c_fc.{hf_p}"))
      out.append(Entry(ours + ("mlp", "wo", p), f"{base}.mlp.c_proj.{hf_p}"))
  out += [Entry(("final_norm", "scale"), "transformer.ln_f.weight"),
          Entry(("final_norm", "bias"), "transformer.ln_f.bias")]
  return out


def _llama_entries(cfg: ModelConfig) -> list[Entry]:
  """Llama, Mistral, Qwen 2/3 and Gemma 1/2/3: one name scheme, switches add entries."""
  out = [Entry(("embed", "embedding"), "model.embed_tokens.weight")]
  norms = [("attn_norm", "input_layernorm"), ("mlp_norm", "post_attention_layernorm")]
  if cfg.sandwich_norms:  # Gemma 2/3: post_attention_layernorm is the attention's post-norm
    norms = [("attn_norm", "input_layernorm"), ("post_attn_norm", "post_attention_layernorm"),
             ("mlp_norm", "pre_feedforward_layernorm"),
             ("post_mlp_norm", "post_feedforward_layernorm")]
  for i in range(cfg.num_layers):
    ours, base = ("decoder", f"layers_{i}"), f"model.layers.{i}"
    out += [Entry(ours + (n, "scale"), f"{base}.{hf}.weight") for n, hf in norms]
    for w, h in zip(("query", "key", "value", "out"), "qkvo"):
      out.append(Entry(ours + ("attn", w, "kernel"), f"{base}.self_attn.{h}_proj.weight", True,
                       n_in=2 if w == "out" else 1))
      if cfg.out_bias if w == "out" else cfg.qkv_bias:
        out.append(Entry(ours + ("attn", w, "bias"), f"{base}.self_attn.{h}_proj.bias"))
    if cfg.qk_norm:
      out += [Entry(ours + ("attn", f"{w}_norm", "scale"), f"{base}.self_attn.{h}_norm.weight")
              for w, h in (("query", "q"), ("key", "k"))]
    for w, h in (("wi_0", "gate"), ("wi_1", "up"), ("wo", "down")):
      out.append(Entry(ours + ("mlp", w, "kernel"), f"{base}.mlp.{h}_proj.weight", True))
      if cfg.mlp_bias:
        out.append(Entry(ours + ("mlp", w, "bias"), f"{base}.mlp.{h}_proj.bias"))
  out.append(Entry(("final_norm", "scale"), "model.norm.weight"))
  if not cfg.tie_word_embeddings:
    out.append(Entry(("lm_head", "kernel"), "lm_head.weight", True))
  return out


def weight_entries(cfg: ModelConfig) -> list[Entry]:
  """Every trunk parameter of ``cfg`` (unrolled layer names) with its HF key."""
  if cfg.kind == "encdec":
    return _t5_entries(cfg)
  return _gpt2_entries(cfg) if cfg.layout == "gpt2" else _llama_entries(cfg)


def key_aliases(cfg: ModelConfig, key: str) -> list[str]:
  """Other names the same HF tensor goes by in some checkpoints."""
  if cfg.kind == "encdec" and key == "shared.weight":
    return ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
  if cfg.kind == "encdec" and key == "lm_head.weight":
    return ["shared.weight"]  # transformers>=5 drops an lm_head equal to the embedding
  for prefix in ("transformer.", "model."):
    if key.startswith(prefix):
      return [key[len(prefix):]]
  return []


def ignorable(cfg: ModelConfig, key: str) -> bool:
  """HF tensors that carry no parameter of ours (buffers, tied copies)."""
  if key.endswith((".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")):
    return True
  if cfg.kind == "encdec" and key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
    return True
  return cfg.tie_word_embeddings and key == "lm_head.weight"
