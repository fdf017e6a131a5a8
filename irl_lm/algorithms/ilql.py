"""ILQL: token-level Q and V heads on the LM trunk, Polyak-averaged target Q heads, and
decoding that perturbs the LM by beta * (Q - V).

The heads (``value_heads``) and, with ``loss.ilql.separate_value_trunk``, a second
trunk they read (``value_trunk``) are parameters that ``irl_lm.models`` builds,
shards, loads and saves; the target Q heads and, with ``loss.ilql.reward_norm``,
the episode-return statistics the rewards are z-scored by are this algorithm's
extra state.
"""
from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from irl_lm import data, losses
from irl_lm import sharding as shd
from irl_lm.algorithms.base import (Algorithm, Batch, BatchShapes, Extra, LossFn, Metrics,
                                    PrepareFn)
from irl_lm.errors import ConfigError
from irl_lm.models import (VALUE_TRUNK, apply_heads, apply_q_heads, q_heads,
                           trunk_params)

TARGET_Q = "target_q"  # the extra state's (and the checkpoint's) key of the target Q heads
REWARD_STATS = "reward_stats"  # ... and of the return statistics
BETA = 4.0  # the guidance strength a ``--config=FILE:ilql`` run evaluates with
REWARD_NORM_MAX_EXAMPLES = 100_000  # reward_norm="dataset" reads at most this many examples


def _observe(stats: losses.ReturnStats, batch: Batch) -> losses.ReturnStats:
  """``stats`` merged with the returns of the batch's finished episodes."""
  return losses.merge_return_stats(stats, losses.batch_return_stats(
      batch["decoder_rewards"], batch["decoder_loss_weights"], batch.get("decoder_segment_ids"),
      batch.get("decoder_truncated")))


def _normalized(batch: Batch, stats: losses.ReturnStats) -> Batch:
  """The batch with its rewards z-scored by the episode-return statistics ``stats``."""
  rewards = losses.normalize_rewards(
      batch["decoder_rewards"], batch["decoder_loss_weights"], stats,
      batch.get("decoder_segment_ids"), batch.get("decoder_truncated"))
  return {**batch, "decoder_rewards": rewards}


