"""Decoder-only transformer in the GPT-2 and Llama layouts."""
from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from irl_lm.models.config import ModelConfig
from irl_lm.models.heads import ModelOutput
from irl_lm.models.layers import (MLP, Attention, DecodeState, LayerStack, causal_mask, constrain,
                                  dense, embedding, norm, positions, segment_ids)

Array = jax.Array


class Block(nn.Module):
  """Pre-norm residual block: attention then MLP."""

  cfg: ModelConfig
  decode: bool = False
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array, mask: Array, positions: Array,
               cache_index: Array | None) -> tuple[Array, None]:
    cfg, det = self.cfg, self.deterministic
    h = Attention(cfg, decode=self.decode, deterministic=det, name="attn")(
        norm(cfg, "attn_norm")(x), None, mask, positions=positions, cache_index=cache_index)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = MLP(cfg, deterministic=det, name="mlp")(norm(cfg, "mlp_norm")(x))
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    return constrain(x, ("batch", "length", "embed")), None


class Decoder(nn.Module):
  """GPT-2 / Llama decoder.

  ``__call__(batch)`` takes ``decoder_input_tokens`` and optionally
  ``decoder_segment_ids`` (0 = padding) and ``decoder_positions`` (packed or
  left-padded rows). With ``decode=True`` and a mutable ``cache`` it appends
  the given tokens to the key/value cache (prefill, then one token per call);
  ``decoder_positions`` is then required.
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
    if cfg.position == "learned":
      x = x + self.wpe(pos)
    x = constrain(self.dropout(x, deterministic=deterministic), ("batch", "length", "embed"))
    cache_index = None
    if decode:
      cache_index, mask, _, _ = self.decode_state(seg)
    else:
      mask = causal_mask(seg, seg, pos, pos)
    x = self.decoder(x, mask, pos, cache_index, decode=decode, deterministic=deterministic)
    h = self.dropout(self.final_norm(x), deterministic=deterministic)
    logits = self.embed.attend(h) if cfg.tie_word_embeddings else self.lm_head(h)
    logits = constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))
    return ModelOutput(logits=logits, hidden=h)
