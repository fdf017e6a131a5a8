"""Dot-product attention, materialised (``xla``), blockwise with an online softmax
(``chunked``), or by the fused kernels (``cudnn`` on GPUs, Pallas ``splash`` on TPUs), over
masks and biases that can be built whole or one block at a time.

A mask or bias is an object with ``full()`` (the whole ``[b, 1 | h, tq, tk]`` array) and
``block(q0, k0, bq, bk)`` (the block of queries ``q0:q0+bq`` and keys ``k0:k0+bk``).
The causal, padding and T5 relative-position forms build a block from per-position
vectors, so ``chunked`` never holds a ``[tq, tk]`` array: scores, probabilities, mask and
bias exist one block at a time, and the backward pass recomputes each block (the scan
bodies are rematerialised) instead of storing it. ``unsupported`` says which model feature
or backend rules a fused kernel out; ``resolve`` picks one for ``auto``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.linen import partitioning as nn_partitioning
from jax.sharding import PartitionSpec as P

from irl_lm import sharding as shd

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
  The queries of one kv head are stacked as ``[b, g, r * tq, d]``, so both products are
  batched GEMMs over (b, g) that read q, k, v, the scores and their gradients in place;
  only the queries and the output change layout (once each way).
  """
  b, tq, h, d = q.shape
  g = k.shape[1]
  r = h // g
  qh = q.reshape(b, tq, g, r, d).transpose(0, 2, 3, 1, 4).reshape(b, g, r * tq, d)
  s = jax.lax.dot_general(qh, k, (((3,), (3,)), ((0, 1), (0, 1))),
                          preferred_element_type=jnp.float32) * scale
  if softcap:
    s = softcap * jnp.tanh(s / softcap)
  s = s.reshape(b, g, r, tq, -1)
  if bias is not None:
    s = s + _grouped(bias.full(), g).astype(jnp.float32)
  if mask is not None:
    s = jnp.where(_grouped(mask.full(), g), s, NEG_INF)
  p = jax.nn.softmax(s, axis=-1).astype(v.dtype).reshape(b, g, r * tq, -1)
  out = jax.lax.dot_general(p, v, (((3,), (2,)), ((0, 1), (0, 1))))  # [b, g, r * tq, d]
  return out.reshape(b, g, r, tq, d).transpose(0, 3, 1, 2, 4).reshape(b, tq, h, d)


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


def cudnn_attention(q: Array, k: Array, v: Array, mask: Any, scale: Any) -> Array:
  """``dense_attention`` by cuDNN's fused kernel (``jax.nn.dot_product_attention``, GPU only).

  The mask is handed over whole (cuDNN folds it into its kernel as a bias); a causal mask
  over equal lengths also tells cuDNN to skip the upper triangle. No bias, no soft-cap,
  half-precision inputs: ``unsupported`` says so before anything compiles.
  """
  m = None if mask is None else mask.full()
  causal = isinstance(mask, CausalMask) and q.shape[1] == k.shape[2]
  return jax.nn.dot_product_attention(q, k.swapaxes(1, 2), v.swapaxes(1, 2), mask=m,
                                      scale=scale, is_causal=causal, implementation="cudnn")


def _splash_blocks(tq: int, tk: int, block: int) -> Any:
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # TPU kernels: on use
  bq, bk = _block_size(tq, max(block, 128)), _block_size(tk, max(block, 128))
  return sa.BlockSizes(block_q=bq, block_kv=bk, block_kv_compute=bk, block_q_dkv=bq,
                       block_kv_dkv=bk, block_kv_dkv_compute=bk, block_q_dq=bq, block_kv_dq=bk)


