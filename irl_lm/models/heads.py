"""Model outputs, and the ILQL value heads: MLPs on the trunk's hidden states.

The networks return logits and hidden states only. The heads are ordinary
parameters under ``params[HEADS]``, applied by the algorithm that uses them
(the ILQL train step and ILQL-guided decoding) through ``apply_heads``; with a
separate value trunk (``params[VALUE_TRUNK]``, a second copy of the network)
they read that trunk's hidden states.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from irl_lm.models.config import ModelConfig
from irl_lm.models.layers import constrain, dense

Array = jax.Array

HEADS = "heads"  # the params key of the value heads
VALUE_TRUNK = "value_trunk"  # the params key of ILQL's separate value trunk, when it has one
# The params key of heads an algorithm trains on the trunk's hidden states but never exports
# (GAIL's discriminator and baseline): ``{name: head params}``.
AUX_HEADS = "aux_heads"
Q_HEADS = ("q1", "q2")  # the two vocab-sized Q heads
V_HEAD = "v"


@struct.dataclass
class ModelOutput:
  """Forward-pass outputs, one row per target position.

  ``logits`` [batch, length, vocab] float32; ``hidden`` [batch, length,
  d_model] the final-norm hidden states (in the compute dtype) the heads read.
  """

  logits: Array
  hidden: Array


class MLPHead(nn.Module):
  """d_model -> 2*d_model -> ReLU -> out (``out`` is the vocab for Q, 1 for V)."""

  cfg: ModelConfig
  out: int
  out_name: str | None

  @nn.compact
  def __call__(self, h: Array) -> Array:
    x = dense(2 * self.cfg.d_model, ("embed", "mlp"), self.cfg, "hidden", use_bias=True)(h)
    x = nn.relu(constrain(x, ("batch", "length", "mlp")))
    # The hidden layer is gathered over its "mlp" shards before the output layer. Left
    # sharded, XLA's SPMD partitioner (jax 0.10.2, CPU) computed wrong Q values on a
    # (2, 2, 2) mesh when the output was laid out like the logits (vocab on "tensor"):
    # x[(data, fsdp), tensor] @ kernel[tensor, fsdp] resharded to [(data, fsdp), tensor].
    x = constrain(x, ("batch", "length", None))
    return dense(self.out, ("mlp", self.out_name), self.cfg, "out", use_bias=True)(x)


class ScalarHead(nn.Module):
  """One float32 value per position: ``[b, t, d] -> [b, t]`` (an ``MLPHead`` with one output)."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, h: Array) -> Array:
    return MLPHead(self.cfg, 1, None, name="mlp")(h)[..., 0].astype(jnp.float32)


class TokenHead(nn.Module):
  """One float32 value per position and vocabulary entry: ``[b, t, d] -> [b, t, vocab]``."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, h: Array) -> Array:
    return MLPHead(self.cfg, self.cfg.vocab_size, "vocab", name="mlp")(h).astype(jnp.float32)


def q_head(cfg: ModelConfig) -> MLPHead:
  return MLPHead(cfg, cfg.vocab_size, "vocab")


class ValueHeads(nn.Module):
  """The Q1, Q2 and V heads: ``{'q1', 'q2': [b, t, vocab], 'v': [b, t]}``, float32."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, h: Array) -> dict[str, Array]:
    out = {k: MLPHead(self.cfg, self.cfg.vocab_size, "vocab", name=k)(h) for k in Q_HEADS}
    out[V_HEAD] = MLPHead(self.cfg, 1, None, name=V_HEAD)(h)[..., 0]
    return jax.tree.map(lambda x: x.astype(jnp.float32), out)


def apply_heads(cfg: ModelConfig, params: Any, h: Array) -> tuple[Array, Array, Array]:
  """(Q1, Q2, V) from ``params[HEADS]`` on hidden states ``h`` [b, t, d]."""
  out = ValueHeads(cfg).apply({"params": params[HEADS]}, h)
  return out[Q_HEADS[0]], out[Q_HEADS[1]], out[V_HEAD]


def apply_q_heads(cfg: ModelConfig, q_params: Any, h: Array) -> tuple[Array, Array]:
  """(Q1, Q2) float32 from a ``{'q1', 'q2'}`` tree of Q-head parameters."""
  head = q_head(cfg)
  return tuple(head.apply({"params": q_params[k]}, h).astype(jnp.float32) for k in Q_HEADS)


def q_heads(tree: Any) -> dict[str, Any]:
  """The Q-head subtrees ``{'q1', 'q2'}`` of a params-shaped tree (arrays or shardings)."""
  return {k: tree[HEADS][k] for k in Q_HEADS}


def trunk_params(params: Any) -> Any:
  """The policy trunk: ``params`` without the value heads, value trunk and auxiliary
  heads (what the network's ``apply`` takes)."""
  return {k: v for k, v in params.items() if k not in (HEADS, VALUE_TRUNK, AUX_HEADS)}


def trunks(params: Any) -> dict[str, Any]:
  """The networks a params tree holds: ``{'policy': ...}``, and ``'value'`` for a
  separate value trunk (what a decode step runs, each with its own cache)."""
  out = {"policy": trunk_params(params)}
  if VALUE_TRUNK in params:
    out["value"] = params[VALUE_TRUNK]
  return out
