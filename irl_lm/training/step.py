"""The jitted train and eval steps: an algorithm's loss + optax over one state pytree.

The steps know no algorithm: ``Algorithm`` supplies the loss, what happens to the
batch and to its own state (``TrainState.extra``) before and after the update.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from irl_lm.algorithms import Algorithm
from irl_lm.algorithms.base import Batch, LossFn, Metrics
from irl_lm.models import lora
from irl_lm.training.state import TrainState


def _grads(loss_fn: LossFn, params: Any, frozen: Any, state: TrainState, extra: dict[str, Any],
           batch: Batch, rng: jax.Array, accum: int):
  """Loss, metrics and gradients.

  With ``accum`` > 1 the batch is split into microbatches whose results are
  weighted by their action-token counts, so the result equals the full-batch
  masked mean (every loss term is a mean over the same action positions).
  """
  updates = _update_count(state.opt_state)
  grad_fn = jax.value_and_grad(lambda p, *a: loss_fn(lora.combine(p, frozen), *a),
                               has_aux=True)
  if accum == 1:
    (loss, metrics), grads = grad_fn(params, extra, batch, rng, updates)
    return loss, metrics, grads
  micro = jax.tree.map(lambda x: x.reshape((accum, x.shape[0] // accum) + x.shape[1:]), batch)

  def one(mb, i):
    (loss, metrics), grads = grad_fn(params, extra, mb, jax.random.fold_in(rng, i), updates)
    n = jnp.sum(mb["decoder_loss_weights"] > 0).astype(jnp.float32)
    return jax.tree.map(lambda x: x * n, (loss, metrics, grads)), n

  def body(carry, xs):
    out, n = one(*xs)
    return jax.tree.map(jnp.add, carry, (out, n)), None

  zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(
      one, jax.tree.map(lambda x: x[0], micro), jnp.zeros((), jnp.int32)))
  (total, n), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(accum)))
  return jax.tree.map(lambda x: x / jnp.maximum(n, 1.0), total)


def make_train_step(model: nn.Module, algorithm: Algorithm, optimizer: ml_collections.ConfigDict,
                    tx: optax.GradientTransformation, schedule: optax.Schedule
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """The pure train step of ``algorithm`` with the optimizer ``tx`` (``optimizer``: its config).

  The algorithm first prepares the batch and its state (online IQLearn's policy
  samples, ILQL's reward normalisation), then the loss's gradients update the
  parameters, then the algorithm updates its state (ILQL's Polyak step). A step
  whose loss or gradient norm is not finite leaves params and optimizer state
  unchanged (the algorithm decides for its own state) and bumps ``nonfinite``
  (reset to 0 by the next finite step).
  """
  loss_fn = algorithm.make_loss(model)
  prepare = algorithm.make_prepare(model)
  accum = optimizer.grad_accum_steps if optimizer.grad_accum_mode == "microbatch" else 1
  multisteps = optimizer.grad_accum_mode == "multisteps" and optimizer.grad_accum_steps > 1

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)
    extra, batch, prep_metrics = prepare(state.extra, state.params, batch, state.step, rng)
    trainable, frozen = lora.partition(state.params, model.cfg)
    loss, metrics, grads = _grads(loss_fn, trainable, frozen, state, extra, batch, rng, accum)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update(_):
      updates, opt_state = tx.update(grads, state.opt_state, trainable)
      return optax.apply_updates(trainable, updates), opt_state
    # A cond, not a select of new and old: the update then writes the donated buffers in
    # place, where a select kept the old moments alive beside the new (a copy of each).
    trained, opt_state = jax.lax.cond(finite, update, lambda _: (trainable, state.opt_state),
                                      None)
    params = lora.combine(trained, frozen)
    applied = tx.has_updated(opt_state) if multisteps else jnp.bool_(True)
    extra = algorithm.finish(state.extra, extra, params, finite, applied,
                             _update_count(opt_state))
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, extra=extra,
        nonfinite=jnp.where(finite, 0, state.nonfinite + 1),
        skipped=state.skipped + (~finite).astype(jnp.int32))
    metrics = {**metrics, **prep_metrics, "loss": loss, "grad_norm": grad_norm,
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


def make_eval_step(model: nn.Module, algorithm: Algorithm
                   ) -> Callable[[TrainState, Batch], Metrics]:
  """Per-batch sums for the eval loss: ``{'loss_sum', 'weight_sum', <metric>_sum}``."""
  loss_fn = algorithm.make_loss(model, train=False)

  def eval_step(state: TrainState, batch: Batch) -> Metrics:
    batch = algorithm.prepare_eval(state.extra, batch)
    loss, metrics = loss_fn(state.params, state.extra, batch, state.rng,
                            _update_count(state.opt_state))
    n = jnp.sum(batch["decoder_loss_weights"] > 0).astype(jnp.float32)
    out = {f"{k}_sum": v * n for k, v in metrics.items() if jnp.ndim(v) == 0}
    out.update(loss_sum=loss * n, weight_sum=n)
    return out

  return eval_step
