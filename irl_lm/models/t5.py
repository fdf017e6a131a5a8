"""T5 encoder-decoder (T5, T5 v1.1 / Flan-T5, mT5 and UMT5 layouts)."""
from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from irl_lm.models.attention import CausalMask, PaddingMask, RelativeBias
from irl_lm.models.config import ModelConfig
from irl_lm.models.heads import ModelOutput
from irl_lm.models.layers import (MLP, NO_WINDOW, Attention, DecodeState, LayerStack, constrain,
                                  dense, embed_logits, embedding, norm, positions,
                                  segment_ids)

Array = jax.Array


class RelativePositionBias(nn.Module):
  """Per-head additive bias [b, h, tq, tk] from T5 relative position buckets (a
  ``RelativeBias``: built whole or one attention block at a time)."""

  cfg: ModelConfig
  bidirectional: bool

  @nn.compact
  def __call__(self, q_pos: Array, k_pos: Array) -> Array:
    cfg = self.cfg
    table = self.param("rel_embedding", nn.with_logical_partitioning(
        nn.initializers.normal(0.1), ("relpos_buckets", "heads")),
        (cfg.relative_attention_num_buckets, cfg.num_heads), jnp.float32)
    return RelativeBias(table, q_pos, k_pos, self.bidirectional,
                        cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance)


def _self_bias(cfg: ModelConfig, bidirectional: bool, shared: Array | None,
               q_pos: Array, k_pos: Array) -> Array:
  """The stack's shared relative bias, or (UMT5) this layer's own."""
  if not cfg.rel_bias_per_layer:
    return shared
  return RelativePositionBias(cfg, bidirectional, name="relpos")(q_pos, k_pos)


def _bias_positions(batch: Mapping[str, Array], prefix: str, tokens: Array) -> Array:
  """Positions for the relative bias: the batch's own (packed rows), else one row of
  0..t-1 that every row shares, so the bias is built once as [1, h, t, t] and broadcast
  in the scores' sum instead of gathered and laid out per row."""
  pos = positions(batch, prefix, tokens)
  return pos if f"{prefix}_positions" in batch else pos[:1]


class EncoderBlock(nn.Module):
  cfg: ModelConfig
  decode: bool = False
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array, layer: int | Array, mask: Array, bias: Array | None,
               pos: Array) -> tuple[Array, None]:
    del layer
    cfg, det = self.cfg, self.deterministic
    bias = _self_bias(cfg, True, bias, pos, pos)
    h = norm(cfg, "attn_norm")(x)
    h = Attention(cfg, deterministic=det, name="attn")(h, None, mask, bias)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = MLP(cfg, deterministic=det, name="mlp")(norm(cfg, "mlp_norm")(x))
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    return constrain(x, ("batch", "length", "embed")), None


class DecoderBlock(nn.Module):
  cfg: ModelConfig
  decode: bool = False
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array, layer: int | Array, encoded: Array | None, self_mask: Array,
               bias: Array | None, q_pos: Array, k_pos: Array, cross_mask: Array,
               cache_index: Array | None) -> tuple[Array, None]:
    del layer
    cfg, det, dec = self.cfg, self.deterministic, self.decode
    bias = _self_bias(cfg, False, bias, q_pos, k_pos)
    h = norm(cfg, "attn_norm")(x)
    h = Attention(cfg, decode=dec, deterministic=det, name="attn")(
        h, None, self_mask, bias, cache_index=cache_index)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = norm(cfg, "cross_norm")(x)
    h = Attention(cfg, cross=True, decode=dec, deterministic=det, name="cross")(
        h, encoded, cross_mask)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    h = MLP(cfg, deterministic=det, name="mlp")(norm(cfg, "mlp_norm")(x))
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    return constrain(x, ("batch", "length", "embed")), None


