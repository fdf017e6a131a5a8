"""The train state (one pytree) and its shardings on the mesh."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from irl_lm import sharding as shd
from irl_lm.algorithms import Algorithm
from irl_lm.algorithms.base import BatchShapes
from irl_lm.models import ModelConfig, lora

# Checkpoints written before the algorithms had their own state held these fields at the
# top of the state tree (None when unused); saving keeps that layout so old and new
# workdirs restore alike.
SAVED_EXTRA = ("target_q", "replay", "reward_stats")


@struct.dataclass
class TrainState:
  """Everything a step reads and writes.

  ``params`` holds the network's parameters and any the algorithm adds (ILQL's
  value heads and value trunk); ``extra`` holds the algorithm's own state by
  name (``Algorithm.extra_state``: ILQL's ``target_q`` and ``reward_stats``,
  online IQLearn's ``replay``); ``nonfinite`` counts consecutive steps whose
  loss or gradients were not finite (their updates were skipped) and
  ``skipped`` counts them all.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  nonfinite: jax.Array
  skipped: jax.Array
  extra: dict[str, Any] = struct.field(default_factory=dict)

  def saved(self) -> dict[str, Any]:
    """The tree a checkpoint holds: the fields, with ``extra``'s entries beside them."""
    out = {k: getattr(self, k) for k in ("step", "params", "opt_state", "rng", "nonfinite",
                                         "skipped")}
    return {**out, **{k: None for k in SAVED_EXTRA}, **self.extra}

  @classmethod
  def from_saved(cls, tree: dict[str, Any]) -> TrainState:
    """The state of a checkpoint's tree (``saved``'s inverse)."""
    tree = dict(tree)
    fields = {k: tree.pop(k) for k in ("step", "params", "opt_state", "rng", "nonfinite",
                                        "skipped")}
    return cls(**fields, extra={k: v for k, v in tree.items() if v is not None})


def new_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array,
              extra: dict[str, Any] | None = None, cfg: ModelConfig | None = None
              ) -> TrainState:
  """The state at step 0 for the given parameters and algorithm state; the optimizer
  holds state for what trains (with ``cfg``'s LoRA, the adapters and the algorithm's own
  parameters)."""
  zero = jnp.zeros((), jnp.int32)
  trainable = lora.partition(params, cfg)[0] if cfg is not None else params
  return TrainState(step=zero, params=params, opt_state=tx.init(trainable), rng=rng,
                    nonfinite=zero, skipped=zero, extra=extra or {})


def state_shardings(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh,
                    rules: shd.Rules, algorithm: Algorithm, batch_shapes: BatchShapes
                    ) -> tuple[TrainState, TrainState]:
  """(abstract state, NamedSharding tree) of the train state.

  Parameters follow their logical axis names (with the heads and trunk the
  algorithm adds); optimizer moments that mirror a parameter take its sharding,
  other optimizer leaves (counts, factored second moments) are replicated; the
  algorithm places its own state.
  """
  specs, abstract_params, p_shard = algorithm.param_shardings(cfg, mesh, rules)
  extra, extra_shard = algorithm.extra_state(batch_shapes, abstract_params, p_shard, mesh, rules)
  abstract = jax.eval_shape(lambda p: new_state(p, tx, jax.random.PRNGKey(0), cfg=cfg),
                            abstract_params)
  abstract = abstract.replace(extra=extra)
  train_specs, train_params = lora.partition(specs, cfg)[0], lora.partition(abstract_params,
                                                                             cfg)[0]

  def mirror(leaf: Any, spec: Any, param: Any) -> Any:
    return spec if getattr(leaf, "shape", None) == param.shape else None

  opt_specs = optax.tree_map_params(
      tx, mirror, abstract.opt_state, train_specs, train_params,
      transform_non_params=lambda _: None,
      is_leaf=lambda x: isinstance(x, P) or x is None)
  opt_shard = shd.logical_shardings(opt_specs, abstract.opt_state, mesh, rules)
  rep = NamedSharding(mesh, P())
  shardings = TrainState(step=rep, params=p_shard, opt_state=opt_shard, rng=rep, nonfinite=rep,
                         skipped=rep, extra=extra_shard)
  return abstract, shardings
