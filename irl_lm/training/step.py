"""The jitted train and eval steps: model.apply + a loss + optax over one state pytree."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from irl_lm import losses
from irl_lm.models import VALUE_TRUNK, apply_heads, apply_q_heads, q_heads, trunk_params
from irl_lm.training.online import POLICY, make_policy_batch
from irl_lm.training.state import TrainState

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


def uses_value_heads(config: ml_collections.ConfigDict) -> bool:
  """Whether the run's algorithm trains value heads (and target Q heads): ILQL."""
  return config.loss.name == "ilql"


def uses_value_trunk(config: ml_collections.ConfigDict) -> bool:
  """Whether ILQL keeps its Q/V heads on a separate value trunk (``params['value_trunk']``)."""
  return uses_value_heads(config) and config.loss.ilql.separate_value_trunk


def reward_norm(config: ml_collections.ConfigDict) -> str:
  """ILQL's ``loss.ilql.reward_norm`` (``"none"`` for other losses)."""
  return config.loss.ilql.reward_norm if uses_value_heads(config) else "none"


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


def make_loss_fn(model: nn.Module, config: ml_collections.ConfigDict, train: bool = True
                 ) -> Callable[[Any, Any, Batch, jax.Array, jax.Array], tuple[jax.Array, Metrics]]:
  """``(params, target_q, batch, rng, updates) -> (loss, metrics)`` for ``config.loss.name``.

  ``updates`` counts the optimizer updates applied so far (with MultiSteps
  accumulation, one per ``grad_accum_steps`` steps): the lam warm-up runs on it.
  Dropout is active only with ``train`` and a non-zero ``model.dropout_rate``.
  ILQL's Q/V heads and target Q heads read the policy trunk's hidden states, or
  with ``separate_value_trunk`` those of ``params['value_trunk']``.
  """
  name = config.loss.name
  iq, il = config.loss.iqlearn, config.loss.ilql
  deterministic = not train or config.model.dropout_rate == 0.0

  def loss_fn(params, target_q, batch, rng, updates):
    out = model.apply({"params": trunk_params(params)}, batch, deterministic=deterministic,
                      rngs={"dropout": rng})
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
    seg = batch.get("decoder_segment_ids")
    trunc = batch.get("decoder_truncated")
    if name == "mle":
      return losses.mle_loss(out.logits, targets, weights, segment_ids=seg)
    if name == "iqlearn":
      lam = losses.lam_schedule(updates, lam=iq.lam, warmup_steps=iq.lam_warmup_steps)
      if POLICY in batch:  # online IQLearn: the train step added the policy batch
        policy = batch[POLICY]
        p_out = model.apply({"params": trunk_params(params)}, policy,
                            deterministic=deterministic,
                            rngs={"dropout": jax.random.fold_in(rng, 2)})
        loss, metrics = losses.iqlearn_online_loss(
            out.logits, targets, weights, p_out.logits, policy["decoder_target_tokens"],
            policy["decoder_loss_weights"], lam=lam, gamma=iq.gamma, mix=iq.online.mix,
            stop_grad_next=iq.stop_grad_next, expert_segment_ids=seg,
            policy_segment_ids=policy.get("decoder_segment_ids"), expert_truncated=trunc,
            policy_truncated=policy.get("decoder_truncated"))
      else:
        loss, metrics = losses.iqlearn_loss(out.logits, targets, weights, lam=lam,
                                            gamma=iq.gamma, stop_grad_next=iq.stop_grad_next,
                                            segment_ids=seg, truncated=trunc)
      return loss, {**metrics, "lam": lam}
    hidden = out.hidden
    if VALUE_TRUNK in params:
      hidden = model.apply({"params": params[VALUE_TRUNK]}, batch,
                           deterministic=deterministic,
                           rngs={"dropout": jax.random.fold_in(rng, 1)}).hidden
    q1, q2, v = apply_heads(model.cfg, params, hidden)
    target_q1, target_q2 = apply_q_heads(model.cfg, target_q, hidden)
    return losses.ilql_loss(
        out.logits, q1, q2, target_q1, target_q2, v, targets, weights,
        batch["decoder_rewards"], tau=il.tau, gamma=il.gamma, cql_weight=il.cql_weight,
        awac_weight=il.awac_weight, awac_beta=il.awac_beta, awac_clip=il.awac_clip,
        segment_ids=seg, truncated=trunc)

  return loss_fn


