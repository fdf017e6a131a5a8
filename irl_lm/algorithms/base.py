"""The protocol every training algorithm follows.

The run builder picks one ``Algorithm`` from ``config.loss.name`` and the rest of
training asks it, never the config, what the algorithm needs:

* parameters beyond the LM (``value_heads``, ``value_trunk``: the models module
  builds, shards, loads and saves them);
* state beyond parameters and optimizer (``extra_state`` / ``init_extra``: ILQL's
  target heads and return statistics, online IQLearn's replay buffer), held in
  ``TrainState.extra`` and checkpointed under these names;
* the loss (``make_loss``), the per-step batch preparation before it
  (``make_prepare``), the state update after the optimizer (``finish``) and the
  eval-time preparation (``prepare_eval``);
* its config and data checks, run before anything compiles;
* what decoding and inference need from the state (``decode_kwargs``,
  ``inference_fields``).

Adding an algorithm is a subclass in its own module plus a line in the registry
(``irl_lm.algorithms.ALGORITHMS``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import ml_collections
from jax.sharding import Mesh

from irl_lm import sharding as shd
from irl_lm.errors import ConfigError
from irl_lm.models import (AUX_HEADS, AuxHeads, ModelConfig, aux_heads_init_fn, param_init_fn,
                           param_shardings)

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
Extra = dict[str, Any]
# (params, extra state, batch, rng, optimizer updates so far) -> (loss, metrics)
LossFn = Callable[[Any, Extra, Batch, jax.Array, jax.Array], tuple[jax.Array, Metrics]]
# (extra state, params, batch, step, step rng) -> (extra state, batch for the loss, metrics)
PrepareFn = Callable[[Extra, Any, Batch, jax.Array, jax.Array], tuple[Extra, Batch, Metrics]]
BatchShapes = Mapping[str, tuple[tuple[int, ...], Any]]


class Algorithm:
  """One training algorithm. The base class is an algorithm with no state of its own.

  Subclasses set ``name`` (the ``config.loss.name`` that selects them) and
  override what they need. Instances hold plain values read from the config,
  so the jitted step closes over numbers, not over the config.
  """

  name: ClassVar[str]
  needs_rewards: ClassVar[bool] = False  # the train split must carry rewards
  value_heads: bool = False  # params gain Q1/Q2/V heads (``models.heads``)
  value_trunk: bool = False  # params gain a second trunk the heads read

  def __init__(self, config: ml_collections.ConfigDict):
    self.dropout = config.model.dropout_rate
    self.targets_length = config.data.targets_length

  def aux_heads(self, cfg: ModelConfig) -> AuxHeads:
    """Heads this algorithm trains on the trunk's hidden states (``params['aux_heads']``)."""
    del cfg
    return ()

  def param_shardings(self, cfg: ModelConfig, mesh: Mesh, rules: shd.Rules
                      ) -> tuple[Any, Any, Any]:
    """(logical specs, abstract params, shardings) of the LM with this algorithm's parameters."""
    return param_shardings(cfg, mesh, rules, self.value_heads, self.value_trunk,
                           self.aux_heads(cfg))

  def param_init_fn(self, cfg: ModelConfig) -> Callable[[jax.Array], Any]:
    """``rng -> params``: the LM with this algorithm's parameters, freshly initialised."""
    return param_init_fn(cfg, self.value_heads, self.value_trunk, self.aux_heads(cfg))

  def complete_params(self, cfg: ModelConfig, params: Any, rng: jax.Array) -> Any:
    """``params`` with this algorithm's auxiliary heads drawn fresh where missing (a run
    whose LM comes from a checkpoint); traced under jit."""
    aux = self.aux_heads(cfg)
    if not aux or AUX_HEADS in params:
      return params
    return {**params, AUX_HEADS: aux_heads_init_fn(cfg, aux)(rng)}

  @classmethod
  def configure(cls, config: ml_collections.ConfigDict) -> None:
    """Adjusts a config selecting this algorithm by ``--config=FILE:NAME`` (in place)."""

  @classmethod
  def check_config(cls, flat: dict[str, Any]) -> None:
    """Raises ``ConfigError`` for settings this algorithm cannot run with."""

  def check_data(self, task: Any, split: str, key: str) -> None:
    """Raises ``ConfigError`` when ``task``'s ``split`` lacks what this algorithm reads."""
    if self.needs_rewards:
      from irl_lm.data.checks import has_rewards  # pylint: disable=import-outside-toplevel
      if not has_rewards(task, split):
        raise ConfigError(f"config.loss.name={self.name!r} needs reward-labelled data", key,
                          expected="a task with a 'reward' or 'turn_rewards' column",
                          found=f"{task.name!r} without rewards")

  def startup(self, task: Any) -> dict[str, Any]:
    """Host-side values ``init_extra`` starts from, computed once before step 0."""
    del task
    return {}

  def extra_state(self, batch_shapes: BatchShapes, abstract_params: Any, param_shardings: Any,
                  mesh: Mesh, rules: shd.Rules) -> tuple[Extra, Extra]:
    """(abstract ``extra`` state, its shardings), given the parameters' (abstract, shardings)."""
    del batch_shapes, abstract_params, param_shardings, mesh, rules
    return {}, {}

  def init_extra(self, params: Any, abstract: Extra, **startup: Any) -> Extra:
    """The ``extra`` state at step 0 (traced under jit); ``startup`` from ``startup()``."""
    del params, abstract, startup
    return {}

  def make_loss(self, model: nn.Module, train: bool = True) -> LossFn:
    """The loss. Dropout is on only with ``train`` and a non-zero dropout rate."""
    raise NotImplementedError

  def deterministic(self, train: bool) -> bool:
    return not train or self.dropout == 0.0

  def make_prepare(self, model: nn.Module) -> PrepareFn:
    """Before the loss, in the train step: ``(extra, params, batch, step, rng) -> (extra,
    the batch the loss sees, metrics)``. The default changes nothing."""
    del model
    return lambda extra, params, batch, step, rng: (extra, batch, {})

  def prepare_eval(self, extra: Extra, batch: Batch) -> Batch:
    """The batch the eval loss sees."""
    del extra
    return batch

  def finish(self, old: Extra, prepared: Extra, params: Any, finite: jax.Array,
             applied: jax.Array, updates: jax.Array) -> Extra:
    """The extra state after the step.

    ``old`` is the state before the step, ``prepared`` what the prepare function made of
    it, ``params`` the updated parameters, ``finite`` whether the step's loss and
    gradients were finite (a non-finite step's updates are dropped), ``applied``
    whether the optimizer applied an update this step and ``updates`` how many
    it has applied.
    """
    del old, params, finite, applied, updates
    return prepared

  def decode_kwargs(self, extra: Extra) -> dict[str, Any]:
    """Keyword arguments ``decoding.generate`` takes from the state (ILQL's target heads)."""
    del extra
    return {}

  def inference_state(self, abstract_params: Any, param_shardings: Any
                      ) -> tuple[Extra, Extra]:
    """(abstract, shardings) of the saved ``extra`` fields inference reads (decoding)."""
    del abstract_params, param_shardings
    return {}, {}
