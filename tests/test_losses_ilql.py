"""ILQL: closed forms of every term, gradient routing, masking and dtypes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm.losses import ilql_loss

LN2, LN3, LN4 = (math.log(k) for k in (2, 3, 4))
TAU, GAMMA, CQL_W, AWAC_W = 0.7, 0.9, 0.1, 1.0
HP = dict(tau=TAU, gamma=GAMMA, cql_weight=CQL_W, awac_weight=AWAC_W)
X = 9.0  # never read: weight-0 positions and actions not taken

# One row: prompt, action (target 1), environment token, action (target 0).
LOGITS = jnp.array([[[X, X], [0.0, LN3], [X, X], [LN2, 0.0]]])
Q1 = jnp.array([[[X, X], [0.0, 0.0], [X, X], [1.0, 1.0]]])
Q2 = jnp.array([[[X, X], [LN3, 0.0], [X, X], [0.0, LN3]]])
TQ1 = jnp.array([[[X, X], [X, 0.5], [X, X], [2.0, X]]])
TQ2 = jnp.array([[[X, X], [X, 1.5], [X, X], [3.0, X]]])
V = jnp.array([[7.0, 1.0, 5.0, 0.5]])
TARGETS = jnp.array([[0, 1, 0, 0]])
WEIGHTS = jnp.array([[0, 1, 0, 1]])
REWARDS = jnp.array([[3.0, 0.0, 4.0, 1.0]])
ARGS = (LOGITS, Q1, Q2, TQ1, TQ2, V, TARGETS, WEIGHTS, REWARDS)

# Action 1: Q1 = Q2 = 0, Qhat = 0.5, v = 1.0, next state = position 3 (v = 0.5): y = 0.45.
# Action 3: Q1 = 1, Q2 = 0, Qhat = 2.0, v = 0.5, terminal: y = r = 1.
Q_LOSS = (0.45**2 + 0.0) / 2 + (0.45**2 + 1.0) / 2
V_LOSS = ((1 - TAU) * 0.5**2 + TAU * 1.5**2) / 2
CQL_LOSS = (LN2 + LN2) / 2 + (LN4 + LN4) / 2
NLL = (LN4 - LN3, LN3 - LN2)


def test_closed_form_terms_with_behaviour_cloning():
  loss, m = ilql_loss(*ARGS, **HP)
  awac = (NLL[0] + NLL[1]) / 2
  np.testing.assert_allclose(m["q_loss"], Q_LOSS, rtol=1e-6)
  np.testing.assert_allclose(m["v_loss"], V_LOSS, rtol=1e-6)
  np.testing.assert_allclose(m["cql_loss"], CQL_LOSS, rtol=1e-6)
  np.testing.assert_allclose(m["awac_loss"], awac, rtol=1e-6)
  np.testing.assert_allclose(loss, Q_LOSS + V_LOSS + CQL_W * CQL_LOSS + AWAC_W * awac, rtol=1e-6)
  np.testing.assert_allclose(m["q_mean"], (0.0 + 0.5) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["target_q_mean"], (0.5 + 2.0) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["v_mean"], (1.0 + 0.5) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["advantage_mean"], (-0.5 + 1.5) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["awac_weight_mean"], 1.0, rtol=1e-6)


@pytest.mark.parametrize("clip", [1e4, 1.5])
def test_closed_form_advantage_weighted_term(clip):
  beta = 0.5
  w = [min(math.exp(beta * -0.5), clip), min(math.exp(beta * 1.5), clip)]
  loss, m = ilql_loss(*ARGS, **HP, awac_beta=beta, awac_clip=clip)
  awac = (w[0] * NLL[0] + w[1] * NLL[1]) / 2
  np.testing.assert_allclose(m["awac_loss"], awac, rtol=1e-6)
  np.testing.assert_allclose(m["awac_weight_mean"], sum(w) / 2, rtol=1e-6)
  np.testing.assert_allclose(loss, Q_LOSS + V_LOSS + CQL_W * CQL_LOSS + AWAC_W * awac, rtol=1e-6)


def random_args(seed: int, batch: int = 2, length: int = 7, vocab: int = 5, dtype=jnp.float32):
  keys = jax.random.split(jax.random.key(seed), 8)
  big = [jax.random.normal(k, (batch, length, vocab), dtype) for k in keys[:5]]
  v = jax.random.normal(keys[5], (batch, length), dtype)
  targets = jax.random.randint(keys[6], (batch, length), 0, vocab)
  weights = jnp.array([[0, 1, 1, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0, 0]])[:batch]
  rewards = jax.random.normal(keys[7], (batch, length))
  return (*big, v, targets, weights, rewards)


SEGMENTS = jnp.array([[1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 1, 1, 0]])


def grads(args, metric, argnums, **kw):
  fn = lambda *a: ilql_loss(*a, **HP, segment_ids=SEGMENTS, **kw)[1][metric]  # noqa: E731
  return jax.grad(fn, argnums=argnums)(*args)


def test_gradient_to_v_comes_only_from_the_v_loss():
  args = random_args(0)
  _, q1, q2, tq1, tq2, v, targets, weights, _ = args
  g_q = grads(args, "q_loss", 5, awac_beta=2.0)
  assert float(jnp.abs(g_q).max()) == 0.0
  g_awac = grads(args, "awac_loss", 5, awac_beta=2.0)
  assert float(jnp.abs(g_awac).max()) == 0.0
  g_v = grads(args, "v_loss", 5, awac_beta=2.0)
  total = jax.grad(lambda vv: ilql_loss(*args[:5], vv, *args[6:], **HP, awac_beta=2.0)[0])(v)
  np.testing.assert_allclose(total, g_v, rtol=1e-6)
  # Closed form: d/dv of mean(w_tau (Qhat - v)^2) = -2 w_tau (Qhat - v) / n on action positions.
  q_hat = jnp.minimum(
    jnp.take_along_axis(tq1, targets[..., None], -1)[..., 0],
    jnp.take_along_axis(tq2, targets[..., None], -1)[..., 0],
  )
  w_tau = jnp.where(q_hat < v, 1 - TAU, TAU)
  expected = jnp.where(weights > 0, -2.0 * w_tau * (q_hat - v) / weights.sum(), 0.0)
  np.testing.assert_allclose(g_v, expected, rtol=1e-5, atol=1e-7)


def test_no_gradient_reaches_the_target_heads():
  for metric in ("v_loss", "awac_loss"):
    g1, g2 = grads(random_args(1), metric, (3, 4), awac_beta=2.0)
    assert float(jnp.abs(g1).max()) == 0.0 and float(jnp.abs(g2).max()) == 0.0


def test_awac_weight_carries_no_gradient():
  args = random_args(2)
  logits, _, _, tq1, tq2, v, targets, weights, _ = args
  beta = 1.5
  g = grads(args, "awac_loss", 0, awac_beta=beta)
  q_hat = jnp.minimum(
    jnp.take_along_axis(tq1, targets[..., None], -1)[..., 0],
    jnp.take_along_axis(tq2, targets[..., None], -1)[..., 0],
  )
  w = jnp.exp(beta * (q_hat - v)) * weights / weights.sum()
  expected = w[..., None] * (jax.nn.softmax(logits) - jax.nn.one_hot(targets, logits.shape[-1]))
  np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-7)


def test_q_and_cql_gradients_closed_form():
  args = random_args(3)
  _, q1, _, _, _, v, targets, weights, rewards = args
  n = weights.sum()
  onehot = jax.nn.one_hot(targets, q1.shape[-1])
  g_cql = grads(args, "cql_loss", 1)
  expected_cql = (jax.nn.softmax(q1) - onehot) * (weights / n)[..., None]
  np.testing.assert_allclose(g_cql, expected_cql, atol=1e-7)
  # V' for the packed rows: row 0 actions 1->2, 2 done (segment ends), 4->5, 5 done;
  # row 1 actions 2->3->4, 4 done.
  v_next = jnp.zeros_like(v).at[0, 1].set(v[0, 2]).at[0, 4].set(v[0, 5])
  v_next = v_next.at[1, 2].set(v[1, 3]).at[1, 3].set(v[1, 4])
  q_sa = jnp.take_along_axis(q1, targets[..., None], -1)[..., 0]
  td = q_sa - (rewards + GAMMA * v_next)
  g_q = grads(args, "q_loss", 1)
  expected_q = (2 * td * weights / n)[..., None] * onehot
  np.testing.assert_allclose(g_q, expected_q, rtol=1e-5, atol=1e-7)


def test_masked_positions_change_neither_loss_nor_gradients():
  args = random_args(4)
  other = random_args(5)
  weights = args[7]
  keep3, keep2 = weights[..., None] > 0, weights > 0
  mixed = [jnp.where(keep3, a, 10.0 * o) for a, o in zip(args[:5], other[:5])]
  mixed += [jnp.where(keep2, a, o) for a, o in zip(args[5:7], other[5:7])]
  mixed += [weights, jnp.where(keep2, args[8], 10.0 * other[8])]

  def fn(*a):
    return ilql_loss(*a, **HP, awac_beta=0.8, segment_ids=SEGMENTS)

  vg = jax.value_and_grad(fn, argnums=(0, 1, 2, 5), has_aux=True)
  (loss_a, m_a), g_a = vg(*args)
  (loss_b, m_b), g_b = vg(*mixed)
  np.testing.assert_array_equal(loss_a, loss_b)
  for key in m_a:
    np.testing.assert_array_equal(m_a[key], m_b[key])
  for ga, gb in zip(g_a, g_b):
    np.testing.assert_array_equal(ga, gb)
    assert float(jnp.abs(ga).max()) > 0.0


def test_bfloat16_inputs_give_float32_result():
  args = random_args(6)
  low = [a.astype(jnp.bfloat16) for a in args[:6]] + list(args[6:])
  up = [a.astype(jnp.float32) for a in low[:6]] + list(args[6:])
  loss_low, m_low = ilql_loss(*low, **HP, awac_beta=0.5)
  assert loss_low.dtype == jnp.float32
  assert all(v.dtype == jnp.float32 for v in m_low.values())
  np.testing.assert_allclose(loss_low, ilql_loss(*up, **HP, awac_beta=0.5)[0], rtol=1e-6)
  np.testing.assert_allclose(loss_low, ilql_loss(*args, **HP, awac_beta=0.5)[0], rtol=4e-3)


# Two copies of one episode: prompt, action (target 1, reward 1), then a weight-0 slot whose
# reward (5) is never read. Row 0 was truncated and bootstraps from v at the slot (2.0);
# row 1 ended, so its Q target is the reward alone.
T_Q1 = jnp.array([[[X, X], [0.0, 0.5], [X, X]]] * 2)
T_Q2 = jnp.array([[[X, X], [0.0, 1.5], [X, X]]] * 2)
T_TQ = jnp.array([[[X, X], [X, 1.0], [X, X]]] * 2)
T_V = jnp.array([[7.0, 1.0, 2.0]] * 2)
T_TARGETS = jnp.array([[0, 1, 0]] * 2)
T_WEIGHTS = jnp.array([[0, 1, 0]] * 2)
T_REWARDS = jnp.array([[0.0, 1.0, 5.0]] * 2)
T_TRUNCATED = jnp.array([[1, 1, 1], [0, 0, 0]])
T_ARGS = (T_Q1, T_Q1, T_Q2, T_TQ, T_TQ, T_V, T_TARGETS, T_WEIGHTS, T_REWARDS)


def test_truncated_episode_bootstraps_and_finished_one_does_not():
  y = (1.0 + GAMMA * 2.0, 1.0)  # Q targets of rows 0 and 1
  _, m = ilql_loss(*T_ARGS, **HP, truncated=T_TRUNCATED)
  want = sum((0.5 - t) ** 2 + (1.5 - t) ** 2 for t in y) / 2
  np.testing.assert_allclose(m["q_loss"], want, rtol=1e-6)
  q_loss = lambda q: ilql_loss(T_Q1, q, *T_ARGS[2:], **HP, truncated=T_TRUNCATED)[1]["q_loss"]
  g = jax.grad(q_loss)(T_Q1)
  np.testing.assert_allclose(g[:, 1, 1], [2 * (0.5 - t) / 2 for t in y], rtol=1e-6)
  _, plain = ilql_loss(*T_ARGS, **HP)
  np.testing.assert_allclose(plain["q_loss"], ((0.5 - 1) ** 2 + (1.5 - 1) ** 2), rtol=1e-6)
  for key in ("v_loss", "cql_loss", "awac_loss"):  # only the Q target changes
    np.testing.assert_array_equal(m[key], plain[key])


def test_all_zero_truncation_is_bitwise_the_default():
  args = random_args(7)
  loss_a, m_a = ilql_loss(*args, **HP, segment_ids=SEGMENTS)
  loss_b, m_b = ilql_loss(*args, **HP, segment_ids=SEGMENTS, truncated=jnp.zeros_like(args[7]))
  np.testing.assert_array_equal(loss_a, loss_b)
  for key in m_a:
    np.testing.assert_array_equal(m_a[key], m_b[key])
