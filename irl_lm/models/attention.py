"""Dot-product attention, materialised (``xla``) or blockwise with an online softmax
(``chunked``), over masks and biases that can be built whole or one block at a time.

A mask or bias is an object with ``full()`` (the whole ``[b, 1 | h, tq, tk]`` array) and
``block(q0, k0, bq, bk)`` (the block of queries ``q0:q0+bq`` and keys ``k0:k0+bk``).
The causal, padding and T5 relative-position forms build a block from per-position
vectors, so ``chunked`` never holds a ``[tq, tk]`` array: scores, probabilities, mask and
bias exist one block at a time, and the backward pass recomputes each block (the scan
bodies are rematerialised) instead of storing it.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Array = jax.Array
NEG_INF = -1e30
AUTO_CHUNKED_LENGTH = 2048  # "auto" attends blockwise from this many keys


def _window(q: Array, k: Array, window: Array) -> Array:
  """``q - window < k`` (a sliding window; ``window <= 0`` keeps every key)."""
  return (window <= 0) | ((q - k) < window)


@struct.dataclass
class CausalMask:
  """Same segment, key slot not after the query slot, and (``window > 0``) within the
  ``window`` latest slots. ``*_seg`` [b, t]; ``*_slot`` [b, t] or [t]; ``window`` an
  int32 scalar (an array, so a scanned layer stack can pick it per layer)."""

  q_seg: Array
  k_seg: Array
  q_slot: Array
  k_slot: Array
  window: Array

  def _mask(self, qs: Array, ks: Array, qp: Array, kp: Array) -> Array:
    same = qs[:, :, None] == ks[:, None, :]
    qp, kp = qp[..., :, None], kp[..., None, :]
    ok = (kp <= qp) & _window(qp, kp, self.window)
    return (same & (ok if ok.ndim == 3 else ok[None]))[:, None]

  def full(self) -> Array:
    return self._mask(self.q_seg, self.k_seg, self.q_slot, self.k_slot)

  def block(self, q0: Array, k0: Array, bq: int, bk: int) -> Array:
    return self._mask(_cut(self.q_seg, q0, bq), _cut(self.k_seg, k0, bk),
                      _cut(self.q_slot, q0, bq), _cut(self.k_slot, k0, bk))


@struct.dataclass
class PaddingMask:
  """Same segment and key not padding (segment 0): bidirectional and cross attention."""

  q_seg: Array
  k_seg: Array

  @staticmethod
  def _mask(qs: Array, ks: Array) -> Array:
    return ((qs[:, :, None] == ks[:, None, :]) & (ks[:, None, :] != 0))[:, None]

  def full(self) -> Array:
    return self._mask(self.q_seg, self.k_seg)

  def block(self, q0: Array, k0: Array, bq: int, bk: int) -> Array:
    return self._mask(_cut(self.q_seg, q0, bq), _cut(self.k_seg, k0, bk))


@struct.dataclass
class DenseMask:
  """A mask given whole (the decode cache's), ``[b, 1, tq, tk]`` or broadcastable."""

  mask: Array

  def full(self) -> Array:
    return self.mask

  def block(self, q0: Array, k0: Array, bq: int, bk: int) -> Array:
    return _cut(_cut(self.mask, q0, bq, axis=-2), k0, bk, axis=-1)


def relative_position_bucket(rel: Array, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> Array:
  """T5's bucketing of (key position - query position) into ``num_buckets`` ids."""
  ret = jnp.zeros_like(rel)
  if bidirectional:
    num_buckets //= 2
    ret += (rel > 0).astype(rel.dtype) * num_buckets
    n = jnp.abs(rel)
  else:
    n = jnp.maximum(-rel, 0)
  max_exact = num_buckets // 2
  safe = jnp.maximum(n, max_exact).astype(jnp.float32)
  large = max_exact + (jnp.log(safe / max_exact) / np.log(max_distance / max_exact)
                       * (num_buckets - max_exact)).astype(rel.dtype)
  large = jnp.minimum(large, num_buckets - 1)
  return ret + jnp.where(n < max_exact, n, large)


@struct.dataclass
class RelativeBias:
  """T5's per-head bias ``table[bucket(k_pos - q_pos)]`` as ``[b, h, tq, tk]``."""

  table: Array  # [buckets, heads]
  q_pos: Array
  k_pos: Array
  bidirectional: bool = struct.field(pytree_node=False)
  num_buckets: int = struct.field(pytree_node=False)
  max_distance: int = struct.field(pytree_node=False)

  def _bias(self, qp: Array, kp: Array) -> Array:
    b = relative_position_bucket(kp[..., None, :] - qp[..., :, None], self.bidirectional,
                                 self.num_buckets, self.max_distance)
    return jnp.moveaxis(self.table[b], -1, -3)

  def full(self) -> Array:
    return self._bias(self.q_pos, self.k_pos)

  def block(self, q0: Array, k0: Array, bq: int, bk: int) -> Array:
    return self._bias(_cut(self.q_pos, q0, bq), _cut(self.k_pos, k0, bk))


def _cut(x: Array, start: Array, size: int, axis: int = -1) -> Array:
  """``size`` entries of ``x`` from ``start`` along ``axis`` (a broadcast axis of 1 stays)."""
  if x.shape[axis] == 1:
    return x
  return jax.lax.dynamic_slice_in_dim(x, start, size, axis=axis % x.ndim)


def _scores(qg: Array, k: Array, scale: Any, softcap: float) -> Array:
  """[b, g, r, tq, tk] float32 scores of grouped queries [b, tq, g, r, d] and keys [b, g, tk, d]."""
  s = jnp.einsum("bqgrd,bgkd->bgrqk", qg, k, preferred_element_type=jnp.float32) * scale
  return softcap * jnp.tanh(s / softcap) if softcap else s


def _grouped(x: Array | None, g: int) -> Array | None:
  """[b|1, h, q, k] -> [b|1, g, h/g, q, k] (a mask's head axis of 1 stays 1)."""
  if x is None:
    return None
  if x.shape[1] == 1:
    return x[:, :, None]
  return x.reshape(x.shape[0], g, x.shape[1] // g, *x.shape[2:])


def dense_attention(q: Array, k: Array, v: Array, mask: Any, bias: Any, scale: Any,
                    softcap: float = 0.0) -> Array:
  """Grouped-query attention over the whole score matrix (``mask``/``bias``: objects or None).

  q [b, tq, h, d]; k, v [b, g, tk, d] (heads before length, the cache's layout); softcap
  ``> 0`` caps the scores to ``softcap * tanh(s / softcap)`` before bias and mask (Gemma 2).
  """
  b, tq, h, d = q.shape
  g = k.shape[1]
  s = _scores(q.reshape(b, tq, g, h // g, d), k, scale, softcap)
  if bias is not None:
    s = s + _grouped(bias.full(), g).astype(jnp.float32)
  if mask is not None:
    s = jnp.where(_grouped(mask.full(), g), s, NEG_INF)
  p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
  return jnp.einsum("bgrqk,bgkd->bqgrd", p, v).reshape(b, tq, h, d)


def _block_size(n: int, want: int) -> int:
  """The largest divisor of ``n`` that is at most ``want``."""
  for size in range(min(n, want), 0, -1):
    if n % size == 0:
      return size
  return 1


def chunked_attention(q: Array, k: Array, v: Array, mask: Any, bias: Any, scale: Any,
                      softcap: float = 0.0, block: int = 512) -> Array:
  """``dense_attention`` one ``[block, block]`` tile of scores at a time (online softmax).

  Query blocks run one after another, key blocks are folded into a running maximum, sum
  and weighted value sum; both loops' bodies are rematerialised in the backward pass.
  Blocks are the largest divisors of the lengths up to ``block``. A query whose keys are
  all masked averages every value uniformly, as the dense softmax does.
  """
  b, tq, h, d = q.shape
  g, tk = k.shape[1], k.shape[2]
  r = h // g
  bq, bk = _block_size(tq, block), _block_size(tk, block)
  qb = q.reshape(b, tq // bq, bq, g, r, d).swapaxes(0, 1)  # [nq, b, bq, g, r, d]

  def one_query_block(args: tuple[Array, Array]) -> Array:
    q0, qi = args

    @jax.checkpoint
    def step(carry, k0):
      m, l, acc = carry
      kj = jax.lax.dynamic_slice_in_dim(k, k0, bk, axis=2)
      vj = jax.lax.dynamic_slice_in_dim(v, k0, bk, axis=2)
      s = _scores(qi, kj, scale, softcap)  # [b, g, r, bq, bk]
      if bias is not None:
        s = s + _grouped(bias.block(q0, k0, bq, bk), g).astype(jnp.float32)
      if mask is not None:
        s = jnp.where(_grouped(mask.block(q0, k0, bq, bk), g), s, NEG_INF)
      m_new = jnp.maximum(m, jnp.max(s, axis=-1))
      p = jnp.exp(s - m_new[..., None])
      alpha = jnp.exp(m - m_new)
      pv = jnp.einsum("bgrqk,bgkd->bgrqd", p.astype(v.dtype), vj,
                      preferred_element_type=jnp.float32)
      return (m_new, alpha * l + jnp.sum(p, axis=-1), alpha[..., None] * acc + pv), None

    init = (jnp.full((b, g, r, bq), NEG_INF, jnp.float32), jnp.zeros((b, g, r, bq), jnp.float32),
            jnp.zeros((b, g, r, bq, d), jnp.float32))
    (_, l, acc), _ = jax.lax.scan(step, init, jnp.arange(0, tk, bk))
    out = (acc / l[..., None]).astype(v.dtype)  # [b, g, r, bq, d]
    return jnp.einsum("bgrqd->bqgrd", out)

  starts = jnp.arange(0, tq, bq)
  out = jax.lax.map(jax.checkpoint(one_query_block), (starts, qb))  # [nq, b, bq, g, r, d]
  return out.swapaxes(0, 1).reshape(b, tq, h, d)


def resolve(implementation: str, length: int) -> str:
  """The implementation ``auto`` means for ``length`` keys (``xla`` or ``chunked``)."""
  if implementation != "auto":
    return implementation
  return "chunked" if length >= AUTO_CHUNKED_LENGTH else "xla"


def attend(q: Array, k: Array, v: Array, mask: Any, bias: Any, scale: Any,
           softcap: float = 0.0, implementation: str = "xla", block: int = 512) -> Array:
  """Attention by ``implementation`` (``xla`` | ``chunked`` | ``auto``; see ``resolve``)."""
  if resolve(implementation, k.shape[2]) == "chunked":
    return chunked_attention(q, k, v, mask, bias, scale, softcap, block)
  return dense_attention(q, k, v, mask, bias, scale, softcap)
