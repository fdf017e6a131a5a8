"""Episodes end to end: truncated episodes in the steps; ILQL reward normalisation (dataset
statistics, the running update in the train step, resume)."""
import json
import shutil

import jax
import numpy as np
import pytest

from irl_lm.data import BatchIterator, make_vocabulary, register_jsonl_reward_task
from irl_lm import losses
from irl_lm.losses import normalize_rewards
from irl_lm.training import builders
from irl_lm.training.checkpoints import Checkpointer
from irl_lm.algorithms.ilql import ILQL
from irl_lm.training.trainer import train_and_evaluate
from training_utils import assert_trees_equal, tiny_config, trained_params

LENGTHS = {"inputs": 16, "targets": 16}


@pytest.fixture(scope="module")
def dense_task(tmp_path_factory):
  """Multi-turn rows with dense rewards; every third row unfinished, the last one cut."""
  rng = np.random.default_rng(0)
  rows = []
  for i in range(14):
    r = rng.normal(1.0, 2.0, 2).round(3).tolist()
    rows.append({"turns": [{"text": f"what color is each : sky {i} ?", "is_action": False},
                           {"text": "sky is blue .", "is_action": True, "reward": r[0]},
                           {"text": "and snow ?", "is_action": False},
                           {"text": "snow is white .", "is_action": True, "reward": r[1]}],
                 "done": i % 3 != 0})
  rows.append({"prompt": "sky ?", "response": " ".join(["sky is blue ."] * 6), "reward": 50.0})
  path = tmp_path_factory.mktemp("norm") / "dense.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return register_jsonl_reward_task("test_reward_norm_dense", str(path),
                                    make_vocabulary("embedded"))


def finished_returns(batch, rewards):
  """Per finished episode (row, segment) of a batch: the sum of ``rewards`` on its actions."""
  out = []
  seg = batch.get("decoder_segment_ids", (batch["decoder_loss_weights"] >= 0).astype(np.int32))
  for row in range(len(rewards)):
    for s in set(seg[row][batch["decoder_loss_weights"][row] > 0]):
      mine = seg[row] == s
      if not batch["decoder_truncated"][row][mine].any():
        out.append(float(np.sum(np.where(mine & (batch["decoder_loss_weights"][row] > 0),
                                         rewards[row], 0.0))))
  return out


@pytest.mark.parametrize("loss", ["iqlearn", "ilql"])
def test_steps_bootstrap_the_truncated_episodes_of_the_batch(loss):
  config = tiny_config(loss)
  config.data.targets_length = 10  # cuts most responses
  run = builders.build_run(config)
  state = run.init_state()
  batch = next(BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 10},
                             config.data.batch_size, seed=0))
  assert batch["decoder_truncated"].any()
  finished = dict(batch, decoder_truncated=np.zeros_like(batch["decoder_truncated"]))
  sums = [run.eval_step(state, run.shard_batch(b)) for b in (batch, finished)]
  loss_of = [float(s["loss_sum"] / s["weight_sum"]) for s in sums]
  assert loss_of[0] != loss_of[1]
  if loss == "iqlearn":
    logits = run.model.apply({"params": state.params}, batch).logits
    want, _ = losses.iqlearn_loss(logits, batch["decoder_target_tokens"],
                                  batch["decoder_loss_weights"], lam=config.loss.iqlearn.lam,
                                  gamma=config.loss.iqlearn.gamma,
                                  truncated=batch["decoder_truncated"])
    np.testing.assert_allclose(loss_of[0], want, rtol=1e-5)


def dataset_reward_stats(config, task):
  """ILQL's ``reward_norm="dataset"`` statistics of ``task`` (None for other settings)."""
  return ILQL(config).startup(task).get("reward_stats")


