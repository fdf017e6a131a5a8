"""MLE, IQLearn and implied rewards: closed forms, gradients, masking and dtypes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm.losses import implied_rewards, iqlearn_loss, mle_loss

LN2, LN3, LN4, LN5 = (math.log(k) for k in (2, 3, 4, 5))
GAMMA, LAM = 0.9, 0.3

# One row: prompt, action, environment token, action, padding.
LOGITS = jnp.array(
  [[[5.0, 5.0, 5.0], [LN2, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, LN3, 0.0], [7.0, 0.0, 0.0]]]
)
TARGETS = jnp.array([[2, 1, 0, 1, 0]])
WEIGHTS = jnp.array([[0, 1, 0, 1, 0]])
# Action 1: Q = 0, V = ln 4, next state is position 3 (V = ln 5).
# Action 3: Q = ln 3, V = ln 5, terminal.
R1, R3 = -GAMMA * LN5, LN3
NLL = (LN4 + (LN5 - LN3)) / 2
TD_SQ = (R1**2 + R3**2) / 2


def random_batch(seed: int, batch: int = 2, length: int = 7, vocab: int = 5):
  k1, k2 = jax.random.split(jax.random.key(seed))
  logits = 2.0 * jax.random.normal(k1, (batch, length, vocab))
  targets = jax.random.randint(k2, (batch, length), 0, vocab)
  weights = jnp.array([[0, 1, 1, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0, 0]])[:batch]
  return logits, targets, weights


def test_mle_closed_form():
  loss, m = mle_loss(LOGITS, TARGETS, WEIGHTS)
  np.testing.assert_allclose(loss, NLL, rtol=1e-6)
  np.testing.assert_allclose(m["nll"], NLL, rtol=1e-6)
  assert float(m["accuracy"]) == 0.5
  assert float(m["num_tokens"]) == 2.0


def test_iqlearn_closed_form_skips_env_token():
  loss, m = iqlearn_loss(LOGITS, TARGETS, WEIGHTS, lam=LAM, gamma=GAMMA)
  np.testing.assert_allclose(loss, NLL + LAM * TD_SQ, rtol=1e-6)
  np.testing.assert_allclose(m["nll"], NLL, rtol=1e-6)
  np.testing.assert_allclose(m["td_sq"], TD_SQ, rtol=1e-6)
  np.testing.assert_allclose(m["reward_mean"], (R1 + R3) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["v_mean"], (LN4 + LN5) / 2, rtol=1e-6)


def test_implied_rewards_closed_form():
  r = implied_rewards(LOGITS, TARGETS, WEIGHTS, gamma=GAMMA)
  np.testing.assert_allclose(r, [[0.0, R1, 0.0, R3, 0.0]], rtol=1e-6, atol=1e-7)


def test_implied_rewards_of_packed_row_equal_separate_rows():
  logits, targets, _ = random_batch(0, batch=1, length=7)
  weights = jnp.array([[0, 1, 1, 0, 1, 1, 0]])
  segments = jnp.array([[1, 1, 1, 2, 2, 2, 0]])
  packed = implied_rewards(logits, targets, weights, gamma=GAMMA, segment_ids=segments)
  first = implied_rewards(logits[:, :3], targets[:, :3], weights[:, :3], gamma=GAMMA)
  second = implied_rewards(logits[:, 3:6], targets[:, 3:6], weights[:, 3:6], gamma=GAMMA)
  np.testing.assert_allclose(packed[:, :6], jnp.concatenate([first, second], 1), rtol=1e-6)
  unpacked = implied_rewards(logits, targets, weights, gamma=GAMMA)
  assert not np.allclose(packed[0, 2], unpacked[0, 2])


@pytest.mark.parametrize("jit", [False, True])
def test_iqlearn_lam_zero_equals_mle_bitwise(jit):
  logits, targets, weights = random_batch(1)

  def both(lam):
    mle, _ = mle_loss(logits, targets, weights)
    iq, _ = iqlearn_loss(logits, targets, weights, lam=lam, gamma=0.99)
    return mle, iq

  mle, iq = (jax.jit(both) if jit else both)(jnp.float32(0.0))
  assert mle.dtype == iq.dtype == jnp.float32
  assert np.asarray(mle).tobytes() == np.asarray(iq).tobytes()
  _, iq_pos = both(jnp.float32(0.5))
  assert float(iq_pos) > float(mle)


def test_iqlearn_stop_grad_next_blocks_gradient_through_next_value():
  def td_sq(logits, stop):
    _, metrics = iqlearn_loss(
      logits, TARGETS, WEIGHTS, lam=LAM, gamma=GAMMA, stop_grad_next=stop
    )
    return metrics["td_sq"]

  onehot = jnp.array([0.0, 1.0, 0.0])
  softmax3 = jnp.array([1.0, 3.0, 1.0]) / 5.0
  # td_sq = (r1^2 + r3^2) / 2 with r1 = Q1[a] - gamma V(s3), r3 = Q3[a] (terminal).
  blocked = jax.grad(td_sq)(LOGITS, True)[0, 3]
  np.testing.assert_allclose(blocked, R3 * onehot, rtol=1e-6, atol=1e-7)
  full = jax.grad(td_sq)(LOGITS, False)[0, 3]
  np.testing.assert_allclose(full, R3 * onehot - GAMMA * R1 * softmax3, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("stop_grad_next", [False, True])
def test_masked_positions_change_neither_loss_nor_gradients(stop_grad_next):
  logits, targets, weights = random_batch(2)
  other_logits, other_targets, _ = random_batch(3)
  keep = weights[..., None] > 0
  logits2 = jnp.where(keep, logits, 10.0 * other_logits)
  targets2 = jnp.where(weights > 0, targets, other_targets)
  segments = jnp.array([[1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 1, 1, 0]])

  for fn in (
    lambda lg, tg: mle_loss(lg, tg, weights, segment_ids=segments),
    lambda lg, tg: iqlearn_loss(
      lg, tg, weights, lam=0.7, gamma=0.95, stop_grad_next=stop_grad_next,
      segment_ids=segments,
    ),
  ):
    (loss_a, m_a), g_a = jax.value_and_grad(fn, has_aux=True)(logits, targets)
    (loss_b, m_b), g_b = jax.value_and_grad(fn, has_aux=True)(logits2, targets2)
    np.testing.assert_array_equal(loss_a, loss_b)
    for key in m_a:
      np.testing.assert_array_equal(m_a[key], m_b[key])
    np.testing.assert_array_equal(g_a, g_b)
    assert float(jnp.abs(jnp.where(keep, 0.0, g_a)).max()) == 0.0
    assert float(jnp.abs(g_a).max()) > 0.0
  r_a = implied_rewards(logits, targets, weights, gamma=0.95, segment_ids=segments)
  r_b = implied_rewards(logits2, targets2, weights, gamma=0.95, segment_ids=segments)
  np.testing.assert_array_equal(r_a, r_b)


def test_bfloat16_logits_give_float32_result():
  logits, targets, weights = random_batch(4)
  low = logits.astype(jnp.bfloat16)
  for fn in (
    lambda lg: mle_loss(lg, targets, weights),
    lambda lg: iqlearn_loss(lg, targets, weights, lam=0.5, gamma=1.0),
  ):
    loss_low, m_low = fn(low)
    assert loss_low.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in m_low.values())
    # Float32 math on the rounded inputs; within one bf16 ulp (2**-8) of the f32 inputs.
    np.testing.assert_allclose(loss_low, fn(low.astype(jnp.float32))[0], rtol=1e-6)
    np.testing.assert_allclose(loss_low, fn(logits)[0], rtol=4e-3)
  r_low = implied_rewards(low, targets, weights, gamma=1.0)
  assert r_low.dtype == jnp.float32
  r_high = implied_rewards(logits, targets, weights, gamma=1.0)
  np.testing.assert_allclose(r_low, r_high, atol=0.05)


def test_truncated_episode_bootstraps_its_implied_reward():
  # Two copies of: prompt, action (target 1: Q = 0, V = ln 4), weight-0 slot (V = ln 5).
  # Row 0 was truncated: r = Q - gamma V(slot); row 1 ended: r = Q.
  logits = jnp.array([[[5.0, 5.0, 5.0], [LN2, 0.0, 0.0], [0.0, LN3, 0.0]]] * 2)
  targets = jnp.array([[2, 1, 0]] * 2)
  weights = jnp.array([[0, 1, 0]] * 2)
  truncated = jnp.array([[1, 1, 1], [0, 0, 0]])
  r = implied_rewards(logits, targets, weights, gamma=GAMMA, truncated=truncated)
  np.testing.assert_allclose(r, [[0.0, -GAMMA * LN5, 0.0], [0.0, 0.0, 0.0]], rtol=1e-6,
                             atol=1e-7)
  loss, m = iqlearn_loss(logits, targets, weights, lam=LAM, gamma=GAMMA, truncated=truncated)
  np.testing.assert_allclose(m["td_sq"], (GAMMA * LN5) ** 2 / 2, rtol=1e-6)
  np.testing.assert_allclose(loss, LN4 + LAM * (GAMMA * LN5) ** 2 / 2, rtol=1e-6)


def test_all_zero_truncation_is_bitwise_the_default():
  logits, targets, weights = random_batch(5)
  segments = jnp.array([[1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 0]])
  zeros = jnp.zeros_like(weights)
  loss_a, m_a = iqlearn_loss(logits, targets, weights, lam=LAM, gamma=GAMMA, segment_ids=segments)
  loss_b, m_b = iqlearn_loss(logits, targets, weights, lam=LAM, gamma=GAMMA, segment_ids=segments,
                             truncated=zeros)
  np.testing.assert_array_equal(loss_a, loss_b)
  for key in m_a:
    np.testing.assert_array_equal(m_a[key], m_b[key])
  np.testing.assert_array_equal(
      implied_rewards(logits, targets, weights, gamma=GAMMA, segment_ids=segments),
      implied_rewards(logits, targets, weights, gamma=GAMMA, segment_ids=segments,
                      truncated=zeros))
