"""The train state (one pytree) and its shardings on the mesh."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from irl_lm import sharding as shd
from irl_lm.models import ModelConfig, param_shardings, q_heads


@struct.dataclass
class TrainState:
  """Everything a step reads and writes.

  ``params`` holds the network's parameters and, for ILQL, its value heads
  under ``params['heads']`` (and with ``loss.ilql.separate_value_trunk`` the
  value trunk under ``params['value_trunk']``); ``target_q`` holds the ILQL target Q heads
  (``{'q1', 'q2'}``, Polyak averages of the online ones; None otherwise);
  ``nonfinite`` counts consecutive steps whose loss or gradients were not
  finite (their updates were skipped) and ``skipped`` counts them all;
  ``replay`` is online IQLearn's buffer of policy samples (``training.online``;
  None otherwise); ``reward_stats`` holds ILQL's episode-return statistics for
  ``loss.ilql.reward_norm`` (``losses.empty_return_stats``; None with ``"none"``).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  target_q: Any
  rng: jax.Array
  nonfinite: jax.Array
  skipped: jax.Array
  replay: Any
  reward_stats: Any = None


def new_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array,
              with_target_q: bool, replay: Any = None, reward_stats: Any = None) -> TrainState:
  """The state at step 0 for the given parameters (``replay``: an empty buffer or None;
  ``reward_stats``: the starting return statistics or None)."""
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, params=params, opt_state=tx.init(params),
                    target_q=jax.tree.map(jnp.array, q_heads(params)) if with_target_q else None,
                    rng=rng, nonfinite=zero, skipped=zero, replay=replay,
                    reward_stats=reward_stats)


def state_shardings(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh,
                    rules: shd.Rules, with_target_q: bool, value_trunk: bool = False
                    ) -> tuple[TrainState, TrainState]:
  """(abstract state, NamedSharding tree) of the train state.

  Parameters follow their logical axis names; optimizer moments that mirror a
  parameter take its sharding, other optimizer leaves (counts, factored
  second moments) are replicated. ``with_target_q`` (ILQL) adds the value
  heads to the parameters and the target Q heads to the state; ``value_trunk``
  adds ILQL's separate value trunk to the parameters.
  """
  specs, abstract_params, p_shard = param_shardings(cfg, mesh, rules, with_target_q,
                                                    value_trunk)
  abstract = jax.eval_shape(
      lambda p: new_state(p, tx, jax.random.PRNGKey(0), with_target_q), abstract_params)

  def mirror(leaf: Any, spec: Any, param: Any) -> Any:
    return spec if getattr(leaf, "shape", None) == param.shape else None

  opt_specs = optax.tree_map_params(
      tx, mirror, abstract.opt_state, specs, abstract_params,
      transform_non_params=lambda _: None,
      is_leaf=lambda x: isinstance(x, P) or x is None)
  opt_shard = shd.logical_shardings(opt_specs, abstract.opt_state, mesh, rules)
  rep = NamedSharding(mesh, P())
  target = q_heads(p_shard) if with_target_q else None  # as the online heads
  shardings = TrainState(step=rep, params=p_shard, opt_state=opt_shard, target_q=target,
                         rng=rep, nonfinite=rep, skipped=rep, replay=None)
  return abstract, shardings
