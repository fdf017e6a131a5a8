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
from irl_lm.models import apply_heads, apply_q_heads, q_heads, trunk_params
from irl_lm.training.state import TrainState

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


def uses_value_heads(config: ml_collections.ConfigDict) -> bool:
  """Whether the run's algorithm trains value heads (and target Q heads): ILQL."""
  return config.loss.name == "ilql"


def make_loss_fn(model: nn.Module, config: ml_collections.ConfigDict, train: bool = True
                 ) -> Callable[[Any, Any, Batch, jax.Array, jax.Array], tuple[jax.Array, Metrics]]:
  """``(params, target_q, batch, rng, updates) -> (loss, metrics)`` for ``config.loss.name``.

  ``updates`` counts the optimizer updates applied so far (with MultiSteps
  accumulation, one per ``grad_accum_steps`` steps): the lam warm-up runs on it.
  Dropout is active only with ``train`` and a non-zero ``model.dropout_rate``.
  """
  name = config.loss.name
  iq, il = config.loss.iqlearn, config.loss.ilql
  deterministic = not train or config.model.dropout_rate == 0.0

  def loss_fn(params, target_q, batch, rng, updates):
    out = model.apply({"params": trunk_params(params)}, batch, deterministic=deterministic,
                      rngs={"dropout": rng})
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
    seg = batch.get("decoder_segment_ids")
    if name == "mle":
      return losses.mle_loss(out.logits, targets, weights, segment_ids=seg)
    if name == "iqlearn":
      lam = losses.lam_schedule(updates, lam=iq.lam, warmup_steps=iq.lam_warmup_steps)
      loss, metrics = losses.iqlearn_loss(out.logits, targets, weights, lam=lam, gamma=iq.gamma,
                                          stop_grad_next=iq.stop_grad_next, segment_ids=seg)
      return loss, {**metrics, "lam": lam}
    q1, q2, v = apply_heads(model.cfg, params, out.hidden)
    target_q1, target_q2 = apply_q_heads(model.cfg, target_q, out.hidden)
    return losses.ilql_loss(
        out.logits, q1, q2, target_q1, target_q2, v, targets, weights,
        batch["decoder_rewards"], tau=il.tau, gamma=il.gamma, cql_weight=il.cql_weight,
        awac_weight=il.awac_weight, awac_beta=il.awac_beta, awac_clip=il.awac_clip,
        segment_ids=seg)

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
  ``polyak_every`` applied optimizer updates.
  """
  loss_fn = make_loss_fn(model, config)
  opt = config.optimizer
  accum = opt.grad_accum_steps if opt.grad_accum_mode == "microbatch" else 1
  il = config.loss.ilql
  multisteps = opt.grad_accum_mode == "multisteps" and opt.grad_accum_steps > 1

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)
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
        skipped=state.skipped + (~finite).astype(jnp.int32))
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
    loss, metrics = loss_fn(state.params, state.target_q, batch, state.rng,
                            _update_count(state.opt_state))
    n = jnp.sum(batch["decoder_loss_weights"] > 0).astype(jnp.float32)
    out = {f"{k}_sum": v * n for k, v in metrics.items() if jnp.ndim(v) == 0}
    out.update(loss_sum=loss * n, weight_sum=n)
    return out

  return eval_step
