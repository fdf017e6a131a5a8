"""``model.fused_projections``: the separate q/k/v and gate/up kernels joined, and split back.

A fused self-attention keeps one ``qkv`` kernel ``[d, g, h/g + 2, head_dim]``: for each of the
``g`` kv heads, its ``h/g`` query heads (in Hugging Face's order), then its key, then its
value; a gated MLP keeps one ``wi_gate_up`` kernel ``[d, 2, d_ff]`` (gate, then up). Biases
follow their kernels' output axes. Both work on flat parameter dicts of unrolled layers
(``{path tuple: array}``, as the Hugging Face weight maps read and write them), so loading
joins after the maps and exporting splits before them: the round trip is exact.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from irl_lm.models.config import ModelConfig
from irl_lm.models.layers import FUSED_MLP, FUSED_QKV

Flat = dict[tuple[str, ...], Any]
SELF_ATTENTION = "attn"  # cross-attention ("cross") reads two inputs and stays separate
QKV, GATE_UP = ("query", "key", "value"), ("wi_0", "wi_1")


def _modules(flat: Flat, owner: str, child: str) -> list[tuple[str, ...]]:
  """Paths of the ``owner`` modules whose ``child`` has a kernel."""
  return sorted({k[:-2] for k in flat if k[-2:] == (child, "kernel") and k[-3] == owner})


def join(flat: Flat, cfg: ModelConfig) -> Flat:
  """Separate projections -> fused kernels (identity unless ``cfg.fused_projections``)."""
  if not cfg.fused_projections:
    return flat
  out = dict(flat)
  g, r = cfg.kv_heads, cfg.num_heads // cfg.kv_heads
  for m in _modules(flat, SELF_ATTENTION, "query"):
    for leaf in ("kernel", "bias"):
      if m + ("query", leaf) not in flat:
        continue
      q, k, v = (out.pop(m + (name, leaf)) for name in QKV)
      lead = q.shape[:-2]  # the input axis of a kernel, nothing for a bias
      out[m + (FUSED_QKV, leaf)] = np.concatenate(
          [np.reshape(q, lead + (g, r, cfg.head_dim)), np.expand_dims(k, -2),
           np.expand_dims(v, -2)], axis=-2)
  if cfg.gated_mlp:
    for m in _modules(flat, "mlp", "wi_0"):
      for leaf in ("kernel", "bias"):
        if m + ("wi_0", leaf) in flat:
          out[m + (FUSED_MLP, leaf)] = np.stack(
              [out.pop(m + (name, leaf)) for name in GATE_UP], axis=-2)
  return out


def split(flat: Flat, cfg: ModelConfig) -> Flat:
  """Fused kernels -> the separate projections ``join`` took them from."""
  if not cfg.fused_projections:
    return flat
  out = dict(flat)
  r = cfg.num_heads // cfg.kv_heads
  for m in _modules(flat, SELF_ATTENTION, FUSED_QKV):
    for leaf in ("kernel", "bias"):
      if m + (FUSED_QKV, leaf) not in flat:
        continue
      w = np.asarray(out.pop(m + (FUSED_QKV, leaf)))
      q = w[..., :r, :]
      out[m + ("query", leaf)] = q.reshape(q.shape[:-3] + (cfg.num_heads, cfg.head_dim))
      out[m + ("key", leaf)], out[m + ("value", leaf)] = w[..., r, :], w[..., r + 1, :]
  for m in _modules(flat, "mlp", FUSED_MLP):
    for leaf in ("kernel", "bias"):
      if m + (FUSED_MLP, leaf) in flat:
        w = np.asarray(out.pop(m + (FUSED_MLP, leaf)))
        out[m + ("wi_0", leaf)], out[m + ("wi_1", leaf)] = w[..., 0, :], w[..., 1, :]
  return out
