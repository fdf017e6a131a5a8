"""End-to-end training runs: each loss, 1 vs 8 devices, resume and mesh changes."""
import os

import numpy as np
import pytest

from irl_lm import data
from irl_lm.training.checkpoints import Checkpointer
from irl_lm.training.trainer import train_and_evaluate
from training_utils import assert_trees_close, assert_trees_equal, tiny_config, trained_params


@pytest.mark.parametrize("loss", ["mle", "iqlearn", "ilql"])
def test_each_loss_same_on_one_and_eight_devices(loss, tmp_path):
  one = train_and_evaluate(tiny_config(loss), str(tmp_path / "one"))
  eight = train_and_evaluate(tiny_config(loss, mesh=(2, 2, 2), num_devices=0),
                             str(tmp_path / "eight"))
  for k in ("train/loss", "eval/loss"):
    np.testing.assert_allclose(eight[k], one[k], rtol=1e-4, err_msg=k)
  p1, t1 = trained_params(str(tmp_path / "one"))
  p8, t8 = trained_params(str(tmp_path / "eight"))
  assert_trees_close(p8, p1, atol=2e-5)
  if loss == "ilql":
    assert_trees_close(t8, t1, atol=2e-5)
    assert np.isfinite(one["train/q_loss"]) and np.isfinite(one["train/cql_loss"])
  for f in ("config.json", "model_config.json", "curves.png"):
    assert os.path.exists(tmp_path / "one" / f)
  assert os.listdir(tmp_path / "one" / "tensorboard")


def test_separate_value_trunk_same_on_one_and_eight_devices(tmp_path):
  from irl_lm.models import VALUE_TRUNK, trunk_params
  configs = {"one": tiny_config("ilql"),
             "eight": tiny_config("ilql", mesh=(2, 2, 2), num_devices=0)}
  results = {}
  for name, c in configs.items():
    c.loss.ilql.separate_value_trunk = True
    results[name] = train_and_evaluate(c, str(tmp_path / name))
  for k in ("train/loss", "train/q_loss", "train/awac_loss", "eval/loss"):
    np.testing.assert_allclose(results["eight"][k], results["one"][k], rtol=1e-4, err_msg=k)
  p1, t1 = trained_params(str(tmp_path / "one"))
  p8, t8 = trained_params(str(tmp_path / "eight"))
  assert_trees_close(p8, p1, atol=2e-5)
  assert_trees_close(t8, t1, atol=2e-5)
  # Both trunks started equal and trained on different terms.
  policy, value = trunk_params(p1)["shared"]["embedding"], p1[VALUE_TRUNK]["shared"]["embedding"]
  assert policy.shape == value.shape and not np.allclose(policy, value)


def test_loss_falls(tmp_path):
  c = tiny_config("iqlearn", steps=40)
  c.train.log_every = 10
  train_and_evaluate(c, str(tmp_path))
  import tensorflow as tf
  losses = []
  for fn in os.listdir(tmp_path / "tensorboard"):
    for e in tf.compat.v1.train.summary_iterator(str(tmp_path / "tensorboard" / fn)):
      for v in e.summary.value:
        if v.tag == "train/loss":
          losses.append(float(tf.make_ndarray(v.tensor)))
  assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses


class _Crash(RuntimeError):
  pass


def _crash_after(monkeypatch, n):
  real = data.BatchIterator.__next__
  calls = {"n": 0}

  def fake(self):
    if self.repeat:
      calls["n"] += 1
      if calls["n"] > n:
        raise _Crash("simulated preemption")
    return real(self)
  monkeypatch.setattr(data.BatchIterator, "__next__", fake)


def test_resume_is_bit_exact(tmp_path, monkeypatch):
  cfg = tiny_config("ilql", mesh=(4, 2, 1), num_devices=0)
  train_and_evaluate(cfg, str(tmp_path / "straight"))
  with monkeypatch.context() as m:
    _crash_after(m, 4)  # saves at step 3, dies fetching step 5's batch
    with pytest.raises(_Crash):
      train_and_evaluate(cfg, str(tmp_path / "resumed"))
  assert Checkpointer(str(tmp_path / "resumed"), cfg.train).all_steps() == [3]
  train_and_evaluate(cfg, str(tmp_path / "resumed"))
  a, ta = trained_params(str(tmp_path / "straight"))
  b, tb = trained_params(str(tmp_path / "resumed"))
  assert_trees_equal(a, b)
  assert_trees_equal(ta, tb)


def test_restore_onto_smaller_mesh(tmp_path, monkeypatch):
  big = tiny_config("iqlearn", mesh=(2, 2, 2), num_devices=0)
  train_and_evaluate(big, str(tmp_path / "straight"))
  with monkeypatch.context() as m:
    _crash_after(m, 3)
    with pytest.raises(_Crash):
      train_and_evaluate(big, str(tmp_path / "moved"))
  small = tiny_config("iqlearn", mesh=(2, 1, 2), num_devices=4)
  train_and_evaluate(small, str(tmp_path / "moved"))
  assert_trees_close(trained_params(str(tmp_path / "moved"))[0],
                     trained_params(str(tmp_path / "straight"))[0], atol=2e-5)


def test_keeps_last_k_checkpoints(tmp_path):
  c = tiny_config("mle", steps=8)
  c.train.checkpoint_every = 2
  c.train.keep_checkpoints = 2
  train_and_evaluate(c, str(tmp_path))
  assert Checkpointer(str(tmp_path), c.train).all_steps() == [6, 8]
