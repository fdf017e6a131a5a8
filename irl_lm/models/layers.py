"""Building blocks shared by the T5 and decoder-only models (Flax Linen).

Parameters are float32 and carry logical axis names; computation runs in the
configured dtype, and softmax / normalisation statistics in float32.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from irl_lm import sharding as shd
from irl_lm.models.attention import CausalMask, attend
from irl_lm.models.config import REMAT_POLICIES, ModelConfig
from irl_lm.models.rope import apply_rope

Array = jax.Array
NO_WINDOW = np.int32(0)  # a CausalMask window that keeps every key
FUSED_QKV, FUSED_MLP = "qkv", "wi_gate_up"  # model.fused_projections' kernels (models.fused)

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "silu": jax.nn.silu,
}


def constrain(x: Array, names: Sequence[str | None]) -> Array:
  """Logical sharding constraint on an activation (no-op outside ``sharding.jit``).

  Resolved by the same rules and divisibility fallback as the parameters.
  """
  return shd.constrain(x, tuple(names))


def matmul(x: Array, kernel: Array, n: int) -> Array:
  """``x``'s last ``n`` axes contracted with ``kernel``'s first ``n``, as one 2-D matmul.

  Leading axes of ``x`` and the contracted axes are flattened (free reshapes of
  row-major arrays), so the forward and both backward products are plain GEMMs that
  read their operands in place: a dot_general over ``[batch, length, ...]`` makes
  XLA:CPU materialise transposes for the kernel's gradient.
  """
  lead, k_shape = x.shape[:x.ndim - n], kernel.shape[:n]
  if jax.sharding.get_abstract_mesh().size > 1:
    # Sharded, the axes stay apart: GSPMD then shards batch and features separately
    # (flattened, jax 0.10.2's partitioner miscomputed an fsdp-sharded head on CPU).
    return lax.dot_general(x, kernel, ((tuple(range(x.ndim - n, x.ndim)), tuple(range(n))),
                                       ((), ())))
  k = int(np.prod(k_shape))
  y = lax.dot_general(x.reshape(-1, k), kernel.reshape(k, -1), (((1,), (0,)), ((), ())))
  return y.reshape(lead + kernel.shape[n:])


def embed_logits(embed: nn.Embed, x: Array) -> Array:
  """Tied-embedding logits ``x @ E^T`` as one 2-D matmul (see ``matmul``)."""
  table = jnp.asarray(embed.embedding, embed.dtype)
  y = lax.dot_general(x.astype(embed.dtype).reshape(-1, x.shape[-1]), table,
                      (((1,), (1,)), ((), ())))
  return y.reshape(x.shape[:-1] + (table.shape[0],))


class DenseGeneral(nn.Module):
  """``x`` contracted over ``axis`` with a kernel of shape in_dims + features.

  ``names`` gives the kernel's logical axes (inputs then outputs); the bias,
  if any, takes the output names. With ``lora_rank > 0`` a LoRA adapter adds
  ``lora_scale * (dropout(x) A) B`` (``A``: in_dims + (rank,), ``B``: (rank,) +
  features, zero at init; ``models.lora``).
  """

  features: tuple[int, ...]
  names: tuple[str | None, ...]
  axis: tuple[int, ...] = (-1,)
  use_bias: bool = False
  dtype: Any = jnp.float32
  stddev: float = 0.02
  lora_rank: int = 0
  lora_scale: float = 0.0
  lora_dropout: float = 0.0
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    axis = tuple(a % x.ndim for a in self.axis)
    if axis != tuple(range(x.ndim - len(axis), x.ndim)):
      raise ValueError(f"DenseGeneral contracts trailing axes only, got axis={self.axis}")
    shape = tuple(x.shape[a] for a in axis) + self.features
    kernel = self.param("kernel", nn.with_logical_partitioning(
        nn.initializers.normal(self.stddev), self.names), shape, jnp.float32)
    y = matmul(x.astype(self.dtype), kernel.astype(self.dtype), len(axis))
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(
          nn.initializers.zeros, self.names[len(axis):]), self.features, jnp.float32)
      y = y + bias.astype(self.dtype)
    if self.lora_rank:
      y = y + self._adapter(x, axis, shape[:len(axis)])
    return y

  def _adapter(self, x: Array, axis: tuple[int, ...], in_shape: tuple[int, ...]) -> Array:
    n = len(axis)
    fan_in = int(np.prod(in_shape))
    a = self.param("lora_a", nn.with_logical_partitioning(
        nn.initializers.normal(fan_in ** -0.5), self.names[:n] + (None,)),
        in_shape + (self.lora_rank,), jnp.float32)
    b = self.param("lora_b", nn.with_logical_partitioning(
        nn.initializers.zeros, (None,) + self.names[n:]),
        (self.lora_rank,) + self.features, jnp.float32)
    h = nn.Dropout(self.lora_dropout)(x, deterministic=self.deterministic)
    h = matmul(matmul(h.astype(self.dtype), a.astype(self.dtype), n), b.astype(self.dtype), 1)
    return (self.lora_scale * h).astype(self.dtype)


def dense(features: int | Sequence[int], names: Sequence[str | None], cfg: ModelConfig,
          name: str | None = None, *, axis: int | Sequence[int] = -1, use_bias: bool = False,
          stddev: float = 0.02, lora: str | None = None,
          deterministic: bool = True) -> DenseGeneral:
  """A ``DenseGeneral`` in the config's compute dtype with float32 parameters; ``lora``
  names the projection (``q``, ``k``, ``v``, ``o``, ``gate``, ``up``, ``down``) that gets
  an adapter when it is among ``cfg.lora_targets``."""
  feats = (features,) if isinstance(features, int) else tuple(features)
  axes = (axis,) if isinstance(axis, int) else tuple(axis)
  rank = cfg.lora_rank if lora in cfg.lora_targets else 0
  return DenseGeneral(feats, tuple(names), axes, use_bias, cfg.compute_dtype, stddev, rank,
                      cfg.lora_scale, cfg.lora_dropout, deterministic, name=name)


class RMSNorm(nn.Module):
  """Root-mean-square norm with a scale and no bias: ``x * w`` (T5, Llama) or, with
  ``offset``, ``x * (1 + w)`` with ``w`` initialised to zeros (Gemma)."""

  eps: float
  dtype: Any = jnp.float32
  offset: bool = False
  names: tuple[str | None, ...] = ("embed",)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    init = nn.initializers.zeros if self.offset else nn.initializers.ones
    scale = self.param("scale", nn.with_logical_partitioning(init, self.names),
                       (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * (1.0 + scale if self.offset else scale)).astype(self.dtype)


def norm(cfg: ModelConfig, name: str | None = None,
         names: tuple[str | None, ...] = ("embed",)) -> nn.Module:
  """The configured normalisation layer: LayerNorm (``norm='layer'``) or RMSNorm
  (``rms``, or ``rms_1p`` for Gemma's ``1 + w`` scale); ``names`` are the scale's axes."""
  if cfg.norm == "layer":
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps, dtype=cfg.compute_dtype, param_dtype=jnp.float32, name=name,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names))
  return RMSNorm(cfg.layer_norm_eps, cfg.compute_dtype, cfg.norm == "rms_1p", names, name=name)


def embedding(cfg: ModelConfig, num: int, name: str | None = None, names=("vocab", "embed"),
              stddev: float = 1.0) -> nn.Embed:
  return nn.Embed(num, cfg.d_model, dtype=cfg.compute_dtype, param_dtype=jnp.float32, name=name,
                  embedding_init=nn.with_logical_partitioning(
                      nn.initializers.normal(stddev), names))


class MLP(nn.Module):
  """Feed-forward block, gated (``gated_mlp``: T5 v1.1, Llama) or plain."""

  cfg: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.cfg
    act, bias = ACTIVATIONS[cfg.activation], cfg.mlp_bias
    det = self.deterministic
    if cfg.gated_mlp and cfg.fused_projections:  # one [d, 2, d_ff] kernel: gate, up
      gate_up = dense((2, cfg.d_ff), ("embed", None, "mlp"), cfg, FUSED_MLP, use_bias=bias,
                      deterministic=det)(x)
      h = act(gate_up[..., 0, :]) * gate_up[..., 1, :]
    elif cfg.gated_mlp:
      h = act(dense(cfg.d_ff, ("embed", "mlp"), cfg, "wi_0", use_bias=bias, lora="gate",
                    deterministic=det)(x)) * dense(
          cfg.d_ff, ("embed", "mlp"), cfg, "wi_1", use_bias=bias, lora="up",
          deterministic=det)(x)
    else:
      h = act(dense(cfg.d_ff, ("embed", "mlp"), cfg, "wi", use_bias=bias, lora="up",
                    deterministic=det)(x))
    h = constrain(h, ("batch", "length", "mlp"))
    h = nn.Dropout(cfg.dropout_rate)(h, deterministic=det)
    return dense(cfg.d_model, ("mlp", "embed"), cfg, "wo", use_bias=bias, lora="down",
                 deterministic=det)(h)


class Attention(nn.Module):
  """Multi-head (grouped-query) attention with an optional decode cache.

  Self-attention in decode mode writes the new keys/values into the cache at
  ``cache_index`` and attends over the whole cache (``mask`` covers it). Cross
  attention in decode mode caches the projected encoder keys/values on the call
  that passes ``kv_input`` and reuses them when ``kv_input`` is None.
  """

  cfg: ModelConfig
  cross: bool = False
  decode: bool = False
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: Array, kv_input: Array | None, mask: Array | None,
               bias: Array | None = None, rope: tuple[Array, Array] | None = None,
               cache_index: Array | None = None, scale: float | Array | None = None) -> Array:
    """``rope``: the (cos, sin) table of the queries' positions (RoPE layouts);
    ``scale``: the score factor (default ``cfg.attention_scale``)."""
    cfg = self.cfg
    g = cfg.kv_heads
    det = self.deterministic
    fused = cfg.fused_projections and not self.cross
    if fused:  # one [d, g, h/g + 2, head_dim] kernel: each kv head's queries, its key, value
      r = cfg.num_heads // g
      qkv = dense((g, r + 2, cfg.head_dim), ("embed", "kv_heads", None, "kv"), cfg, FUSED_QKV,
                  use_bias=cfg.qkv_bias, deterministic=det)(x)
      q = qkv[..., :r, :].reshape(*qkv.shape[:-3], cfg.num_heads, cfg.head_dim)
      k, v = qkv[..., r, :], qkv[..., r + 1, :]
    else:
      q = dense((cfg.num_heads, cfg.head_dim), ("embed", "heads", "kv"), cfg, "query",
                use_bias=cfg.qkv_bias, lora="q", deterministic=det)(x)
    if cfg.qk_norm:
      q = norm(cfg, "query_norm", ("kv",))(q)
    q = constrain(q, ("batch", "length", "heads", "kv"))
    project_kv = kv_input is not None or not self.cross
    if project_kv:
      src = x if not self.cross else kv_input
      if not fused:
        k = dense((g, cfg.head_dim), ("embed", "kv_heads", "kv"), cfg, "key",
                  use_bias=cfg.qkv_bias, lora="k", deterministic=det)(src)
        v = dense((g, cfg.head_dim), ("embed", "kv_heads", "kv"), cfg, "value",
                  use_bias=cfg.qkv_bias, lora="v", deterministic=det)(src)
      if cfg.qk_norm:
        k = norm(cfg, "key_norm", ("kv",))(k)
      if rope is not None:
        q, k = apply_rope(q, rope), apply_rope(k, rope)
      k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [b, g, t, d]
    if self.decode:
      k, v = self._cached(k if project_kv else None, v if project_kv else None, cache_index)
    out = attend(q, k, v, mask, bias, cfg.attention_scale if scale is None else scale,
                 cfg.attn_softcap, cfg.attention, cfg.attention_block, cfg.sliding_window)
    out = nn.Dropout(cfg.dropout_rate)(out, deterministic=self.deterministic)
    return dense(cfg.d_model, ("heads", "kv", "embed"), cfg, "out", axis=(-2, -1),
                 use_bias=cfg.out_bias, lora="o", deterministic=det)(out)

  def _cached(self, k: Array | None, v: Array | None,
              cache_index: Array | None) -> tuple[Array, Array]:
    initialized = self.has_variable("cache", "cached_key")
    if self.cross:
      ck = self.variable("cache", "cached_key", jnp.zeros_like, k)
      cv = self.variable("cache", "cached_value", jnp.zeros_like, v)
      if k is not None:
        ck.value, cv.value = k, v
      return ck.value, cv.value
    ck = self.variable("cache", "cached_key", jnp.zeros_like, k)
    cv = self.variable("cache", "cached_value", jnp.zeros_like, v)
    if not initialized:  # init call: shapes only, attend over the inputs
      return k, v
    ck.value = lax.dynamic_update_slice(ck.value, k.astype(ck.value.dtype), (0, 0, cache_index, 0))
    cv.value = lax.dynamic_update_slice(cv.value, v.astype(cv.value.dtype), (0, 0, cache_index, 0))
    return ck.value, cv.value


class LayerStack(nn.Module):
  """Applies ``num_layers`` copies of ``block`` (unrolled or scanned, optionally remat).

  The block is built as ``block(cfg, decode=..., deterministic=...)``, called as
  ``block(x, layer, *args)`` and returns ``(x, None)``; ``layer`` is the layer's
  index (a Python int when unrolled, a traced int32 when scanned: read per-layer
  settings with ``per_layer``) and ``args`` are broadcast to every layer.
  Scanned layers store parameters stacked on a leading ``layers`` axis under
  ``layers``; unrolled ones under ``layers_0``, ``layers_1``, ...
  """

  cfg: ModelConfig
  block: type[nn.Module]
  num_layers: int

  @nn.compact
  def __call__(self, x: Array, *args: Any, decode: bool = False,
               deterministic: bool = True) -> Array:
    cfg = self.cfg
    cls = self.block
    if cfg.remat != "none":
      cls = nn.remat(cls, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      cls = nn.scan(cls, variable_axes={"params": 0, "cache": 0},
                    split_rngs={"params": True, "dropout": True},
                    in_axes=(0,) + (nn.broadcast,) * len(args), length=self.num_layers,
                    metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = cls(cfg, decode=decode, deterministic=deterministic, name="layers")(
          x, jnp.arange(self.num_layers, dtype=jnp.int32), *args)
      return x
    for i in range(self.num_layers):
      x, _ = cls(cfg, decode=decode, deterministic=deterministic, name=f"layers_{i}")(x, i, *args)
    return x


def per_layer(values: Sequence[Any], layer: int | Array) -> Any:
  """``values[layer]``: a Python value for an unrolled layer, an array for a scanned one."""
  if isinstance(layer, int):
    return values[layer]
  return jnp.asarray(values)[layer]


def pick(flag: bool | Array, if_true: Any, if_false: Any) -> Any:
  """``if_true`` or ``if_false`` (pytrees) by a static or traced per-layer ``flag``."""
  if isinstance(flag, (bool, np.bool_)):
    return if_true if flag else if_false
  return jax.tree.map(lambda a, b: jnp.where(flag, a, b), if_true, if_false)


def segment_ids(batch: Any, prefix: str, tokens: Array, pad_id: int | None = None) -> Array:
  """``{prefix}_segment_ids`` if given; else non-pad tokens (``pad_id``) or all ones."""
  seg = batch.get(f"{prefix}_segment_ids")
  if seg is not None:
    return seg.astype(jnp.int32)
  if pad_id is None:
    return jnp.ones_like(tokens, jnp.int32)
  return (tokens != pad_id).astype(jnp.int32)


def positions(batch: Any, prefix: str, tokens: Array) -> Array:
  """``{prefix}_positions`` if given (packed or left-padded rows), else 0..t-1."""
  pos = batch.get(f"{prefix}_positions")
  if pos is not None:
    return pos.astype(jnp.int32)
  return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)


class DecodeState(nn.Module):
  """Stack-level decode bookkeeping: the write index and each cache slot's segment.

  Returns ``(index, mask, q_slot)``: ``mask`` (a ``CausalMask`` over [t, max_len]) lets
  each new query see the cached keys of its own segment up to its own slot. For T5 it
  also keeps the encoder's segments (``enc_seg``, given on the first call) and
  returns them as a fourth value.
  """

  @nn.compact
  def __call__(self, seg: Array, enc_seg: Array | None = None
               ) -> tuple[Array, Array, Array, Array | None]:
    initialized = self.has_variable("cache", "index")
    index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    segs = self.variable("cache", "segments", jnp.zeros_like, seg)
    cached_enc = None
    if enc_seg is not None or self.has_variable("cache", "encoder_segments"):
      enc = self.variable("cache", "encoder_segments", lambda: enc_seg)
      if enc_seg is not None:
        enc.value = enc_seg
      cached_enc = enc.value
    t = seg.shape[1]
    if not initialized:
      slots = jnp.arange(t)
      return index.value, CausalMask(seg, seg, slots, slots, NO_WINDOW), slots, cached_enc
    i = index.value
    segs.value = lax.dynamic_update_slice(segs.value, seg.astype(segs.value.dtype), (0, i))
    q_slot = i + jnp.arange(t)
    mask = CausalMask(seg, segs.value, q_slot, jnp.arange(segs.value.shape[1]), NO_WINDOW)
    index.value = i + t
    return i, mask, q_slot, cached_enc
