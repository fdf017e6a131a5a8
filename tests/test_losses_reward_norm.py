"""Reward normalisation on episode returns: batch statistics, the parallel merge, r'_t."""
import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.losses import (batch_return_stats, empty_return_stats, merge_return_stats,
                           normalize_rewards, return_stats, return_std)

# Row 0 packs three episodes: segment 1 (dense rewards 1 + 2, env token between), segment 2
# (reward 4, truncated), segment 3 (reward -1 on its EOS). Row 1 is one episode (reward 0.5).
# Rewards on weight-0 positions (9.0) are never part of a return.
WEIGHTS = jnp.array([[0, 1, 0, 1, 0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]])
SEGMENTS = jnp.array([[1, 1, 1, 1, 2, 2, 2, 3, 3, 0], [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]])
TRUNCATED = jnp.array([[0, 0, 0, 0, 1, 1, 1, 0, 0, 0], [0] * 10])
REWARDS = jnp.array([[9.0, 1.0, 9.0, 2.0, 9.0, 0.0, 4.0, 9.0, -1.0, 9.0],
                     [9.0, 9.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 9.0]])
FINISHED = np.array([3.0, -1.0, 0.5])  # the returns of the episodes that ended


def assert_stats(stats, returns):
  np.testing.assert_allclose(stats["count"], len(returns))
  np.testing.assert_allclose(stats["mean"], np.mean(returns), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(stats["m2"], np.sum((returns - np.mean(returns)) ** 2), rtol=1e-5)
  np.testing.assert_allclose(return_std(stats), np.std(returns, ddof=1), rtol=1e-6)


def test_batch_stats_cover_finished_episodes_only():
  assert_stats(batch_return_stats(REWARDS, WEIGHTS, SEGMENTS, TRUNCATED), FINISHED)
  # Without truncation the segment-2 episode counts; without segments row 0 is one episode.
  assert_stats(batch_return_stats(REWARDS, WEIGHTS, SEGMENTS), np.array([3.0, 4.0, -1.0, 0.5]))
  assert_stats(batch_return_stats(REWARDS, WEIGHTS), np.array([6.0, 0.5]))


def test_running_merge_equals_numpy_over_every_return_seen():
  rng = np.random.default_rng(0)
  seen, stats = [], empty_return_stats()
  merge = jax.jit(lambda s, r, w: merge_return_stats(s, batch_return_stats(r, w)))
  for size in (3, 1, 5, 4):
    rewards = rng.normal(2.0, 3.0, (size, 6)).astype(np.float32)
    weights = (rng.random((size, 6)) < 0.7).astype(np.int32)
    weights[:, 0] = 1
    stats = merge(stats, rewards, weights)
    seen += list(np.where(weights > 0, rewards, 0.0).sum(axis=1))
    assert_stats(stats, np.array(seen))


def test_normalised_returns_are_z_scores_and_truncated_ones_only_scale():
  stats = return_stats(jnp.asarray(FINISHED), jnp.ones(3, bool))
  mu, sigma = np.mean(FINISHED), np.std(FINISHED, ddof=1)
  r = normalize_rewards(REWARDS, WEIGHTS, stats, SEGMENTS, TRUNCATED)
  action = np.asarray(WEIGHTS) > 0
  returns = [float(np.sum(np.where(action & (np.asarray(SEGMENTS) == s), r, 0.0)[row]))
             for row, s in ((0, 1), (0, 3), (1, 1), (0, 2))]
  np.testing.assert_allclose(returns[:3], (FINISHED - mu) / sigma, rtol=1e-6)
  np.testing.assert_allclose(returns[3], 4.0 / sigma, rtol=1e-6)  # -mu lies beyond the cut
  np.testing.assert_allclose(r[0, 1], 1.0 / sigma, rtol=1e-6)  # dense: -mu only at the end
  np.testing.assert_allclose(np.mean(returns[:3]), 0.0, atol=1e-6)
  np.testing.assert_allclose(np.std(returns[:3], ddof=1), 1.0, rtol=1e-6)


def test_fewer_than_two_returns_do_not_scale():
  empty = empty_return_stats()
  np.testing.assert_array_equal(normalize_rewards(REWARDS, WEIGHTS, empty), REWARDS)
  one = return_stats(jnp.array([2.5]), jnp.array([True]))
  assert float(return_std(one)) == 1.0
  r = normalize_rewards(REWARDS[1:], WEIGHTS[1:], one)
  np.testing.assert_allclose(r, REWARDS[1:].at[0, 4].add(-2.5), rtol=1e-6)
