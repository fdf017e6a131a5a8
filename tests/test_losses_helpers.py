"""Next-state indexing, masked means, the lam schedule and the Polyak update."""
import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.losses import lam_schedule, masked_mean, next_state, next_value, polyak_update


def test_next_state_skips_env_tokens_in_multi_turn_row():
  weights = jnp.array([[0, 1, 1, 0, 0, 1, 1, 0]])
  index, done = next_state(weights)
  np.testing.assert_array_equal(index, [[1, 2, 5, 5, 5, 6, 6, 7]])
  np.testing.assert_array_equal(done, [[0, 0, 0, 0, 0, 0, 1, 1]])
  assert done.dtype == jnp.float32


def test_next_state_respects_segment_boundaries():
  weights = jnp.array([[0, 1, 1, 0, 1, 1, 0, 0]])
  segments = jnp.array([[1, 1, 1, 2, 2, 2, 0, 0]])
  index, done = next_state(weights, segments)
  np.testing.assert_array_equal(index, [[1, 2, 2, 4, 5, 5, 6, 7]])
  np.testing.assert_array_equal(done, [[0, 0, 1, 0, 0, 1, 1, 1]])
  # Without segment ids the same row is one episode: position 2 continues into position 4.
  index, done = next_state(weights)
  assert int(index[0, 2]) == 4 and float(done[0, 2]) == 0.0


def test_next_state_action_at_array_end_and_rows_are_independent():
  weights = jnp.array([[1, 0, 1, 1], [0, 0, 0, 0]])
  index, done = next_state(weights)
  np.testing.assert_array_equal(index, [[2, 2, 3, 3], [0, 1, 2, 3]])
  np.testing.assert_array_equal(done, [[0, 0, 0, 1], [1, 1, 1, 1]])


def test_truncated_last_action_bootstraps_from_the_next_position():
  weights = jnp.array([[0, 1, 1, 0, 0, 1, 1, 0]])
  index, done = next_state(weights, truncated=jnp.ones_like(weights))
  np.testing.assert_array_equal(index, [[1, 2, 5, 5, 5, 6, 7, 7]])
  np.testing.assert_array_equal(done, [[0, 0, 0, 0, 0, 0, 0, 1]])


def test_truncation_is_per_segment_and_never_crosses_into_another():
  weights = jnp.array([[0, 1, 0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 1, 0, 0]])
  segments = jnp.array([[1, 1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 2, 2, 2, 0, 0]])
  truncated = jnp.array([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0]])
  index, done = next_state(weights, segments, truncated)
  # Row 0: segment 1 bootstraps into its slot (position 2); segment 2 ended.
  np.testing.assert_array_equal(index, [[1, 2, 2, 4, 4, 5, 6, 7], [1, 2, 2, 4, 5, 5, 6, 7]])
  np.testing.assert_array_equal(done, [[0, 0, 1, 0, 1, 1, 1, 1], [0, 0, 1, 0, 0, 1, 1, 1]])
  # Row 1: both last actions (2 and 5) have no slot in their segment, so they stay terminal.


def test_truncated_action_at_array_end_stays_terminal_and_zeros_change_nothing():
  weights = jnp.array([[1, 0, 1, 1], [0, 1, 1, 0]])
  index, done = next_state(weights, truncated=jnp.array([[1, 1, 1, 1], [0, 0, 0, 0]]))
  np.testing.assert_array_equal(index, [[2, 2, 3, 3], [1, 2, 2, 3]])
  np.testing.assert_array_equal(done, [[0, 0, 0, 1], [0, 0, 1, 1]])
  segments = jnp.array([[1, 1, 2, 2], [1, 1, 1, 0]])
  for seg in (None, segments):
    plain = next_state(weights, seg)
    zeros = next_state(weights, seg, jnp.zeros_like(weights))
    for a, b in zip(plain, zeros):
      np.testing.assert_array_equal(a, b)


def test_next_value_is_exactly_zero_when_done():
  values = jnp.array([[1.0, 2.0, jnp.inf, jnp.nan]])
  index = jnp.array([[1, 3, 2, 3]])
  done = jnp.array([[0.0, 1.0, 0.0, 1.0]])
  np.testing.assert_array_equal(next_value(values, index, done), [[2.0, 0.0, jnp.inf, 0.0]])


def test_masked_mean_divides_by_at_least_one_and_ignores_non_finite_masked_values():
  x = jnp.array([[1.0, jnp.nan, 3.0], [jnp.inf, 5.0, 0.5]])
  w = jnp.array([[1, 0, 1], [0, 1, 0]])
  np.testing.assert_allclose(masked_mean(x, w), 3.0)
  assert float(masked_mean(x, jnp.zeros_like(w))) == 0.0


def test_lam_schedule_constant_and_linear_warmup_with_traced_step():
  assert float(lam_schedule(0, lam=0.1, warmup_steps=0)) == np.float32(0.1)
  assert float(lam_schedule(1000, lam=0.1, warmup_steps=0)) == np.float32(0.1)
  sched = jax.jit(lambda s: lam_schedule(s, lam=0.1, warmup_steps=10))
  got = [float(sched(jnp.int32(s))) for s in (0, 5, 10, 20)]
  np.testing.assert_allclose(got, [0.0, 0.05, 0.1, 0.1], rtol=1e-6)
  assert sched(jnp.int32(3)).dtype == jnp.float32


def test_polyak_update_on_pytree_keeps_dtypes_and_jits():
  target = {"q1": jnp.array([0.0, 4.0]), "q2": {"w": jnp.ones((2,), jnp.bfloat16)}}
  online = {"q1": jnp.array([8.0, 0.0]), "q2": {"w": jnp.full((2,), 5.0, jnp.bfloat16)}}
  new = polyak_update(target, online, 0.25)
  np.testing.assert_allclose(new["q1"], [2.0, 3.0])
  np.testing.assert_allclose(new["q2"]["w"].astype(jnp.float32), [2.0, 2.0])
  assert new["q2"]["w"].dtype == jnp.bfloat16
  jitted = jax.jit(polyak_update)(target, online, jnp.float32(0.25))
  np.testing.assert_allclose(jitted["q1"], [2.0, 3.0])
  assert jitted["q2"]["w"].dtype == jnp.bfloat16