class T5(nn.Module):
  """T5 encoder-decoder.

  ``__call__(batch)`` takes seqio's encoder-decoder features
  (``encoder_input_tokens``, ``decoder_input_tokens``, optional
  ``*_segment_ids``/``*_positions`` for packed rows) and returns ``ModelOutput``.
  ``encode`` and ``decode`` serve incremental decoding with a cache.
  """

  cfg: ModelConfig

  def setup(self):
    cfg = self.cfg
    self.shared = embedding(cfg, cfg.vocab_size)
    if not cfg.rel_bias_per_layer:  # UMT5's layers each own theirs
      self.enc_relpos = RelativePositionBias(cfg, bidirectional=True)
      self.dec_relpos = RelativePositionBias(cfg, bidirectional=False)
    self.encoder = LayerStack(cfg, EncoderBlock, cfg.num_encoder_layers)
    self.decoder = LayerStack(cfg, DecoderBlock, cfg.num_layers)
    self.encoder_norm = norm(cfg)
    self.decoder_norm = norm(cfg)
    self.dropout = nn.Dropout(cfg.dropout_rate)
    self.decode_state = DecodeState()
    if not cfg.tie_word_embeddings:
      self.lm_head = dense(cfg.vocab_size, ("embed", "vocab"), cfg, stddev=cfg.d_model ** -0.5)

  def encode(self, batch: Mapping[str, Array], *, deterministic: bool = True) -> Array:
    """Encoder hidden states [b, t_enc, d_model]."""
    cfg = self.cfg
    tokens = batch["encoder_input_tokens"]
    seg = segment_ids(batch, "encoder", tokens, cfg.pad_id)
    pos = _bias_positions(batch, "encoder", tokens)
    x = self.dropout(self.shared(tokens), deterministic=deterministic)
    x = constrain(x, ("batch", "length", "embed"))
    bias = None if cfg.rel_bias_per_layer else self.enc_relpos(pos, pos)
    x = self.encoder(x, PaddingMask(seg, seg), bias, pos, deterministic=deterministic)
    return self.dropout(self.encoder_norm(x), deterministic=deterministic)

  def decode(self, batch: Mapping[str, Array], encoded: Array | None, *,
             deterministic: bool = True, decode: bool = False) -> ModelOutput:
    """Decoder outputs given encoder states.

    In decode mode (``decode=True``, mutable ``cache``) the call that passes
    ``encoded`` (with ``encoder_input_tokens`` or ``encoder_segment_ids`` in
    ``batch``) caches the cross-attention keys/values and the encoder mask;
    later calls pass ``encoded=None``.
    """
    cfg = self.cfg
    tokens = batch["decoder_input_tokens"]
    dseg = segment_ids(batch, "decoder", tokens)
    x = self.dropout(self.shared(tokens), deterministic=deterministic)
    x = constrain(x, ("batch", "length", "embed"))
    enc_seg = None
    if encoded is not None:
      enc_seg = segment_ids(batch, "encoder", batch["encoder_input_tokens"], cfg.pad_id)
    cache_index = None
    if decode:
      cache_index, self_mask, q_pos, enc_seg = self.decode_state(dseg, enc_seg)
      q_pos, k_pos = q_pos[None], jnp.arange(self_mask.k_seg.shape[1])[None]
    else:
      q_pos = k_pos = positions(batch, "decoder", tokens)
      self_mask = CausalMask(dseg, dseg, q_pos, q_pos, NO_WINDOW)
      q_pos = k_pos = _bias_positions(batch, "decoder", tokens)
    bias = None if cfg.rel_bias_per_layer else self.dec_relpos(q_pos, k_pos)
    x = self.decoder(x, encoded, self_mask, bias, q_pos, k_pos, PaddingMask(dseg, enc_seg),
                     cache_index, decode=decode, deterministic=deterministic)
    h = self.dropout(self.decoder_norm(x), deterministic=deterministic)
    out = h * cfg.d_model ** -0.5 if cfg.head_rescale else h
    logits = embed_logits(self.shared, out) if cfg.tie_word_embeddings else self.lm_head(out)
    logits = constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))
    return ModelOutput(logits=logits, hidden=h)

  def __call__(self, batch: Mapping[str, Array], *, deterministic: bool = True) -> ModelOutput:
    encoded = self.encode(batch, deterministic=deterministic)
    return self.decode(batch, encoded, deterministic=deterministic)