def _grads(loss_fn, state: TrainState, batch: Batch, rng: jax.Array, accum: int):
  """Loss, metrics and gradients.

  With ``accum`` > 1 the batch is split into microbatches whose results are
  weighted by their action-token counts, so the result equals the full-batch
  masked mean (every loss term is a mean over the same action positions).
  """
  updates = _update_count(state.opt_state)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if accum == 1:
    (loss, metrics), grads = grad_fn(state.params, state.target_q, batch, rng, updates)
    return loss, metrics, grads
  micro = jax.tree.map(lambda x: x.reshape((accum, x.shape[0] // accum) + x.shape[1:]), batch)

  def one(mb, i):
    (loss, metrics), grads = grad_fn(state.params, state.target_q, mb,
                                     jax.random.fold_in(rng, i), updates)
    n = jnp.sum(mb["decoder_loss_weights"] > 0).astype(jnp.float32)
    return jax.tree.map(lambda x: x * n, (loss, metrics, grads)), n

  def body(carry, xs):
    out, n = one(*xs)
    return jax.tree.map(jnp.add, carry, (out, n)), None

  zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(
      one, jax.tree.map(lambda x: x[0], micro), jnp.zeros((), jnp.int32)))
  (total, n), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
  return jax.tree.map(lambda x: x / jnp.maximum(n, 1.0), total)


def make_train_step(model: nn.Module, config: ml_collections.ConfigDict,
                    tx: optax.GradientTransformation, schedule: optax.Schedule
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """The pure train step.

  A step whose loss or gradient norm is not finite leaves params, optimizer
  state and target heads unchanged and bumps ``nonfinite`` (reset to 0 by the
  next finite step). ILQL target heads move by Polyak averaging every
  ``polyak_every`` applied optimizer updates. Online IQLearn first refreshes the
  replay buffer and draws the policy batch (``training.online``). With ILQL's
  ``reward_norm``, the rewards are normalised by the state's return statistics,
  which ``"running"`` first updates with the batch's returns (kept only when the
  step is finite).
  """
  loss_fn = make_loss_fn(model, config)
  opt = config.optimizer
  accum = opt.grad_accum_steps if opt.grad_accum_mode == "microbatch" else 1
  il = config.loss.ilql
  multisteps = opt.grad_accum_mode == "multisteps" and opt.grad_accum_steps > 1
  online = make_policy_batch(model, config) if config.loss.iqlearn.online.enable else None
  running = reward_norm(config) == "running"

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)
    if online is not None:
      replay, policy = online(state.replay, state.params, batch, state.step, rng)
      state, batch = state.replace(replay=replay), {**batch, POLICY: policy}
    stats = _observe(state.reward_stats, batch) if running else state.reward_stats
    if stats is not None:
      batch = _normalized(batch, stats)
    loss, metrics, grads = _grads(loss_fn, state, batch, rng, accum)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    target_q = state.target_q
    if target_q is not None:
      applied = tx.has_updated(opt_state) if multisteps else True
      count = _update_count(opt_state)
      move = applied & (count % il.polyak_every == 0)
      moved = losses.polyak_update(target_q, q_heads(params), il.polyak_rate)
      target_q = jax.tree.map(lambda a, b: jnp.where(move, a, b), moved, target_q)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = state.replace(
        step=state.step + 1, params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state), target_q=keep(target_q, state.target_q),
        nonfinite=jnp.where(finite, 0, state.nonfinite + 1),
        skipped=state.skipped + (~finite).astype(jnp.int32),
        reward_stats=keep(stats, state.reward_stats))
    if stats is not None:
      metrics.update(reward_norm_mu=stats["mean"], reward_norm_sigma=losses.return_std(stats),
                     reward_norm_count=stats["count"])
    metrics = {**metrics, "loss": loss, "grad_norm": grad_norm,
               "learning_rate": schedule(_update_count(state.opt_state)),
               "nonfinite": (~finite).astype(jnp.int32), "skipped_total": new_state.skipped,
               "nonfinite_streak": new_state.nonfinite}
    return new_state, metrics

  return train_step


def _update_count(opt_state: Any) -> jax.Array:
  """Number of optimizer updates applied so far (the learning-rate schedule's step)."""
  if isinstance(opt_state, optax.MultiStepsState):
    return opt_state.gradient_step
  has_count = lambda s: "count" in getattr(s, "_fields", ())
  counts = [s.count for s in jax.tree.leaves(opt_state, is_leaf=has_count) if has_count(s)]
  return counts[0]


def make_eval_step(model: nn.Module, config: ml_collections.ConfigDict
                   ) -> Callable[[TrainState, Batch], Metrics]:
  """Per-batch sums for the eval loss: ``{'loss_sum', 'weight_sum', <metric>_sum}``."""
  loss_fn = make_loss_fn(model, config, train=False)

  def eval_step(state: TrainState, batch: Batch) -> Metrics:
    if state.reward_stats is not None:
      batch = _normalized(batch, state.reward_stats)
    loss, metrics = loss_fn(state.params, state.target_q, batch, state.rng,
                            _update_count(state.opt_state))
    n = jnp.sum(batch["decoder_loss_weights"] > 0).astype(jnp.float32)
    out = {f"{k}_sum": v * n for k, v in metrics.items() if jnp.ndim(v) == 0}
    out.update(loss_sum=loss * n, weight_sum=n)
    return out

  return eval_step