def _splash_local(q: Array, k: Array, v: Array, q_seg: Array, k_seg: Array, window: Array,
                  scale: Any, softcap: float, sliding_window: int, block: int,
                  interpret: bool) -> Array:
  """Splash attention of one device's rows and heads (q [b, tq, h, d], k/v [b, g, tk, d])."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # TPU kernels: on use
  b, tq, h, _ = q.shape
  tk = k.shape[2]
  qh = (q * jnp.asarray(scale, q.dtype)).transpose(0, 2, 1, 3)  # [b, h, tq, d]

  def run(one_mask: Any) -> Array:
    kernel = sa.make_splash_mha(sa.MultiHeadMask([one_mask] * h),
                                block_sizes=_splash_blocks(tq, tk, block), head_shards=1,
                                q_seq_shards=1, attn_logits_soft_cap=softcap or None,
                                interpret=interpret)
    return jax.vmap(lambda qb, kb, vb, qs, ks: kernel(qb, kb, vb, sa.SegmentIds(qs, ks)))(
        qh, k, v, q_seg, k_seg)

  causal = sa.CausalMask((tq, tk))
  if sliding_window:
    local = sa.LocalMask((tq, tk), window_size=(sliding_window - 1, 0), offset=0)
    out = jax.lax.cond(window > 0, lambda: run(local), lambda: run(causal))
  else:
    out = run(causal)
  return out.transpose(0, 2, 1, 3)


def splash_attention(q: Array, k: Array, v: Array, mask: CausalMask, scale: Any,
                     softcap: float = 0.0, sliding_window: int = 0, block: int = 512,
                     interpret: bool = False) -> Array:
  """Causal (packed, windowed, soft-capped, grouped-query) attention by the Pallas TPU
  splash kernel, which skips fully masked blocks and never holds a ``[tq, tk]`` array.

  Inside a mesh it runs per device (``shard_map``): rows split as the batch is, heads as
  the tensor axis splits them (query and key heads together, else neither). Segments are
  splash's segment ids; a padding row (segment 0) attends to padding keys, as
  ``CausalMask`` does. ``interpret=True`` runs the kernel in Python (tests on CPU).
  """
  args = (q, k, v, mask.q_seg, mask.k_seg, jnp.asarray(mask.window, jnp.int32))
  local = lambda *a: _splash_local(*a, scale, softcap, sliding_window, block, interpret)
  mesh, rules = jax.sharding.get_abstract_mesh(), nn_partitioning.get_axis_rules()
  if mesh.empty or not rules:
    return local(*args)
  qs = shd.logical_to_spec(("batch", None, "heads", None), rules, mesh, q.shape)
  ks = shd.logical_to_spec(("batch", "kv_heads", None, None), rules, mesh, k.shape)
  rows, qh, kh = qs[0], qs[2], ks[1]
  if qh != kh:
    qh = kh = None
  qspec, kspec, seg = P(rows, None, qh, None), P(rows, kh, None, None), P(rows, None)
  return jax.shard_map(local, mesh=mesh, in_specs=(qspec, kspec, kspec, seg, seg, P()),
                       out_specs=qspec, check_vma=False)(*args)


def unsupported(implementation: str, *, platform: str, dtype: str, softcap: float,
                relative_bias: bool, head_dim: int, lengths: tuple[int, ...]) -> str | None:
  """Why ``implementation`` cannot run this model on ``platform`` (None: it can)."""
  if implementation == "cudnn":
    if platform != "gpu":
      return f"cuDNN's fused attention needs a GPU (this run's devices are {platform})"
    if dtype != "bfloat16":
      return f"cuDNN's fused attention has no {dtype}: set model.dtype='bfloat16'"
    if softcap:
      return f"cuDNN's fused attention has no score soft-cap (model.attn_softcap={softcap})"
    if relative_bias:
      return "cuDNN's fused attention would need T5's relative bias as a whole [T, T] array"
    if head_dim % 8 or head_dim > 256:
      return f"cuDNN's fused attention needs a head_dim that is a multiple of 8 up to 256 " \
             f"(found {head_dim})"
    if any(n % 2 for n in lengths):
      return f"cuDNN's fused attention trains on even lengths only (found {lengths})"
  if implementation == "splash":
    if platform != "tpu":
      return f"the splash kernel runs on TPUs only (this run's devices are {platform})"
    if relative_bias:
      return "the splash kernel has no additive bias, so no T5 relative-position bias"
    if any(n % 128 for n in lengths):
      return f"the splash kernel needs lengths that are multiples of 128 (found {lengths})"
  return None


def _platform(implementation: str) -> str:
  """The platform a fused kernel's shape check assumes (the start-up check saw the real one)."""
  return "gpu" if implementation == "cudnn" else "tpu"


def resolve(implementation: str, length: int, **features: Any) -> str:
  """The implementation ``auto`` means for ``length`` keys: ``splash`` on TPUs and
  ``cudnn`` on GPUs where the model's features allow (``features``: ``unsupported``'s),
  else ``chunked`` from ``AUTO_CHUNKED_LENGTH`` keys and ``xla`` below."""
  if implementation != "auto":
    return implementation
  for fused in ("splash", "cudnn"):
    if features and unsupported(fused, **features) is None:
      return fused
  return "chunked" if length >= AUTO_CHUNKED_LENGTH else "xla"


def attend(q: Array, k: Array, v: Array, mask: Any, bias: Any, scale: Any,
           softcap: float = 0.0, implementation: str = "xla", block: int = 512,
           sliding_window: int = 0) -> Array:
  """Attention by ``implementation`` (``models.config.ATTENTION``; see ``resolve``).

  The fused kernels (``cudnn``, ``splash``) run the shapes they can: the training batch,
  which ``unsupported`` has checked at start-up. Other shapes (parameter init's dummy
  rows, a prompt of odd length, a decode step's cache mask) run the ``xla`` way, which
  computes the same numbers."""
  how = resolve(implementation, k.shape[2])
  lengths = (q.shape[1], k.shape[2])
  if how in ("cudnn", "splash") and (isinstance(mask, DenseMask) or unsupported(
      how, platform=_platform(how), dtype=jnp.dtype(q.dtype).name, softcap=0.0,
      relative_bias=False, head_dim=q.shape[-1], lengths=lengths)):
    how = "xla"  # a shape the kernel cannot take: parameter init's, a prompt's, a cache's
  if how == "cudnn":
    return cudnn_attention(q, k, v, mask, scale)
  if how == "splash":
    return splash_attention(q, k, v, mask, scale, softcap, sliding_window, block)
  if how == "chunked":
    return chunked_attention(q, k, v, mask, bias, scale, softcap, block)
  return dense_attention(q, k, v, mask, bias, scale, softcap)
