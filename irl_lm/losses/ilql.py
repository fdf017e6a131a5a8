"""ILQL loss (Snell et al. 2022) with the reductions of the public trlx implementation."""
from typing import Optional

import jax
import jax.numpy as jnp

from irl_lm.losses.masking import masked_mean
from irl_lm.losses.next_state import next_state, next_value
from irl_lm.losses.softmax import gather_target, target_logit_and_lse, token_nll


def ilql_loss(
  logits: jax.Array,
  q1: jax.Array,
  q2: jax.Array,
  target_q1: jax.Array,
  target_q2: jax.Array,
  v: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  rewards: jax.Array,
  *,
  tau: float,
  gamma: float,
  cql_weight: float,
  awac_weight: float,
  awac_beta: float = 0.0,
  awac_clip: float = 1e4,
  segment_ids: Optional[jax.Array] = None,
  truncated: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """ILQL: q_loss + v_loss + cql_weight * cql_loss + awac_weight * awac_loss.

  logits, q1, q2, target_q1, target_q2: [B, T, V]; v, targets, weights, rewards: [B, T].
  Qhat_t = min(target_q1, target_q2)[a_t] (no gradient reaches the target heads);
  V'_t = stop_gradient(v[next_t]) * (1 - done_t); y_t = r_t + gamma V'_t.
  q_loss = sum_i mean((Q_i[a_t] - y_t)^2); v_loss = mean(|tau - 1[Qhat < v]| (Qhat - v)^2);
  cql_loss = sum_i mean(CE(Q_i, a_t)); awac_loss = mean(w_t CE(logits, a_t)) with
  w_t = stop_gradient(min(exp(awac_beta (Qhat_t - v_t)), awac_clip)); awac_clip only guards
  against overflow. ``truncated`` marks episodes that did not end: their last action
  bootstraps from v at the next position (see `next_state`). Metrics: every term plus
  q_mean (online heads), target_q_mean, v_mean, advantage_mean (Qhat - v) and
  awac_weight_mean.
  """
  q1_sa, q1_lse = target_logit_and_lse(q1, targets)
  q2_sa, q2_lse = target_logit_and_lse(q2, targets)
  q_hat = jnp.minimum(gather_target(target_q1, targets), gather_target(target_q2, targets))
  q_hat = jax.lax.stop_gradient(q_hat)
  v = v.astype(jnp.float32)

  next_index, done = next_state(weights, segment_ids, truncated)
  v_next = jax.lax.stop_gradient(next_value(v, next_index, done))
  q_target = rewards.astype(jnp.float32) + gamma * v_next
  q_loss = masked_mean(jnp.square(q1_sa - q_target), weights)
  q_loss += masked_mean(jnp.square(q2_sa - q_target), weights)

  expectile = jnp.abs(tau - (q_hat < v).astype(jnp.float32))
  v_loss = masked_mean(expectile * jnp.square(q_hat - v), weights)

  cql_loss = masked_mean(q1_lse - q1_sa, weights)
  cql_loss += masked_mean(q2_lse - q2_sa, weights)

  advantage = q_hat - v
  awac_w = jax.lax.stop_gradient(jnp.minimum(jnp.exp(awac_beta * advantage), awac_clip))
  awac_loss = masked_mean(awac_w * token_nll(logits, targets), weights)

  loss = q_loss + v_loss + cql_weight * cql_loss + awac_weight * awac_loss
  metrics = {
    "q_loss": q_loss,
    "v_loss": v_loss,
    "cql_loss": cql_loss,
    "awac_loss": awac_loss,
    "q_mean": masked_mean(0.5 * (q1_sa + q2_sa), weights),
    "target_q_mean": masked_mean(q_hat, weights),
    "v_mean": masked_mean(v, weights),
    "advantage_mean": masked_mean(advantage, weights),
    "awac_weight_mean": masked_mean(awac_w, weights),
  }
  return loss, metrics
