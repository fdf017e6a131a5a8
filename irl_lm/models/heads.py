"""ILQL value heads on the LM trunk: two Q heads (vocab-sized) and one V head."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from irl_lm.models.config import ModelConfig
from irl_lm.models.layers import constrain, dense

Array = jax.Array


@struct.dataclass
class ModelOutput:
  """Forward-pass outputs, float32, one row per target position.

  ``logits``/``q1``/``q2``/``target_q1``/``target_q2`` are [batch, length, vocab];
  ``v`` is [batch, length]. Fields not computed are None.
  """

  logits: Array
  q1: Array | None = None
  q2: Array | None = None
  v: Array | None = None
  target_q1: Array | None = None
  target_q2: Array | None = None


class MLPHead(nn.Module):
  """d_model -> 2*d_model -> ReLU -> out (``out`` is the vocab for Q, 1 for V)."""

  cfg: ModelConfig
  out: int
  out_name: str | None

  @nn.compact
  def __call__(self, h: Array) -> Array:
    x = dense(2 * self.cfg.d_model, ("embed", "mlp"), self.cfg, "hidden", use_bias=True)(h)
    x = nn.relu(constrain(x, ("batch", "length", "mlp")))
    return dense(self.out, ("mlp", self.out_name), self.cfg, "out", use_bias=True)(x)


class ValueHeads(nn.Module):
  """Q1, Q2 and V heads; ``target_q_params`` ({'q1','q2'}) adds the target Qs."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, h: Array, target_q_params: Any | None = None) -> dict[str, Array]:
    cfg = self.cfg
    f32 = lambda x: x.astype(jnp.float32)
    q = lambda name: MLPHead(cfg, cfg.vocab_size, "vocab", name=name)
    out = {"q1": f32(q("q1")(h)), "q2": f32(q("q2")(h)),
           "v": f32(MLPHead(cfg, 1, None, name="v")(h))[..., 0]}
    if target_q_params is not None:
      for k in ("q1", "q2"):
        head = MLPHead(cfg, cfg.vocab_size, "vocab", parent=None)
        out[f"target_{k}"] = f32(head.apply({"params": target_q_params[k]}, h))
    return out


def target_q_params(params: Any) -> dict[str, Any]:
  """Initial target Q-head parameters: a copy of the online Q heads."""
  return {k: jax.tree.map(jnp.array, params["heads"][k]) for k in ("q1", "q2")}
