"""IQLearn for language models (chi-squared regulariser, MLE form) and its implied rewards."""
from typing import Optional, Union

import jax
import jax.numpy as jnp

from irl_lm.losses.masking import masked_mean
from irl_lm.losses.next_state import next_state, next_value
from irl_lm.losses.softmax import target_logit_and_lse

Scalar = Union[float, jax.Array]


def _soft_values(
  logits: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  gamma: Scalar,
  stop_grad_next: bool,
  segment_ids: Optional[jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Return (Q[a_t], V(s_t), r_t) with Q = logits, V = logsumexp, r = Q[a] - gamma V(next)."""
  q_sa, v = target_logit_and_lse(logits, targets)
  next_index, done = next_state(weights, segment_ids)
  v_next = next_value(v, next_index, done)
  if stop_grad_next:
    v_next = jax.lax.stop_gradient(v_next)
  return q_sa, v, q_sa - gamma * v_next


def iqlearn_loss(
  logits: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  *,
  lam: Scalar,
  gamma: Scalar,
  stop_grad_next: bool = False,
  segment_ids: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """IQLearn loss: mean(-log pi(a_t|s_t)) + lam * mean(r_t^2).

  Q = logits, V(s) = logsumexp(logits), r_t = Q_t[a_t] - gamma (1 - done_t) V(next_t).
  lam may be traced; lam = 0 gives mle_loss bitwise. stop_grad_next blocks the gradient
  through V(next). Metrics: nll, td_sq (mean r^2), reward_mean, v_mean (mean V(s_t)).
  """
  q_sa, v, r = _soft_values(logits, targets, weights, gamma, stop_grad_next, segment_ids)
  nll = masked_mean(v - q_sa, weights)
  td_sq = masked_mean(jnp.square(r), weights)
  metrics = {
    "nll": nll,
    "td_sq": td_sq,
    "reward_mean": masked_mean(r, weights),
    "v_mean": masked_mean(v, weights),
  }
  return nll + lam * td_sq, metrics


def implied_rewards(
  logits: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  *,
  gamma: Scalar,
  segment_ids: Optional[jax.Array] = None,
) -> jax.Array:
  """Per-token implied reward r_t = Q_t[a_t] - gamma (1 - done_t) V(next_t).

  Returns [batch, length] float32, 0 where weight is 0.
  """
  _, _, r = _soft_values(logits, targets, weights, gamma, False, segment_ids)
  return jnp.where(weights > 0, r, 0.0)
