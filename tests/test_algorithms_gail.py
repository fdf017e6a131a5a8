"""GAIL: its returns and loss terms, the discriminator learning to tell demonstrations from
samples, the run on one and eight devices, resume, and its config checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm import data, losses
from irl_lm.algorithms import ALGORITHMS, GAIL
from irl_lm.training import builders
from irl_lm.training.checkpoints import Checkpointer
from irl_lm.training.config import validate
from irl_lm.training.trainer import train_and_evaluate
from test_training_run import _Crash, _crash_after
from training_utils import assert_trees_close, assert_trees_equal, tiny_config, trained_params


def gail_config(size="gpt2-tiny", **kw):
  c = tiny_config("gail", **kw)
  c.model.size = size
  c.data.pack = False
  c.optimizer.learning_rate = 1e-3
  return c


def test_returns_to_go_sum_the_discounted_rewards_of_each_rows_actions():
  rewards = jnp.array([[9.0, 1.0, 2.0, 3.0, 9.0], [1.0, 1.0, 9.0, 9.0, 9.0]])
  weights = jnp.array([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
  got = losses.returns_to_go(rewards, weights, 0.5)
  np.testing.assert_allclose(got, [[0, 1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 0],
                                   [1.5, 1, 0, 0, 0]], rtol=1e-6)


def test_gail_loss_terms_match_their_definitions():
  rng = np.random.default_rng(0)
  ed, pd, lp, v = (jnp.asarray(rng.normal(size=(2, 4)), jnp.float32) for _ in range(4))
  ew = jnp.array([[1, 1, 1, 0], [0, 1, 1, 1]])
  pw = jnp.array([[1, 1, 0, 0], [1, 1, 1, 1]])
  loss, m = losses.gail_loss(ed, ew, pd, lp, v, pw, gamma=1.0, value_weight=0.5, disc_weight=2.0)
  sp = lambda x: np.log1p(np.exp(x))
  e, p = np.asarray(ed)[np.asarray(ew) > 0], np.asarray(pd)[np.asarray(pw) > 0]
  d_loss = sp(-e).mean() + sp(p).mean()
  g = np.asarray(losses.returns_to_go(pd, pw, 1.0))
  mask = np.asarray(pw) > 0
  adv = (g - np.asarray(v))[mask]
  pg = -(adv * np.asarray(lp)[mask]).mean()
  value = 0.5 * ((np.asarray(v) - g)[mask] ** 2).mean()
  np.testing.assert_allclose(m["disc_loss"], d_loss, rtol=1e-5)
  np.testing.assert_allclose(m["pg_loss"], pg, rtol=1e-5)
  np.testing.assert_allclose(m["value_loss"], value, rtol=1e-5)
  np.testing.assert_allclose(loss, pg + 0.5 * value + 2.0 * d_loss, rtol=1e-5)
  # The policy term's gradient reaches the log-probabilities only: rewards and baseline are
  # held fixed in it.
  grad = jax.grad(lambda x: losses.gail_loss(ed, ew, pd, x, v, pw, gamma=1.0)[0])(lp)
  np.testing.assert_allclose(np.asarray(grad)[mask], -adv / mask.sum(), rtol=1e-5)


def test_gail_is_registered_and_adds_only_its_heads():
  assert ALGORITHMS["gail"] is GAIL
  run = builders.build_run(gail_config())
  assert set(run.state_abstract.params["aux_heads"]) == {"discriminator", "baseline"}
  assert run.state_abstract.extra == {}
  kl = gail_config()
  kl.loss.gail.kl_weight = 0.1
  run = builders.build_run(kl)
  assert set(run.state_abstract.extra) == {"reference"}
  assert "aux_heads" not in run.state_abstract.extra["reference"]


def test_the_discriminator_learns_to_tell_demonstrations_from_samples():
  """Over 40 steps the discriminator's accuracy and the gap between the reward it gives
  the demonstrations and the policy's samples both rise from chance."""
  config = gail_config(steps=40)
  run = builders.build_run(config)
  state = run.init_state()
  it = data.BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 16},
                          config.data.batch_size, seed=0, pack=False)
  history = []
  for _ in range(40):
    state, metrics = run.train_step(state, run.shard_batch(next(it)))
    history.append(jax.device_get(metrics))
  first, last = history[:5], history[-5:]
  mean = lambda hs, k: float(np.mean([h[k] for h in hs]))
  gap = lambda hs: mean(hs, "reward_expert") - mean(hs, "reward_policy")
  assert abs(gap(first)) < 0.1 and gap(last) > 0.5, (gap(first), gap(last))
  assert mean(last, "disc_accuracy") > 0.7 > mean(first, "disc_accuracy")
  assert mean(last, "disc_loss") < mean(first, "disc_loss")
  assert mean(last, "policy_tokens") > 0


def test_a_run_is_the_same_on_one_and_eight_devices_and_resumes_bit_exactly(tmp_path,
                                                                             monkeypatch):
  one = train_and_evaluate(gail_config(steps=6), str(tmp_path / "one"))
  eight_cfg = gail_config(steps=6, mesh=(2, 2, 2), num_devices=0)
  eight = train_and_evaluate(eight_cfg, str(tmp_path / "eight"))
  for k in ("train/loss", "train/disc_loss", "train/reward_policy", "eval/loss"):
    np.testing.assert_allclose(eight[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
  assert_trees_close(trained_params(str(tmp_path / "eight"))[0],
                     trained_params(str(tmp_path / "one"))[0], atol=1e-4)
  with monkeypatch.context() as m:
    _crash_after(m, 4)  # saves at step 3, dies fetching step 5's batch
    with pytest.raises(_Crash):
      train_and_evaluate(eight_cfg, str(tmp_path / "resumed"))
  assert Checkpointer(str(tmp_path / "resumed"), eight_cfg.train).all_steps() == [3]
  train_and_evaluate(eight_cfg, str(tmp_path / "resumed"))
  assert_trees_equal(trained_params(str(tmp_path / "resumed"))[0],
                     trained_params(str(tmp_path / "eight"))[0])


@pytest.mark.parametrize("changes,message", [
    (dict(pack=True), r"GAIL lays out one example per row \(config.loss.name\): expected "
                      r"config.data.pack=False vs found True"),
    (dict(gamma=1.5), r"value out of range \(config.loss.gail.gamma\)"),
    (dict(temperature=0.0), r"value out of range \(config.loss.gail.temperature\)"),
])
def test_bad_settings_are_refused_naming_the_key(changes, message):
  c = gail_config()
  if "pack" in changes:
    c.data.pack = changes.pop("pack")
  for k, v in changes.items():
    c.loss.gail[k] = v
  with pytest.raises(ValueError, match=message):
    validate(c)