class ILQL(Algorithm):
  """Implicit language Q-learning (``loss.ilql``)."""

  name = "ilql"
  needs_rewards = True
  value_heads = True

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    il = config.loss.ilql
    self.value_trunk = il.separate_value_trunk
    self.reward_norm = il.reward_norm
    self.terms = dict(tau=il.tau, gamma=il.gamma, cql_weight=il.cql_weight,
                      awac_weight=il.awac_weight, awac_beta=il.awac_beta,
                      awac_clip=il.awac_clip)
    self.polyak_every, self.polyak_rate = il.polyak_every, il.polyak_rate
    d = config.data
    self.train_split = d.train_split
    self.lengths = {"inputs": d.inputs_length, "targets": d.targets_length}

  @classmethod
  def configure(cls, config: ml_collections.ConfigDict) -> None:
    """Evaluates with guidance (``decoding.ilql_beta``) unless the config set a strength."""
    if not config.decoding.ilql_beta:
      config.decoding.ilql_beta = BETA

  @classmethod
  def check_config(cls, flat: dict[str, Any]) -> None:
    task = flat["data.task"]
    if task in ("jsonl", "hf_dataset") and not flat[f"data.{task}.fields.reward"]:
      raise ConfigError("ILQL learns from rewards, but the rows have none",
                        f"config.data.{task}.fields.reward",
                        expected="the name of the reward field", found="''")

  def startup(self, task: Any) -> dict[str, Any]:
    """``reward_norm="dataset"``: the return statistics of one pass over the first
    ``REWARD_NORM_MAX_EXAMPLES`` examples of the train split."""
    if self.reward_norm != "dataset":
      return {}
    returns = data.split_returns(task, self.train_split, self.lengths, REWARD_NORM_MAX_EXAMPLES)
    stats = losses.return_stats(jnp.asarray(returns), jnp.ones(returns.shape, bool))
    logging.info("Reward normalisation over %d finished episodes: mu %.4g, sigma %.4g",
                 len(returns), float(stats["mean"]), float(losses.return_std(stats)))
    return {REWARD_STATS: stats}

  def extra_state(self, batch_shapes: BatchShapes, abstract_params: Any, param_shardings: Any,
                  mesh: Mesh, rules: shd.Rules) -> tuple[Extra, Extra]:
    # The target heads mirror the online ones' shapes and shardings.
    abstract, shardings = self.inference_state(abstract_params, param_shardings)
    if self.reward_norm != "none":  # replicated scalars
      stats = jax.eval_shape(losses.empty_return_stats)
      abstract[REWARD_STATS] = stats
      shardings[REWARD_STATS] = jax.tree.map(lambda _: shd.replicated(mesh), stats)
    return abstract, shardings

  def init_extra(self, params: Any, abstract: Extra, **startup: Any) -> Extra:
    extra = {TARGET_Q: jax.tree.map(jnp.array, q_heads(params))}
    if REWARD_STATS in abstract:
      stats = startup.get(REWARD_STATS)
      extra[REWARD_STATS] = losses.empty_return_stats() if stats is None else stats
    return extra

  def make_loss(self, model: nn.Module, train: bool = True) -> LossFn:
    deterministic = self.deterministic(train)
    cfg = model.cfg

    def loss_fn(params: Any, extra: Extra, batch: Batch, rng: jax.Array, updates: jax.Array):
      del updates
      out = model.apply({"params": trunk_params(params)}, batch, deterministic=deterministic,
                        rngs={"dropout": rng})
      hidden = out.hidden
      if VALUE_TRUNK in params:
        hidden = model.apply({"params": params[VALUE_TRUNK]}, batch, deterministic=deterministic,
                             rngs={"dropout": jax.random.fold_in(rng, 1)}).hidden
      q1, q2, v = apply_heads(cfg, params, hidden)
      target_q1, target_q2 = apply_q_heads(cfg, extra[TARGET_Q], hidden)
      return losses.ilql_loss(
          out.logits, q1, q2, target_q1, target_q2, v, batch["decoder_target_tokens"],
          batch["decoder_loss_weights"], batch["decoder_rewards"],
          segment_ids=batch.get("decoder_segment_ids"),
          truncated=batch.get("decoder_truncated"), **self.terms)

    return loss_fn

  def make_prepare(self, model: nn.Module) -> PrepareFn:
    """With ``reward_norm``, the rewards are z-scored by the return statistics, which
    ``"running"`` first updates with the batch's returns."""
    del model
    running = self.reward_norm == "running"

    def prepare(extra: Extra, params: Any, batch: Batch, step: jax.Array, rng: jax.Array
                ) -> tuple[Extra, Batch, Metrics]:
      if REWARD_STATS not in extra:
        return extra, batch, {}
      stats = _observe(extra[REWARD_STATS], batch) if running else extra[REWARD_STATS]
      metrics = {"reward_norm_mu": stats["mean"], "reward_norm_sigma": losses.return_std(stats),
                 "reward_norm_count": stats["count"]}
      return {**extra, REWARD_STATS: stats}, _normalized(batch, stats), metrics

    return prepare

  def prepare_eval(self, extra: Extra, batch: Batch) -> Batch:
    return _normalized(batch, extra[REWARD_STATS]) if REWARD_STATS in extra else batch

  def finish(self, old: Extra, prepared: Extra, params: Any, finite: jax.Array,
             applied: jax.Array, updates: jax.Array) -> Extra:
    """Target heads move by Polyak averaging every ``polyak_every`` applied updates; a
    non-finite step keeps the old targets and statistics."""
    target = old[TARGET_Q]
    move = applied & (updates % self.polyak_every == 0)
    moved = losses.polyak_update(target, q_heads(params), self.polyak_rate)
    new = {**prepared, TARGET_Q: jax.tree.map(lambda a, b: jnp.where(move, a, b), moved, target)}
    return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

  def decode_kwargs(self, extra: Extra) -> dict[str, Any]:
    return {"target_heads": extra.get(TARGET_Q)}

  def inference_state(self, abstract_params: Any, param_shardings: Any
                      ) -> tuple[Extra, Extra]:
    return {TARGET_Q: q_heads(abstract_params)}, {TARGET_Q: q_heads(param_shardings)}
