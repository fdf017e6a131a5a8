"""The optax chain built from ``config.optimizer``."""
from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax


def learning_rate_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warm-up (update k uses lr * (k + 1) / warmup_steps), then constant,
  cosine or linear decay to ``lr * end_learning_rate_factor`` at ``total_steps``."""
  lr, warm = opt.learning_rate, opt.warmup_steps
  end = lr * opt.end_learning_rate_factor
  decay_steps = max(1, total_steps - warm)
  if opt.schedule == "constant":
    after = optax.constant_schedule(lr)
  elif opt.schedule == "cosine":
    after = optax.cosine_decay_schedule(lr, decay_steps, alpha=opt.end_learning_rate_factor)
  else:
    after = optax.linear_schedule(lr, end, decay_steps)
  if warm <= 0:
    return after
  warmup = optax.linear_schedule(lr / warm, lr, warm - 1) if warm > 1 else \
      optax.constant_schedule(lr)
  return optax.join_schedules([warmup, after], [warm])


def weight_decay_mask(params: Any, decay_embeddings: bool = False) -> Any:
  """True for matrices (kernels); False for norms, biases and 1-D tables.

  Embedding tables and the LM head are decayed only with ``decay_embeddings``.
  """
  def decide(path: tuple[Any, ...], x: jax.Array) -> bool:
    names = [getattr(k, "key", str(k)) for k in path]
    if x.ndim < 2 or names[-1] in ("bias", "scale"):
      return False
    is_embedding = names[-1] in ("embedding", "rel_embedding") or "lm_head" in names
    return decay_embeddings or not is_embedding
  return jax.tree_util.tree_map_with_path(decide, params)


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, learning-rate schedule) from ``config.optimizer``.

  Gradient accumulation in ``multisteps`` mode wraps the chain in
  ``optax.MultiSteps``; ``microbatch`` mode is handled inside the train step.
  """
  schedule = learning_rate_schedule(opt, total_steps)
  mask = lambda p: weight_decay_mask(p, opt.decay_embeddings)
  if opt.name == "adamw":
    core = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps,
                       weight_decay=opt.weight_decay, mask=mask)
  else:
    core = optax.adafactor(schedule, weight_decay_rate=opt.weight_decay or None,
                           weight_decay_mask=mask)
  parts = [optax.clip_by_global_norm(opt.grad_clip_norm)] if opt.grad_clip_norm > 0 else []
  tx = optax.chain(*parts, core)
  if opt.grad_accum_mode == "multisteps" and opt.grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=opt.grad_accum_steps)
  return tx, schedule
