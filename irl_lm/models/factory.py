"""Model construction, parameter initialisation and parameter sharding specs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.models.config import ModelConfig
from irl_lm.models.decoder import Decoder
from irl_lm.models.t5 import T5


def build_model(cfg: ModelConfig) -> nn.Module:
  """The Flax module for ``cfg``: ``T5`` or ``Decoder``."""
  return T5(cfg) if cfg.is_encoder_decoder else Decoder(cfg)


def dummy_batch(cfg: ModelConfig, batch: int = 1, length: int = 8,
                enc_length: int | None = None) -> dict[str, np.ndarray]:
  """A minimal input batch with the feature names the model expects."""
  out = {"decoder_input_tokens": np.ones((batch, length), np.int32)}
  if cfg.is_encoder_decoder:
    out["encoder_input_tokens"] = np.ones((batch, enc_length or length), np.int32)
  return out


def _init_fn(cfg: ModelConfig):
  model = build_model(cfg)
  batch = jax.tree.map(jnp.asarray, dummy_batch(cfg))
  return lambda rng: model.init({"params": rng}, batch)["params"]


def param_init_fn(cfg: ModelConfig) -> Callable[[jax.Array], Any]:
  """A pure, jittable ``rng -> params`` (unboxed float32) initialiser."""
  boxed = _init_fn(cfg)
  return lambda rng: nn.meta.unbox(boxed(rng))


def init_params(cfg: ModelConfig, rng: jax.Array, shardings: Any | None = None) -> Any:
  """Randomly initialised float32 parameters (unboxed), optionally created sharded."""
  return jax.jit(param_init_fn(cfg), out_shardings=shardings)(rng)


def param_logical_specs(cfg: ModelConfig) -> tuple[Any, Any]:
  """(logical PartitionSpec tree, ShapeDtypeStruct tree) of the parameters."""
  boxed = jax.eval_shape(_init_fn(cfg), jax.random.key(0))
  return nn.get_partition_spec(boxed), nn.meta.unbox(boxed)
