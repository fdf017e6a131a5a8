"""GAIL for language (Ho & Ermon 2016): a token-level discriminator between demonstrations
and the policy's samples, and a policy gradient on the discriminator's reward."""
from typing import Optional, Union

import jax
import jax.numpy as jnp

from irl_lm.losses.masking import masked_mean

Scalar = Union[float, jax.Array]


def returns_to_go(rewards: jax.Array, weights: jax.Array, gamma: Scalar) -> jax.Array:
  """``G_t = sum_{k >= t} gamma^(k - t) r_k`` over each row's action positions (weights > 0).

  Rows hold one episode whose actions are contiguous (the policy's samples); positions
  that are not actions contribute nothing, and their ``G`` is 0.
  """
  acts = weights > 0
  r = jnp.where(acts, rewards, 0.0).astype(jnp.float32)

  def back(g, x):
    r_t, a_t = x
    g = jnp.where(a_t, r_t + gamma * g, g)
    return g, jnp.where(a_t, g, 0.0)

  _, out = jax.lax.scan(back, jnp.zeros(r.shape[0], jnp.float32), (r.T, acts.T), reverse=True)
  return out.T


def gail_loss(
  expert_disc: jax.Array,
  expert_weights: jax.Array,
  policy_disc: jax.Array,
  policy_logp: jax.Array,
  policy_values: jax.Array,
  policy_weights: jax.Array,
  *,
  gamma: Scalar,
  value_weight: Scalar = 0.5,
  disc_weight: Scalar = 1.0,
  kl: Optional[jax.Array] = None,
  kl_weight: Scalar = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The GAIL loss and its terms; every input is [batch, length], aligned with the actions.

  Args:
    expert_disc / policy_disc: the discriminator's logit ``d(s_t, a_t)`` for each
      demonstrated / sampled action; the discriminator learns ``sigmoid(d)`` = the
      probability that an action is the expert's (logistic loss, expert label 1).
    policy_logp: ``log pi(a_t | s_t)`` of the sampled actions (differentiable).
    policy_values: the baseline ``V(s_t)`` of the sampled states.
    gamma: discount of the returns.
    value_weight, disc_weight: weights of the baseline's squared error and the
      discriminator's loss in the total.
    kl, kl_weight: per-token ``log pi(a_t) - log pi_start(a_t)``; the reward becomes
      ``d - kl_weight * kl`` (a KL penalty to the starting policy).

  The policy's reward is the discriminator logit ``d = log D - log(1 - D)`` (held
  fixed for the policy update), its advantage ``G_t - V(s_t)`` with returns-to-go
  ``G``; the policy term is REINFORCE, ``-mean(advantage * log pi(a_t | s_t))``.
  """
  d_loss = (masked_mean(jax.nn.softplus(-expert_disc), expert_weights)
            + masked_mean(jax.nn.softplus(policy_disc), policy_weights))
  rewards = jax.lax.stop_gradient(policy_disc)
  if kl is not None:
    rewards = rewards - kl_weight * jax.lax.stop_gradient(kl)
  returns = returns_to_go(rewards, policy_weights, gamma)
  advantages = jax.lax.stop_gradient(returns - policy_values)
  pg_loss = -masked_mean(advantages * policy_logp, policy_weights)
  value_loss = 0.5 * masked_mean(jnp.square(policy_values - returns), policy_weights)
  loss = pg_loss + value_weight * value_loss + disc_weight * d_loss
  metrics = {
      "disc_loss": d_loss, "pg_loss": pg_loss, "value_loss": value_loss,
      "reward_expert": masked_mean(expert_disc, expert_weights),
      "reward_policy": masked_mean(policy_disc, policy_weights),
      "disc_accuracy": 0.5 * (masked_mean(expert_disc > 0, expert_weights)
                              + masked_mean(policy_disc < 0, policy_weights)),
      "return_mean": masked_mean(returns, policy_weights),
      "policy_logp": masked_mean(policy_logp, policy_weights),
  }
  if kl is not None:
    metrics["kl_start"] = masked_mean(kl, policy_weights)
  return loss, metrics
