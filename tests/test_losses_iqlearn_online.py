"""Online IQLearn: the loss against a numpy transcription of Div99's iq_loss (value, chi^2)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm.losses import iqlearn_loss, iqlearn_online_loss

GAMMA, LAM = 0.9, 0.3


def transitions(logits, targets, weights, segments, gamma, cut_rows=()):
  """Div99's per-transition (Q(s,a), V(s), y = gamma (1 - done) V(s')) of every action, in numpy.

  V(s) = log sum exp Q(s, .); s' is the next action's state in the same row and segment, or
  for the last action of a row in ``cut_rows`` (an episode cut short) the state right after it.
  """
  lse = np.log(np.sum(np.exp(logits.astype(np.float64)), axis=-1))
  q, v, y = [], [], []
  for b, t in zip(*np.nonzero(weights)):
    later = [u for u in range(t + 1, weights.shape[1])
             if weights[b, u] > 0 and segments[b, u] == segments[b, t]]
    if not later and b in cut_rows:
      later = [t + 1]
    q.append(float(logits[b, t, targets[b, t]]))
    v.append(lse[b, t])
    y.append(0.0 if not later else gamma * lse[b, later[0]])
  return np.array(q), np.array(v), np.array(y)


def div99_loss(expert, policy, *, lam, gamma, mix):
  """iq_loss with method.loss='value' and div='chi', alpha = 1 / (4 lam), policy weight mix."""
  q_e, v_e, y_e = transitions(*expert, gamma)
  _, v_p, y_p = transitions(*policy, gamma)
  reward = q_e - y_e
  softq = -reward.mean()
  value = (1 - mix) * (v_e - y_e).mean() + mix * (v_p - y_p).mean()
  alpha = 1.0 / (4.0 * lam)
  chi2 = 1.0 / (4.0 * alpha) * (reward ** 2).mean()
  return softq + value + chi2, (v_e - y_e).mean(), (v_p - y_p).mean()


def batch(seed, weights, segments, vocab=6):
  k1, k2 = jax.random.split(jax.random.key(seed))
  logits = 2.0 * np.asarray(jax.random.normal(k1, weights.shape + (vocab,)))
  targets = np.asarray(jax.random.randint(k2, weights.shape, 0, vocab))
  return logits.astype(np.float32), targets.astype(np.int32), weights, segments


# Expert: a packed row (two segments) with an environment token, and a prompt + response row.
EXPERT_W = np.array([[0, 1, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 0]])
EXPERT_S = np.array([[1, 1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1, 0]])
# Policy: responses of other lengths, one segment per row.
POLICY_W = np.array([[0, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1]])
POLICY_S = np.array([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])


def online(expert, policy, **kw):
  (le, te, we, se), (lp, tp, wp, sp) = expert, policy
  return iqlearn_online_loss(jnp.asarray(le), te, we, jnp.asarray(lp), tp, wp,
                             expert_segment_ids=se, policy_segment_ids=sp, **kw)


@pytest.mark.parametrize("mix", [0.0, 0.5, 0.8, 1.0])
def test_equals_numpy_transcription_of_div99(mix):
  expert, policy = batch(0, EXPERT_W, EXPERT_S), batch(1, POLICY_W, POLICY_S)
  want, value_e, value_p = div99_loss(expert, policy, lam=LAM, gamma=GAMMA, mix=mix)
  loss, m = online(expert, policy, lam=LAM, gamma=GAMMA, mix=mix)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(m["value_expert"], value_e, rtol=1e-5)
  np.testing.assert_allclose(m["value_policy"], value_p, rtol=1e-5)
  np.testing.assert_allclose(m["value"], (1 - mix) * value_e + mix * value_p, rtol=1e-5)
  assert float(m["policy_tokens"]) == 8.0


def test_half_mix_is_div99_value_over_concatenated_halves_of_equal_size():
  policy_w = np.array([[0, 1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0]])  # 8 actions, as the expert
  assert policy_w.sum() == EXPERT_W.sum()
  expert, policy = batch(2, EXPERT_W, EXPERT_S), batch(3, policy_w, POLICY_S)
  q_e, v_e, y_e = transitions(*expert, GAMMA)
  _, v_p, y_p = transitions(*policy, GAMMA)
  reward = q_e - y_e
  value = np.concatenate([v_e - y_e, v_p - y_p]).mean()  # Div99: (current_v - y).mean()
  want = -reward.mean() + value + LAM * (reward ** 2).mean()
  loss, m = online(expert, policy, lam=LAM, gamma=GAMMA, mix=0.5)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(m["value"], value, rtol=1e-5)


def test_expert_metrics_equal_offline_loss_and_mix_zero_its_value():
  expert, policy = batch(4, EXPERT_W, EXPERT_S), batch(5, POLICY_W, POLICY_S)
  loss, m = online(expert, policy, lam=LAM, gamma=GAMMA, mix=0.0)
  le, te, we, se = expert
  off, m_off = iqlearn_loss(jnp.asarray(le), te, we, lam=LAM, gamma=GAMMA, segment_ids=se)
  np.testing.assert_allclose(loss, off, rtol=1e-6)
  for k in m_off:
    np.testing.assert_array_equal(m[k], m_off[k])


@pytest.mark.parametrize("stop_grad_next", [False, True])
def test_policy_gradient_reaches_policy_logits_only_through_the_value_term(stop_grad_next):
  expert, policy = batch(6, EXPERT_W, EXPERT_S), batch(7, POLICY_W, POLICY_S)
  lp, tp, wp, sp = policy
  mix = 0.5

  def loss(policy_logits):
    return online(expert, (policy_logits, tp, wp, sp), lam=LAM, gamma=GAMMA, mix=mix,
                  stop_grad_next=stop_grad_next)[0]

  grad = np.asarray(jax.grad(loss)(jnp.asarray(lp)))
  # d/dlogits of mix * mean_P[V(s) - gamma V(s')]: softmax at each action's own state, minus
  # gamma softmax at the state it is the successor of (unless the gradient stops there).
  soft = np.asarray(jax.nn.softmax(jnp.asarray(lp), axis=-1))
  want = np.zeros_like(soft)
  n = wp.sum()
  for b in range(wp.shape[0]):
    acts = [t for t in range(wp.shape[1]) if wp[b, t]]
    for i, t in enumerate(acts):
      want[b, t] += mix / n * soft[b, t]
      if i > 0 and not stop_grad_next:
        want[b, t] -= mix / n * GAMMA * soft[b, t]
  np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)


def test_with_gamma_one_the_policy_value_telescopes_to_each_samples_first_state():
  expert, policy = batch(8, EXPERT_W, EXPERT_S), batch(9, POLICY_W, POLICY_S)
  _, m = online(expert, policy, lam=LAM, gamma=1.0, mix=0.5)
  lp, _, wp, _ = policy
  lse = np.log(np.sum(np.exp(lp.astype(np.float64)), axis=-1))
  first = [lse[b, np.flatnonzero(wp[b])[0]] for b in range(wp.shape[0])]
  np.testing.assert_allclose(m["value_policy"], sum(first) / wp.sum(), rtol=1e-5)


def test_a_cut_policy_sample_bootstraps_from_the_state_after_its_last_action():
  expert, policy = batch(10, EXPERT_W, EXPERT_S), batch(11, POLICY_W, POLICY_S)
  # Row 0 ran out of room: its position 4 (weight 0, in its segment once extended) is the
  # state after its last action; row 1 ended.
  lp, tp, wp, sp = policy
  sp = sp.copy()
  sp[0, 4] = 1
  truncated = np.zeros_like(wp)
  truncated[0, 1:5] = 1
  _, v_p, y_p = transitions(lp, tp, wp, sp, GAMMA, cut_rows=(0,))
  _, m = online(expert, (lp, tp, wp, sp), lam=LAM, gamma=GAMMA, mix=0.5,
                policy_truncated=truncated)
  np.testing.assert_allclose(m["value_policy"], (v_p - y_p).mean(), rtol=1e-5)
  _, ended = online(expert, (lp, tp, wp, sp), lam=LAM, gamma=GAMMA, mix=0.5)
  assert abs(float(ended["value_policy"]) - float(m["value_policy"])) > 1e-3
