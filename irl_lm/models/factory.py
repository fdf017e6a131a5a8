"""Model construction, parameter initialisation and parameter sharding specs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from irl_lm import sharding as shd
from irl_lm.models import lora
from irl_lm.models.config import ModelConfig
from irl_lm.models.decoder import Decoder
from irl_lm.models.heads import AUX_HEADS, HEADS, VALUE_TRUNK, ValueHeads
from irl_lm.models.t5 import T5


def build_model(cfg: ModelConfig) -> nn.Module:
  """The Flax module for ``cfg``: ``T5`` or ``Decoder``."""
  return T5(cfg) if cfg.kind == "encdec" else Decoder(cfg)


def dummy_batch(cfg: ModelConfig, batch: int = 1, length: int = 8,
                enc_length: int | None = None) -> dict[str, np.ndarray]:
  """A minimal input batch with the feature names the model expects."""
  out = {"decoder_input_tokens": np.ones((batch, length), np.int32)}
  if cfg.kind == "encdec":
    out["encoder_input_tokens"] = np.ones((batch, enc_length or length), np.int32)
  return out


def _heads_init(cfg: ModelConfig, rng: jax.Array) -> Any:
  hidden = jnp.zeros((1, 1, cfg.d_model), cfg.compute_dtype)
  return ValueHeads(cfg).init({"params": jax.random.fold_in(rng, 1)}, hidden)["params"]


AuxHeads = tuple[tuple[str, nn.Module], ...]  # (name, head) pairs under params[AUX_HEADS]


def _aux_init(cfg: ModelConfig, aux: AuxHeads, rng: jax.Array) -> dict[str, Any]:
  hidden = jnp.zeros((1, 1, cfg.d_model), cfg.compute_dtype)
  return {name: head.init({"params": jax.random.fold_in(rng, 2 + i)}, hidden)["params"]
          for i, (name, head) in enumerate(aux)}


def aux_heads_init_fn(cfg: ModelConfig, aux: AuxHeads) -> Callable[[jax.Array], Any]:
  """A jittable ``rng -> params[AUX_HEADS]`` (unboxed): fresh auxiliary heads, as
  ``param_init_fn`` draws them (for a run whose trunk comes from a checkpoint)."""
  return lambda rng: nn.meta.unbox(_aux_init(cfg, aux, rng))


def _init_fn(cfg: ModelConfig, heads: bool, value_trunk: bool, aux: AuxHeads = ()):
  model = build_model(cfg)
  batch = jax.tree.map(jnp.asarray, dummy_batch(cfg))

  def init(rng):
    trunk = model.init({"params": rng}, batch)["params"]
    params = {**trunk, HEADS: _heads_init(cfg, rng)} if heads else dict(trunk)
    if value_trunk:  # starts as a copy of the policy trunk
      params[VALUE_TRUNK] = jax.tree.map(jnp.copy, trunk)
    if aux:
      params[AUX_HEADS] = _aux_init(cfg, aux, rng)
    return params
  return init


def init_heads(cfg: ModelConfig, rng: jax.Array) -> Any:
  """The value heads ``init_params(cfg, rng, heads=True)[HEADS]`` would draw."""
  return nn.meta.unbox(_heads_init(cfg, rng))


def param_init_fn(cfg: ModelConfig, heads: bool = False, value_trunk: bool = False,
                  aux: AuxHeads = ()) -> Callable[[jax.Array], Any]:
  """A pure, jittable ``rng -> params`` (unboxed float32; a LoRA run's frozen base in
  ``cfg.param_dtype``) initialiser.

  ``heads`` adds the ILQL value heads under ``params['heads']``;
  ``value_trunk`` adds ILQL's separate value trunk under
  ``params['value_trunk']``, a copy of the policy trunk; ``aux`` adds an
  algorithm's own heads (each reads ``[b, t, d_model]`` hidden states) under
  ``params['aux_heads']``.
  """
  boxed = _init_fn(cfg, heads, value_trunk, aux)
  return lambda rng: lora.stored(nn.meta.unbox(boxed(rng)), cfg)


def init_params(cfg: ModelConfig, rng: jax.Array, shardings: Any | None = None,
                heads: bool = False, value_trunk: bool = False) -> Any:
  """Randomly initialised float32 parameters (unboxed), optionally created sharded."""
  return jax.jit(param_init_fn(cfg, heads, value_trunk), out_shardings=shardings)(rng)


def param_logical_specs(cfg: ModelConfig, heads: bool = False, value_trunk: bool = False,
                        aux: AuxHeads = ()) -> tuple[Any, Any]:
  """(logical PartitionSpec tree, ShapeDtypeStruct tree) of the parameters."""
  boxed = jax.eval_shape(_init_fn(cfg, heads, value_trunk, aux), jax.random.key(0))
  return nn.get_partition_spec(boxed), lora.stored(nn.meta.unbox(boxed), cfg)


def param_shardings(cfg: ModelConfig, mesh: Mesh, rules: shd.Rules, heads: bool = False,
                    value_trunk: bool = False, aux: AuxHeads = ()) -> tuple[Any, Any, Any]:
  """(logical specs, abstract params, NamedSharding tree) of the parameters on ``mesh``;
  the value trunk takes the same logical axes, so the same shardings, as the trunk."""
  specs, abstract = param_logical_specs(cfg, heads, value_trunk, aux)
  return specs, abstract, shd.logical_shardings(specs, abstract, mesh, rules)
