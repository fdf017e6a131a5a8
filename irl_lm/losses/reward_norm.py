"""Reward normalisation on episode returns: trlx's z-scored returns, extended to dense rewards.

An episode's return R is the sum of its rewards on action positions. With return
statistics (mu, sigma), ``r'_t = (r_t - mu * 1[t ends the episode]) / sigma`` turns every
finished episode's return into ``(R - mu) / sigma``. Statistics are a dict of float32
``count``, ``mean`` and ``m2`` (sum of squared deviations) over finished episodes; episodes
that did not end (``truncated``) are only scaled, since their -mu lies beyond the cut.
"""
from typing import Optional

import jax
import jax.numpy as jnp

from irl_lm.losses.next_state import next_state

ReturnStats = dict[str, jax.Array]


def empty_return_stats() -> ReturnStats:
  """Statistics of no returns; they normalise nothing (mu = 0, sigma = 1)."""
  zero = jnp.zeros((), jnp.float32)
  return {"count": zero, "mean": zero, "m2": zero}


def _episode_ends(
  weights: jax.Array, segment_ids: Optional[jax.Array], truncated: Optional[jax.Array]
) -> jax.Array:
  """True at the last action of each episode that ended (not truncated)."""
  _, done = next_state(weights, segment_ids)
  ends = (done > 0) & (weights > 0)
  return ends if truncated is None else ends & (truncated == 0)


def _running_returns(
  rewards: jax.Array, weights: jax.Array, segment_ids: Optional[jax.Array]
) -> jax.Array:
  """Sum of the action rewards of each position's segment up to and including it."""
  x = jnp.where(weights > 0, rewards.astype(jnp.float32), 0.0)
  total = jnp.cumsum(x, axis=1)
  if segment_ids is None:
    return total
  pos = jnp.broadcast_to(jnp.arange(x.shape[1], dtype=jnp.int32), x.shape)
  starts = jnp.concatenate(
    [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
  )
  first = jax.lax.cummax(jnp.where(starts, pos, 0), axis=1)
  return total - jnp.take_along_axis(total - x, first, axis=1)


def return_stats(returns: jax.Array, mask: jax.Array) -> ReturnStats:
  """Statistics of the returns where ``mask`` is true (two-pass mean and m2, float32)."""
  returns = returns.astype(jnp.float32)
  count = jnp.sum(mask.astype(jnp.float32))
  mean = jnp.sum(jnp.where(mask, returns, 0.0)) / jnp.maximum(count, 1.0)
  m2 = jnp.sum(jnp.where(mask, jnp.square(returns - mean), 0.0))
  return {"count": count, "mean": mean, "m2": m2}


def batch_return_stats(
  rewards: jax.Array,
  weights: jax.Array,
  segment_ids: Optional[jax.Array] = None,
  truncated: Optional[jax.Array] = None,
) -> ReturnStats:
  """Statistics of the returns of the episodes of a [batch, length] batch that ended."""
  returns = _running_returns(rewards, weights, segment_ids)
  return return_stats(returns, _episode_ends(weights, segment_ids, truncated))


def merge_return_stats(a: ReturnStats, b: ReturnStats) -> ReturnStats:
  """Statistics of the union of two sets of returns (Chan et al.'s parallel merge)."""
  count = a["count"] + b["count"]
  share = b["count"] / jnp.maximum(count, 1.0)
  delta = b["mean"] - a["mean"]
  mean = a["mean"] + delta * share
  m2 = a["m2"] + b["m2"] + jnp.square(delta) * a["count"] * share
  return {"count": count, "mean": mean, "m2": m2}


def return_std(stats: ReturnStats) -> jax.Array:
  """sigma: the unbiased standard deviation plus float32 eps (as trlx); 1 below two returns."""
  var = stats["m2"] / jnp.maximum(stats["count"] - 1.0, 1.0)
  return jnp.where(stats["count"] >= 2, jnp.sqrt(var) + jnp.finfo(jnp.float32).eps, 1.0)


def normalize_rewards(
  rewards: jax.Array,
  weights: jax.Array,
  stats: ReturnStats,
  segment_ids: Optional[jax.Array] = None,
  truncated: Optional[jax.Array] = None,
) -> jax.Array:
  """r'_t = (r_t - mu * 1[t ends a finished episode]) / sigma, float32 [batch, length]."""
  ends = _episode_ends(weights, segment_ids, truncated)
  shifted = rewards.astype(jnp.float32) - jnp.where(ends, stats["mean"], 0.0)
  return shifted / return_std(stats)
