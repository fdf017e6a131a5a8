"""LoRA adapters: a low-rank update ``scale * (x A) B`` beside a frozen projection.

``B`` starts at zero, so a model with fresh adapters computes exactly what its base
does. With ``lora_rank > 0`` only the adapters (and any parameters an algorithm adds:
value heads, a value trunk, auxiliary heads) train: ``partition`` splits a params tree
into what the optimizer sees and what stays frozen, ``combine`` puts it back together.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from irl_lm.models.config import ModelConfig
from irl_lm.models.heads import AUX_HEADS, HEADS, VALUE_TRUNK

ADAPTER_PARAMS = ("lora_a", "lora_b")
ALGORITHM_PARAMS = (HEADS, VALUE_TRUNK, AUX_HEADS)  # trainable whatever the LM does


def trains(path: tuple[str, ...]) -> bool:
  """Whether a parameter trains in a LoRA run: an adapter or an algorithm's own."""
  return path[-1] in ADAPTER_PARAMS or path[0] in ALGORITHM_PARAMS


def partition(params: Any, cfg: ModelConfig) -> tuple[Any, Any]:
  """(trainable, frozen) parts of ``params`` (nested dicts); without LoRA all of it trains."""
  if not cfg.lora_rank:
    return params, {}
  flat = traverse_util.flatten_dict(params)
  train = {k: v for k, v in flat.items() if trains(k)}
  frozen = {k: v for k, v in flat.items() if not trains(k)}
  return traverse_util.unflatten_dict(train), traverse_util.unflatten_dict(frozen)


def combine(trainable: Any, frozen: Any) -> Any:
  """``partition``'s inverse."""
  if not frozen:
    return trainable
  flat = traverse_util.flatten_dict(frozen)
  flat.update(traverse_util.flatten_dict(trainable))
  return traverse_util.unflatten_dict(flat)


def stored(params: Any, cfg: ModelConfig) -> Any:
  """``params`` with the frozen part in ``cfg.param_dtype`` (arrays or ``ShapeDtypeStruct``s)."""
  if not cfg.lora_rank or cfg.param_dtype == "float32":
    return params
  dtype = cfg.frozen_dtype
  trainable, frozen = partition(params, cfg)
  cast = lambda x: (x.astype(dtype) if hasattr(x, "astype") else
                    jax.ShapeDtypeStruct(x.shape, dtype, sharding=getattr(x, "sharding", None)))
  return combine(trainable, jax.tree.map(cast, frozen))


def fresh_adapters(abstract: dict[tuple[str, ...], Any], rng: jax.Array
                   ) -> dict[tuple[str, ...], np.ndarray]:
  """New adapters for the ``lora_a``/``lora_b`` leaves of a flat abstract params tree:
  ``A`` drawn as the layer's own initialiser draws it, ``B`` zeros."""
  out = {}
  for i, (k, v) in enumerate(sorted(abstract.items())):
    if k[-1] == "lora_b":
      out[k] = np.zeros(v.shape, np.float32)
    elif k[-1] == "lora_a":
      fan_in = int(np.prod(v.shape[:-1]))
      out[k] = np.asarray(jax.random.normal(jax.random.fold_in(rng, i), v.shape)
                          / np.sqrt(fan_in), np.float32)
  return out


def merged(params: Any, cfg: ModelConfig) -> Any:
  """``params`` with every adapter folded into its kernel (``W + scale * A B``) and removed:
  the plain model the adapters describe (for export)."""
  if not isinstance(params, dict):
    return params
  if "lora_a" not in params:
    return {k: merged(v, cfg) for k, v in params.items()}
  a, b = params["lora_a"], params["lora_b"]
  kernel = params["kernel"]
  stacked = kernel.ndim == a.ndim + b.ndim - 1  # scanned layers: a leading layer axis
  lead = 1 if stacked else 0
  delta = jnp.einsum("...ir,...ro->...io", a.reshape(a.shape[:lead] + (-1, a.shape[-1])),
                     b.reshape(b.shape[:lead + 1] + (-1,)))
  kernel = kernel + cfg.lora_scale * delta.reshape(kernel.shape).astype(kernel.dtype)
  return {**{k: v for k, v in params.items() if k not in ADAPTER_PARAMS}, "kernel": kernel}
