"""Rotary position embeddings: the frequencies of each RoPE scaling, and their application.

The tables follow Hugging Face's ``rope_type`` definitions (``default``,
``linear``, ``dynamic`` NTK, ``yarn``, ``llama3``); Gemma 3's sliding layers
use their own unscaled theta (``rope_local_theta``).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.models.config import ModelConfig

Array = jax.Array


def _base_inv_freq(theta: float, d: int) -> np.ndarray:
  return 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))


def _llama3(cfg: ModelConfig, inv: np.ndarray) -> np.ndarray:
  orig = cfg.rope_original_max or cfg.max_position_embeddings
  low_wl = orig / cfg.rope_low_freq_factor
  high_wl = orig / cfg.rope_high_freq_factor
  wavelen = 2 * math.pi / inv
  smooth = (orig / wavelen - cfg.rope_low_freq_factor) / (
      cfg.rope_high_freq_factor - cfg.rope_low_freq_factor)
  mid = (1 - smooth) * inv / cfg.rope_factor + smooth * inv
  out = np.where(wavelen > low_wl, inv / cfg.rope_factor, inv)
  return np.where((wavelen >= high_wl) & (wavelen <= low_wl), mid, out).astype(np.float32)


def _yarn(cfg: ModelConfig, inv: np.ndarray, d: int) -> np.ndarray:
  orig = cfg.rope_original_max or cfg.max_position_embeddings

  def corr(rotations: float) -> float:
    return d * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(cfg.rope_theta))
  low, high = corr(cfg.rope_beta_fast), corr(cfg.rope_beta_slow)
  if cfg.rope_truncate:
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, d - 1)
  if low == high:
    high += 0.001
  ramp = np.clip((np.arange(d // 2, dtype=np.float32) - low) / (high - low), 0, 1)
  return (inv / cfg.rope_factor * ramp + inv * (1 - ramp)).astype(np.float32)


def inv_freq(cfg: ModelConfig, local: bool = False) -> np.ndarray:
  """Static inverse frequencies [head_dim / 2] (``dynamic`` is scaled per call instead)."""
  d = cfg.head_dim
  if local and cfg.rope_local_theta:
    return _base_inv_freq(cfg.rope_local_theta, d)
  inv = _base_inv_freq(cfg.rope_theta, d)
  if cfg.rope_type == "linear":
    return inv / np.float32(cfg.rope_factor)
  if cfg.rope_type == "llama3":
    return _llama3(cfg, inv)
  if cfg.rope_type == "yarn":
    return _yarn(cfg, inv, d)
  return inv


def rope_table(cfg: ModelConfig, positions: Array, local: bool = False) -> tuple[Array, Array]:
  """(cos, sin) [b, t, 1, head_dim] float32 for ``positions`` [b, t]."""
  d = cfg.head_dim
  inv = jnp.asarray(inv_freq(cfg, local))
  if cfg.rope_type == "dynamic" and not (local and cfg.rope_local_theta):
    # NTK: theta grows with the longest position of the call past max_position_embeddings.
    seq = jnp.max(positions).astype(jnp.float32) + 1
    grow = (cfg.rope_factor * seq / cfg.max_position_embeddings) - (cfg.rope_factor - 1)
    theta = cfg.rope_theta * grow ** (d / (d - 2))
    scaled = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    inv = jnp.where(seq > cfg.max_position_embeddings, scaled, inv)
  ang = positions.astype(jnp.float32)[..., None] * inv
  emb = jnp.concatenate([ang, ang], -1)[:, :, None, :]
  factor = 1.0 if local and cfg.rope_local_theta else cfg.rope_attention_factor
  return jnp.cos(emb) * factor, jnp.sin(emb) * factor


def apply_rope(x: Array, table: tuple[Array, Array]) -> Array:
  """Rotary embedding (half-split layout, as in Llama) of ``x`` [b, t, h, d]."""
  cos, sin = table
  d = x.shape[-1]
  x32 = x.astype(jnp.float32)
  rotated = jnp.concatenate([-x32[..., d // 2:], x32[..., : d // 2]], -1)
  return (x32 * cos + rotated * sin).astype(x.dtype)
