"""Online IQLearn in the train step: config, the replay buffer, decoded samples, devices, resume."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm import data
from irl_lm.decoding import generate
from irl_lm.planning import plan_train
from irl_lm.algorithms import policy_samples as online
from irl_lm.training import builders
from irl_lm.training.checkpoints import Checkpointer
from irl_lm.training.config import validate
from irl_lm.training.trainer import train_and_evaluate
from test_training_run import _Crash, _crash_after
from training_utils import assert_trees_close, assert_trees_equal, tiny_config, trained_params


def online_config(size="t5-tiny", *, every=1, buffer_size=16, temperature=1.0, **kw):
  c = tiny_config("iqlearn", **kw)
  c.model.size = size
  o = c.loss.iqlearn.online
  o.enable, o.every, o.buffer_size, o.temperature = True, every, buffer_size, temperature
  return c


def setup(config):
  run = builders.build_run(config)
  it = data.BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 16},
                          config.data.batch_size, seed=0)
  return run, it


@pytest.mark.parametrize("changes,message", [
    (dict(name="mle"), r"online IQLearn needs the IQLearn loss \(config.loss.iqlearn.online"
     r".enable\): expected config.loss.name='iqlearn' vs found 'mle'"),
    (dict(pack=True), r"\(config.loss.iqlearn.online.enable\): expected config.data.pack=False"),
    (dict(accum=2), r"\(config.loss.iqlearn.online.enable\): expected config.optimizer."
     r"grad_accum_steps=1 or grad_accum_mode='multisteps' vs found grad_accum_steps=2"),
    (dict(buffer_size=12), r"replay buffer not a whole number of batches \(config.loss.iqlearn"
     r".online.buffer_size\): expected a multiple of config.data.batch_size=8 vs found 12"),
    (dict(buffer_size=0), r"\(config.loss.iqlearn.online.buffer_size\): expected value > 0"),
    (dict(every=0), r"\(config.loss.iqlearn.online.every\): expected value > 0 vs found 0"),
    (dict(mix=1.5), r"\(config.loss.iqlearn.online.mix\): expected 0 <= value <= 1 vs found 1.5"),
    (dict(temperature=0.0),
     r"\(config.loss.iqlearn.online.temperature\): expected value > 0 vs found 0.0"),
])
def test_bad_online_config_is_rejected(changes, message):
  c = online_config()
  o = c.loss.iqlearn.online
  c.loss.name = changes.pop("name", c.loss.name)
  c.data.pack = changes.pop("pack", False)
  c.optimizer.grad_accum_steps = changes.pop("accum", 1)
  for k, v in changes.items():
    o[k] = v
  with pytest.raises(ValueError, match=message):
    validate(c)


def test_disabled_online_leaves_the_offline_step_as_it_was():
  plain = builders.build_run(tiny_config("iqlearn"))
  other = tiny_config("iqlearn")
  o = other.loss.iqlearn.online
  o.mix, o.every, o.buffer_size, o.temperature = 0.25, 3, 64, 2.0
  run = builders.build_run(other)
  assert run.state_abstract.extra == {}
  lower = lambda r: r.train_step.lower(r.abstract_state(), r.abstract_batch()).as_text()
  text = lower(run)
  assert text == lower(plain)
  assert "while" not in text
  enabled = builders.build_run(online_config())
  assert "while" in lower(enabled)  # the decoding loop


def test_write_is_fifo_and_draw_takes_filled_slots_only():
  abstract = online.replay_abstract({"decoder_target_tokens": ((4, 3), jnp.int32),
                                     "decoder_rewards": ((4, 3), jnp.float32)}, 12)
  replay = online.empty_replay(abstract)
  assert set(replay["rows"]) == {"decoder_target_tokens"}  # IQLearn reads no rewards
  assert replay["rows"]["decoder_target_tokens"].shape == (3, 4, 3)
  rows = lambda k: {"decoder_target_tokens": jnp.full((4, 3), k, jnp.int32)}
  replay = online.write(replay, rows(1))
  for seed in range(5):  # one slot filled: every row comes from it
    drawn = online.draw(replay, jax.random.key(seed))["decoder_target_tokens"]
    np.testing.assert_array_equal(drawn, np.ones((4, 3)))
  for k in (2, 3, 4):
    replay = online.write(replay, rows(k))
  assert int(replay["count"]) == 4
  np.testing.assert_array_equal(replay["rows"]["decoder_target_tokens"][:, 0, 0], [4, 2, 3])
  seen = set()
  for seed in range(20):
    drawn = np.asarray(online.draw(replay, jax.random.key(seed))["decoder_target_tokens"])
    assert (drawn == drawn[:, :1]).all()  # whole rows
    seen.update(drawn[:, 0].tolist())
  assert seen == {2, 3, 4}


def expected_rows(run, batch, tokens, lengths):
  """The batch layout of the samples, written out row by row in numpy."""
  n = batch["decoder_target_tokens"].shape[1]
  out = {k: np.zeros_like(batch[k]) for k in data.POLICY_FEATURES if k in batch}
  eos = run.model.cfg.eos_id
  for b in range(tokens.shape[0]):
    sample = list(tokens[b, :lengths[b]])
    if run.kind == "encdec":
      out["encoder_input_tokens"][b] = batch["encoder_input_tokens"][b]
      targets, start = sample, 0
    else:
      start = int(np.flatnonzero(batch["decoder_loss_weights"][b])[0])
      targets = list(batch["decoder_target_tokens"][b, :start]) + sample
      out["decoder_segment_ids"][b, :len(targets)] = 1
      out["decoder_positions"][b, :len(targets)] = np.arange(len(targets))
    finished = len(targets) <= n and sample[-1] == eos
    targets = targets[:n]
    end = len(targets)
    out["decoder_target_tokens"][b, :end] = targets
    out["decoder_input_tokens"][b, 1:end] = targets[:-1]
    # A sample cut short (no EOS in the row) ends in a weight-0 slot and bootstraps.
    out["decoder_loss_weights"][b, start:end if finished else end - 1] = 1
    out["decoder_truncated"][b, start:end] = 0 if finished else 1
  return out


def test_cut_samples_are_the_ones_without_eos_in_their_room():
  tokens = jnp.array([[5, 2, 0, 0], [5, 6, 7, 8], [5, 6, 2, 0], [0, 0, 0, 0]])
  kept, cut = online.cut_samples(tokens, jnp.array([2, 4, 3, 0]), jnp.array([4, 4, 2, 4]),
                                 eos_id=2)
  np.testing.assert_array_equal(kept, [2, 4, 2, 0])
  np.testing.assert_array_equal(cut, [False, True, True, False])


@pytest.mark.parametrize("size", ["t5-tiny", "gpt2-tiny"])
def test_refresh_writes_the_decoded_samples_in_the_batch_layout(size):
  run, it = setup(online_config(size, every=2, temperature=0.7))
  state = run.init_state()
  params = jax.device_get(state.params)
  key = online.online_keys(jax.random.fold_in(state.rng, 0))[0]
  batch = next(it)
  state, metrics = run.train_step(state, run.shard_batch(batch))
  assert int(state.extra["replay"]["count"]) == 1
  prompts = {k: batch[k] for k in ("encoder_input_tokens", "decoder_input_tokens") if k in batch}
  if run.kind == "decoder":
    prompts["prompt_lengths"] = np.argmax(batch["decoder_loss_weights"] > 0, axis=1) + 1
  out = generate(run.model, params, prompts, max_new_tokens=16, method="sample",
                 temperature=0.7, rng=key)
  tokens, lengths = np.asarray(out.tokens[:, 0]), np.asarray(out.lengths[:, 0])
  assert lengths.min() >= 1 and len(set(map(tuple, tokens))) > 1
  want = expected_rows(run, batch, tokens, lengths)
  rows = jax.device_get(state.extra["replay"]["rows"])
  assert set(rows) == set(want)
  for k in want:
    np.testing.assert_array_equal(rows[k][0], want[k], err_msg=k)
  np.testing.assert_array_equal(rows["decoder_target_tokens"][1], 0)  # the second slot is empty
  assert want["decoder_truncated"].any()  # most random samples run out of room
  assert float(metrics["policy_tokens"]) == float(want["decoder_loss_weights"].sum())
  state, _ = run.train_step(state, run.shard_batch(next(it)))  # step 1: no refresh (every=2)
  assert int(state.extra["replay"]["count"]) == 1
  state, _ = run.train_step(state, run.shard_batch(next(it)))
  assert int(state.extra["replay"]["count"]) == 2


def test_t5_online_run_same_on_one_and_eight_devices_and_resumes_bit_exactly(tmp_path,
                                                                                monkeypatch):
  one = train_and_evaluate(online_config(every=2), str(tmp_path / "one"))
  eight_cfg = online_config(every=2, mesh=(4, 2, 1), num_devices=0)
  eight = train_and_evaluate(eight_cfg, str(tmp_path / "eight"))
  for k in ("train/loss", "train/value_policy", "eval/loss"):
    np.testing.assert_allclose(eight[k], one[k], rtol=1e-5, err_msg=k)
  assert one["train/policy_tokens"] > 0
  assert_trees_close(trained_params(str(tmp_path / "eight"))[0],
                     trained_params(str(tmp_path / "one"))[0], atol=2e-5)
  with monkeypatch.context() as m:
    _crash_after(m, 4)  # saves at step 3, dies fetching step 5's batch
    with pytest.raises(_Crash):
      train_and_evaluate(eight_cfg, str(tmp_path / "resumed"))
  assert Checkpointer(str(tmp_path / "resumed"), eight_cfg.train).all_steps() == [3]
  train_and_evaluate(eight_cfg, str(tmp_path / "resumed"))
  assert_trees_equal(trained_params(str(tmp_path / "resumed"))[0],
                     trained_params(str(tmp_path / "eight"))[0])


def test_decoder_only_online_run_same_on_one_and_eight_devices(tmp_path):
  one = train_and_evaluate(online_config("gpt2-tiny", steps=4), str(tmp_path / "one"))
  eight = train_and_evaluate(online_config("gpt2-tiny", steps=4, mesh=(2, 2, 2), num_devices=0),
                             str(tmp_path / "eight"))
  for k in ("train/loss", "train/value_policy", "eval/loss"):
    np.testing.assert_allclose(eight[k], one[k], rtol=1e-5, err_msg=k)
  # Adam divides by sqrt(v): a gradient near 0 whose summation order differs moves its
  # parameter by a few 1e-5 (seen: 1 element of 16384 at 3.5e-5, with lr 3e-3).
  assert_trees_close(trained_params(str(tmp_path / "eight"))[0],
                     trained_params(str(tmp_path / "one"))[0], atol=1e-4)


def test_planner_counts_the_generation():
  offline = plan_train(tiny_config("iqlearn"), jax.devices()[:1], 2 ** 30)
  planned = plan_train(online_config(), jax.devices()[:1], 2 ** 30)
  assert planned.temporaries >= offline.temporaries
  assert planned.other_state > offline.other_state  # the replay buffer