def test_dataset_mode_makes_finished_returns_z_scores(dense_task):
  config = tiny_config("ilql")
  config.data.task = "test_reward_norm_dense"
  config.data.inputs_length, config.data.targets_length = LENGTHS["inputs"], LENGTHS["targets"]
  config.loss.ilql.reward_norm = "dataset"
  stats = dataset_reward_stats(config, dense_task)
  assert float(stats["count"]) == 9  # 14 rows: 5 unfinished; the cut row is unfinished too
  returns = []
  for batch in BatchIterator(dense_task, "train", "encdec", LENGTHS, 4, shuffle=False, pack=True,
                             repeat=False):
    r = normalize_rewards(batch["decoder_rewards"], batch["decoder_loss_weights"], stats,
                          batch["decoder_segment_ids"], batch["decoder_truncated"])
    returns += finished_returns(batch, np.asarray(r))
  assert len(returns) == 9
  np.testing.assert_allclose(np.mean(returns), 0.0, atol=1e-6)
  np.testing.assert_allclose(np.std(returns, ddof=1), 1.0, rtol=1e-6)
  config.loss.ilql.reward_norm = "running"
  assert dataset_reward_stats(config, dense_task) is None


def test_trainer_starts_dataset_mode_with_the_splits_statistics(dense_task, tmp_path):
  config = tiny_config("ilql", steps=2, mesh=(2, 1, 1), num_devices=2)
  config.data.task = "test_reward_norm_dense"
  config.data.inputs_length, config.data.targets_length = LENGTHS["inputs"], LENGTHS["targets"]
  config.data.batch_size = config.eval.batch_size = 4
  config.data.eval_split = "train"
  config.loss.ilql.reward_norm = "dataset"
  stats = dataset_reward_stats(config, dense_task)
  last = train_and_evaluate(config, str(tmp_path))
  assert last["train/reward_norm_count"] == 9
  np.testing.assert_allclose(last["train/reward_norm_mu"], stats["mean"], rtol=1e-6)
  np.testing.assert_allclose(last["train/reward_norm_sigma"], losses.return_std(stats), rtol=1e-6)


def ilql_config(**kw):
  """The tiny ILQL run with every embedded_ilql response (17 tokens) whole, so episodes end."""
  config = tiny_config("ilql", **kw)
  config.data.targets_length = 17
  config.loss.ilql.reward_norm = "running"
  return config


def test_running_statistics_in_the_train_step_equal_numpy():
  config = ilql_config()
  run = builders.build_run(config)
  assert [tuple(s.spec) for s in jax.tree.leaves(run.shardings.extra["reward_stats"])] == [()] * 3
  state = run.init_state()
  it = BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 17},
                     config.data.batch_size, seed=0)
  seen = []
  for _ in range(3):
    batch = next(it)
    state, metrics = run.train_step(state, run.shard_batch(batch))
    seen += finished_returns(batch, batch["decoder_rewards"])
    np.testing.assert_allclose(state.extra["reward_stats"]["count"], len(seen))
    np.testing.assert_allclose(state.extra["reward_stats"]["mean"], np.mean(seen), rtol=1e-5)
    np.testing.assert_allclose(metrics["reward_norm_mu"], np.mean(seen), rtol=1e-5)
    np.testing.assert_allclose(metrics["reward_norm_sigma"], np.std(seen, ddof=1), rtol=1e-5)
  assert len(seen) == 3 * config.data.batch_size
  before = jax.device_get(state.extra["reward_stats"])
  bad = dict(batch, decoder_rewards=np.full_like(batch["decoder_rewards"], np.nan))
  state, metrics = run.train_step(state, run.shard_batch(bad))
  assert int(metrics["nonfinite"]) == 1
  assert_trees_equal(state.extra["reward_stats"], before)  # a skipped step learns no statistics


def test_resume_continues_with_the_saved_statistics(tmp_path):
  cfg = ilql_config(mesh=(2, 1, 1), num_devices=2)
  straight = train_and_evaluate(cfg, str(tmp_path / "straight"))
  # The resumed run starts from the straight run's step-3 checkpoint (as after a crash).
  shutil.copytree(tmp_path / "straight" / "checkpoints", tmp_path / "resumed" / "checkpoints")
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "6")
  assert Checkpointer(str(tmp_path / "resumed"), cfg.train).all_steps() == [3]
  resumed = train_and_evaluate(cfg, str(tmp_path / "resumed"))
  for k in ("train/loss", "train/reward_norm_mu", "train/reward_norm_sigma",
            "train/reward_norm_count", "eval/loss"):
    assert resumed[k] == straight[k], k
  assert straight["train/reward_norm_count"] == 5.5 * cfg.data.batch_size  # mean of steps 5, 6
  assert_trees_equal(trained_params(str(tmp_path / "resumed")),
                     trained_params(str(tmp_path / "straight")))
