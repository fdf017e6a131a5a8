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
  truncated: Optional[jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Return (Q[a_t], V(s_t), r_t) with Q = logits, V = logsumexp, r = Q[a] - gamma V(next)."""
  q_sa, v = target_logit_and_lse(logits, targets)
  next_index, done = next_state(weights, segment_ids, truncated)
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
  truncated: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """IQLearn loss: mean(-log pi(a_t|s_t)) + lam * mean(r_t^2).

  Q = logits, V(s) = logsumexp(logits), r_t = Q_t[a_t] - gamma (1 - done_t) V(next_t).
  lam may be traced; lam = 0 gives mle_loss bitwise. stop_grad_next blocks the gradient
  through V(next). ``truncated`` marks episodes that did not end: their last action
  bootstraps from V at the next position (see `next_state`). Metrics: nll, td_sq (mean r^2),
  reward_mean, v_mean (mean V(s_t)).
  """
  q_sa, v, r = _soft_values(logits, targets, weights, gamma, stop_grad_next, segment_ids,
                            truncated)
  nll = masked_mean(v - q_sa, weights)
  td_sq = masked_mean(jnp.square(r), weights)
  metrics = {
    "nll": nll,
    "td_sq": td_sq,
    "reward_mean": masked_mean(r, weights),
    "v_mean": masked_mean(v, weights),
  }
  return nll + lam * td_sq, metrics


def iqlearn_online_loss(
  expert_logits: jax.Array,
  expert_targets: jax.Array,
  expert_weights: jax.Array,
  policy_logits: jax.Array,
  policy_targets: jax.Array,
  policy_weights: jax.Array,
  *,
  lam: Scalar,
  gamma: Scalar,
  mix: Scalar,
  stop_grad_next: bool = False,
  expert_segment_ids: Optional[jax.Array] = None,
  policy_segment_ids: Optional[jax.Array] = None,
  expert_truncated: Optional[jax.Array] = None,
  policy_truncated: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Online IQLearn (Div99 ``iq_loss``, method.loss=value, chi^2) on expert E and policy P.

    loss  = -mean_E[r] + value + lam * mean_E[r^2],    r = Q[a] - gamma (1 - done) V(next)
    value = (1 - mix) mean_E[V(s) - gamma V(next)] + mix mean_P[V(s) - gamma V(next)]

  ``mix = 0.5`` is Div99's ``value`` (a mean over the concatenated halves) when E and P hold
  equal numbers of action tokens. Since V(s) - gamma V(next) = -log pi + r, the loss is
  computed as nll_E + mix * (value_P - value_E) + lam * td_sq_E (``mix = 0``: the offline loss).
  Metrics: those of ``iqlearn_loss`` (on E), value, value_expert, value_policy, policy_tokens.
  """
  q_e, v_e, r_e = _soft_values(expert_logits, expert_targets, expert_weights, gamma,
                               stop_grad_next, expert_segment_ids, expert_truncated)
  q_p, v_p, r_p = _soft_values(policy_logits, policy_targets, policy_weights, gamma,
                               stop_grad_next, policy_segment_ids, policy_truncated)
  nll = masked_mean(v_e - q_e, expert_weights)
  td_sq = masked_mean(jnp.square(r_e), expert_weights)
  value_expert = masked_mean(v_e - q_e + r_e, expert_weights)
  value_policy = masked_mean(v_p - q_p + r_p, policy_weights)
  metrics = {
    "nll": nll,
    "td_sq": td_sq,
    "reward_mean": masked_mean(r_e, expert_weights),
    "v_mean": masked_mean(v_e, expert_weights),
    "value": (1 - mix) * value_expert + mix * value_policy,
    "value_expert": value_expert,
    "value_policy": value_policy,
    "policy_tokens": jnp.sum(policy_weights.astype(jnp.float32)),
  }
  return nll + mix * (value_policy - value_expert) + lam * td_sq, metrics


def implied_rewards(
  logits: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  *,
  gamma: Scalar,
  segment_ids: Optional[jax.Array] = None,
  truncated: Optional[jax.Array] = None,
) -> jax.Array:
  """Per-token implied reward r_t = Q_t[a_t] - gamma (1 - done_t) V(next_t).

  Returns [batch, length] float32, 0 where weight is 0. ``truncated`` as in `iqlearn_loss`.
  """
  _, _, r = _soft_values(logits, targets, weights, gamma, False, segment_ids, truncated)
  return jnp.where(weights > 0, r, 0.0)
