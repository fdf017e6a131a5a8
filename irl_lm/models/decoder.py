"""Decoder-only transformer: the GPT-2, Llama, Mistral, Qwen 2/3 and Gemma 1/2/3 layouts."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import numpy as np

from irl_lm.models.attention import CausalMask
from irl_lm.models.config import ModelConfig
from irl_lm.models.heads import ModelOutput
from irl_lm.models.layers import (MLP, NO_WINDOW, Attention, DecodeState, LayerStack, constrain,
                                  dense, embed_logits, embedding, norm, per_layer, pick,
                                  positions, segment_ids)
from irl_lm.models.rope import rope_table

Array = jax.Array


class Block(nn.Module):
  """Pre-norm residual block: attention then MLP (with Gemma 2/3's sandwich norms,
  each branch is also normalised before the residual add)."""

  cfg: ModelConfig
  decode: bool = False
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array, layer: int | Array, ctx: Mapping[str, Any],
               cache_index: Array | None) -> tuple[Array, None]:
    cfg, det = self.cfg, self.deterministic
    sliding = per_layer(cfg.sliding_layers, layer)
    mask = pick(sliding, ctx["window_mask"], ctx["mask"]) if "window_mask" in ctx else ctx["mask"]
    rope = pick(sliding, ctx["rope_local"], ctx["rope"]) if "rope_local" in ctx else ctx.get("rope")
    scale = cfg.attention_scale
    if cfg.scale_by_layer:
      scale = scale / per_layer(tuple(range(1, cfg.num_layers + 1)), layer)
    h = Attention(cfg, decode=self.decode, deterministic=det, name="attn")(
        norm(cfg, "attn_norm")(x), None, mask, rope=rope, cache_index=cache_index, scale=scale)
    if cfg.sandwich_norms:
      h = norm(cfg, "post_attn_norm")(h)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = MLP(cfg, deterministic=det, name="mlp")(norm(cfg, "mlp_norm")(x))
    if cfg.sandwich_norms:
      h = norm(cfg, "post_mlp_norm")(h)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    return constrain(x, ("batch", "length", "embed")), None


class Decoder(nn.Module):
  """Decoder-only transformer (every decoder layout).

  ``__call__(batch)`` takes ``decoder_input_tokens`` and optionally
  ``decoder_segment_ids`` (0 = padding) and ``decoder_positions`` (packed or
  left-padded rows). With ``decode=True`` and a mutable ``cache`` it appends
  the given tokens to the key/value cache (prefill, then one token per call);
  ``decoder_positions`` is then required. The cache keeps every position, so
  sliding-window layers stay exact past the window.
  """

  cfg: ModelConfig

  def setup(self):
    cfg = self.cfg
    self.embed = embedding(cfg, cfg.vocab_size, stddev=0.02)
    if cfg.position == "learned":
      self.wpe = embedding(cfg, cfg.max_position_embeddings, names=(None, "embed"), stddev=0.01)
    self.decoder = LayerStack(cfg, Block, cfg.num_layers)
    self.final_norm = norm(cfg)
    self.dropout = nn.Dropout(cfg.dropout_rate)
    self.decode_state = DecodeState()
    if not cfg.tie_word_embeddings:
      self.lm_head = dense(cfg.vocab_size, ("embed", "vocab"), cfg)

  def __call__(self, batch: Mapping[str, Array], *, deterministic: bool = True,
               decode: bool = False) -> ModelOutput:
    cfg = self.cfg
    tokens = batch["decoder_input_tokens"]
    if decode and "decoder_positions" not in batch:
      raise ValueError("decode=True needs batch['decoder_positions']")
    seg = segment_ids(batch, "decoder", tokens)
    pos = positions(batch, "decoder", tokens)
    x = self.embed(tokens)
    if cfg.embed_scale:
      x = x * jnp.asarray(cfg.d_model ** 0.5, x.dtype)
    if cfg.position == "learned":
      x = x + self.wpe(pos)
    x = constrain(self.dropout(x, deterministic=deterministic), ("batch", "length", "embed"))
    cache_index = None
    if decode:
      cache_index, mask, _, _ = self.decode_state(seg)
    else:
      mask = CausalMask(seg, seg, pos, pos, NO_WINDOW)
    ctx: dict[str, Any] = {"mask": mask}
    if any(cfg.sliding_layers):
      ctx["window_mask"] = mask.replace(window=np.int32(cfg.sliding_window))
    if cfg.position == "rope":
      ctx["rope"] = rope_table(cfg, pos)
      if cfg.rope_local_theta and any(cfg.sliding_layers):
        ctx["rope_local"] = rope_table(cfg, pos, local=True)
    x = self.decoder(x, ctx, cache_index, decode=decode, deterministic=deterministic)
    h = self.dropout(self.final_norm(x), deterministic=deterministic)
    logits = embed_logits(self.embed, h) if cfg.tie_word_embeddings else self.lm_head(h)
    logits = logits.astype(jnp.float32)
    if cfg.final_softcap:
      logits = cfg.final_softcap * jnp.tanh(logits / cfg.final_softcap)
    logits = constrain(logits, ("batch", "length", "vocab"))
    return ModelOutput(logits=logits, hidden=h)
