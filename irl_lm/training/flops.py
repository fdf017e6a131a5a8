"""Model FLOPs per step (MaxText-style count extended to encoder-decoder) and MFU."""
from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

from irl_lm.models import ModelConfig


def _attn_proj(cfg: ModelConfig) -> int:
  """Multiply-adds per token of the q, k, v and output projections."""
  return cfg.d_model * cfg.head_dim * (2 * cfg.num_heads + 2 * cfg.kv_heads)


def _mlp(cfg: ModelConfig) -> int:
  return cfg.d_model * cfg.d_ff * (3 if cfg.gated_mlp else 2)


def _scores(cfg: ModelConfig, keys: float) -> float:
  """Multiply-adds per query token of QK^T and AV over ``keys`` keys."""
  return 2 * cfg.num_heads * cfg.head_dim * keys


def forward_flops_per_example(cfg: ModelConfig, inputs_length: int, targets_length: int,
                              value_heads: bool = False, target_heads: bool = False,
                              value_trunk: bool = False) -> float:
  """Forward FLOPs (2 x multiply-adds) for one example.

  Decoder-only rows are ``inputs_length + targets_length`` long; causal
  attention counts half the keys. T5 adds the encoder over the inputs and
  cross-attention (k/v over encoder tokens, scores over all of them).
  ``value_heads`` adds ILQL's Q1, Q2 and V heads, ``target_heads`` its two
  target Q heads, ``value_trunk`` its separate value trunk (without an LM head).
  """
  if cfg.kind == "encdec":
    te, td = inputs_length, targets_length
    enc = cfg.num_encoder_layers * te * (_attn_proj(cfg) + _mlp(cfg) + _scores(cfg, te))
    half = cfg.num_heads * cfg.head_dim * cfg.d_model  # q or o projection
    kv = _attn_proj(cfg) - 2 * half
    cross = td * (2 * half + _scores(cfg, te)) + te * kv
    dec = cfg.num_layers * (td * (_attn_proj(cfg) + _mlp(cfg) + _scores(cfg, td / 2)) + cross)
  else:
    td = inputs_length + targets_length
    enc = 0
    dec = cfg.num_layers * td * (_attn_proj(cfg) + _mlp(cfg) + _scores(cfg, td / 2))
  head = td * cfg.d_model * cfg.vocab_size
  total = enc + dec + head
  if value_trunk:  # a second trunk; its LM head's logits are not computed
    total += enc + dec
  if value_heads:
    q_head = 2 * cfg.d_model * cfg.d_model + 2 * cfg.d_model * cfg.vocab_size
    total += td * (2 * q_head + 2 * cfg.d_model * cfg.d_model)
  fwd = 2.0 * total
  if value_heads and target_heads:
    return fwd + 2.0 * td * 2 * (2 * cfg.d_model * cfg.d_model + 2 * cfg.d_model * cfg.vocab_size)
  return fwd


def train_flops_per_step(cfg: ModelConfig, batch_size: int, inputs_length: int,
                         targets_length: int, value_heads: bool = False,
                         value_trunk: bool = False) -> float:
  """Training FLOPs per step: 3x forward (backward = 2x); with ``value_heads``
  (ILQL) the heads (and a separate ``value_trunk``) train too and the target
  heads run forward only."""
  fwd = forward_flops_per_example(cfg, inputs_length, targets_length, value_heads,
                                  value_trunk=value_trunk)
  extra = forward_flops_per_example(cfg, inputs_length, targets_length, True, True,
                                    value_trunk) - fwd if value_heads else 0.0
  return batch_size * (3.0 * fwd + extra)


def matmul_call(n: int = 2048) -> tuple[Callable[[], None], float]:
  """A blocking call of a float32 ``n x n`` matmul on the first device, and its FLOPs."""
  a = jnp.ones((n, n), jnp.float32)
  mm = jax.jit(lambda x: x @ x)
  return (lambda: mm(a).block_until_ready()), 2.0 * n ** 3


def measure_peak_flops(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a large float32 matmul on the first device (a stand-in for peak)."""
  call, work = matmul_call(n)
  call()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    call()
    best = min(best, time.perf_counter() - t)
  return work / best
