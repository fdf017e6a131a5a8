"""The jitted train step: NaN skipping, gradient accumulation, Polyak targets, export."""
import os

import jax
import numpy as np
import pytest

from irl_lm import data
from irl_lm.models import build_model, from_pretrained
from irl_lm.training import builders
from irl_lm.training.checkpoints import Checkpointer
from irl_lm.training.trainer import NonFiniteError, train_and_evaluate
from irl_lm.workdir import restore_params
from training_utils import assert_trees_close, assert_trees_equal, tiny_config, trained_params


def setup(config):
  """(state, step, batches) of the run the builder makes; the step takes host batches."""
  run = builders.build_run(config)
  it = data.BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 16},
                          config.data.batch_size, seed=0)
  step = lambda state, batch: run.train_step(state, run.shard_batch(batch))
  return run.init_state(), step, it


def test_nonfinite_update_is_skipped():
  state, step, it = setup(tiny_config("ilql"))
  batch = next(it)
  bad = dict(batch, decoder_rewards=np.where(batch["decoder_loss_weights"] > 0, np.nan, 0.0)
             .astype(np.float32))
  before = jax.device_get(state)
  state, metrics = step(state, bad)
  assert int(metrics["nonfinite"]) == 1 and int(state.nonfinite) == 1
  assert int(state.step) == 1 and int(state.skipped) == 1
  assert_trees_equal(state.params, before.params)
  assert_trees_equal(state.opt_state, before.opt_state)
  assert_trees_equal(state.extra["target_q"], before.extra["target_q"])
  state, metrics = step(state, batch)
  assert int(state.nonfinite) == 0 and int(state.skipped) == 1
  assert not np.allclose(np.asarray(state.params["heads"]["v"]["out"]["kernel"]),
                         before.params["heads"]["v"]["out"]["kernel"])


def test_polyak_moves_target_heads_by_rate():
  c = tiny_config("ilql")
  c.loss.ilql.polyak_rate = 0.25
  state, step, it = setup(c)
  old_target = jax.device_get(state.extra["target_q"])
  new, _ = step(state, next(it))
  online = jax.device_get(new.params["heads"])
  want = jax.tree.map(lambda t, o: 0.25 * o + 0.75 * t, old_target,
                      {k: online[k] for k in ("q1", "q2")})
  assert_trees_close(new.extra["target_q"], want, atol=1e-7)


def test_polyak_every_k_steps():
  c = tiny_config("ilql")
  c.loss.ilql.polyak_every = 2
  state, step, it = setup(c)
  t0 = jax.device_get(state.extra["target_q"])
  s1, _ = step(state, next(it))
  assert_trees_equal(s1.extra["target_q"], t0)  # one update applied: 1 % 2 != 0
  s2, _ = step(s1, next(it))
  assert not np.allclose(np.asarray(s2.extra["target_q"]["q1"]["out"]["kernel"]),
                         t0["q1"]["out"]["kernel"])


@pytest.mark.parametrize("loss", ["iqlearn", "ilql"])
def test_microbatch_accumulation_equals_full_batch(loss):
  full = tiny_config(loss)
  acc = tiny_config(loss)
  acc.optimizer.grad_accum_steps = 4
  s_full, step_full, it = setup(full)
  s_acc, step_acc, _ = setup(acc)
  batch = next(it)
  a, ma = step_full(s_full, batch)
  b, mb = step_acc(s_acc, batch)
  np.testing.assert_allclose(mb["loss"], ma["loss"], rtol=1e-5)
  np.testing.assert_allclose(mb["grad_norm"], ma["grad_norm"], rtol=1e-4)
  assert_trees_close(b.params, a.params, atol=2e-5)  # Adam amplifies rounding in tiny grads


def test_multisteps_applies_one_update_per_k_steps():
  c = tiny_config("mle")
  c.optimizer.grad_accum_steps = 2
  c.optimizer.grad_accum_mode = "multisteps"
  state, step, it = setup(c)
  p0 = jax.device_get(state.params)
  s1, _ = step(state, next(it))
  assert_trees_equal(s1.params, p0)
  s2, _ = step(s1, next(it))
  assert not np.allclose(np.asarray(s2.params["shared"]["embedding"]), p0["shared"]["embedding"])


def test_lam_warmup_counts_optimizer_updates_not_micro_steps():
  c = tiny_config("iqlearn")
  c.loss.iqlearn.lam = 0.4
  c.loss.iqlearn.lam_warmup_steps = 4
  c.optimizer.grad_accum_steps = 2
  c.optimizer.grad_accum_mode = "multisteps"
  state, step, it = setup(c)
  lams = []
  for _ in range(6):
    state, metrics = step(state, next(it))
    lams.append(float(metrics["lam"]))
  # Micro-steps 1..6 have applied 0, 0, 1, 1, 2, 2 updates before they run.
  np.testing.assert_allclose(lams, [0.0, 0.0, 0.1, 0.1, 0.2, 0.2], rtol=1e-6)


def test_run_stops_after_consecutive_nonfinite_steps(tmp_path, monkeypatch):
  real = data.BatchIterator.__next__
  calls = {"n": 0}

  def poisoned(self):
    batch = real(self)
    if self.repeat:
      calls["n"] += 1
      if calls["n"] > 3:
        batch = dict(batch, decoder_rewards=np.full_like(batch["decoder_rewards"], np.nan))
    return batch
  monkeypatch.setattr(data.BatchIterator, "__next__", poisoned)
  c = tiny_config("ilql", steps=10)
  c.train.max_nonfinite_steps = 2
  with pytest.raises(NonFiniteError, match=r"2 consecutive steps \(up to step 5\).*step 3 in"):
    train_and_evaluate(c, str(tmp_path))
  assert Checkpointer(str(tmp_path), c.train).all_steps() == [3]
  params, _ = trained_params(str(tmp_path))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_export_to_hugging_face(tmp_path):
  c = tiny_config("ilql", steps=3)
  train_and_evaluate(c, str(tmp_path / "run"))
  import subprocess
  import sys
  subprocess.run([sys.executable, "-m", "irl_lm.export", f"--workdir={tmp_path / 'run'}",
                  f"--output={tmp_path / 'hf'}"], check=True, capture_output=True)
  params, _ = trained_params(str(tmp_path / "run"))
  model, loaded = from_pretrained(str(tmp_path / "hf"), value_heads=True)
  assert_trees_equal(loaded, params)
  assert os.path.exists(tmp_path / "hf" / "value_heads.safetensors")


def test_generate_cli_from_workdir(tmp_path):
  import json
  import subprocess
  import sys
  c = tiny_config("ilql", steps=3)
  train_and_evaluate(c, str(tmp_path / "run"))
  (tmp_path / "prompts.txt").write_text("what color is each : sky , coal , lemon , pig ?\n"
                                        "what color is each : sea , crow , corn , mud ?\n")
  proc = subprocess.run(
      [sys.executable, "-m", "irl_lm.generate", f"--workdir={tmp_path / 'run'}",
       f"--input={tmp_path / 'prompts.txt'}", f"--output={tmp_path / 'out.jsonl'}",
       "--config.decoding.ilql_beta=4.0", "--config.decoding.max_new_tokens=8"],
      capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert [r["prompt"] for r in rows] == ["what color is each : sky , coal , lemon , pig ?",
                                         "what color is each : sea , crow , corn , mud ?"]
  assert all(len(r["samples"]) == len(r["scores"]) == 1 for r in rows)


def test_adafactor_step():
  c = tiny_config("ilql")
  c.optimizer.name = "adafactor"
  state, step, it = setup(c)
  p0 = jax.device_get(state.params)
  new, metrics = step(state, next(it))
  assert np.isfinite(float(metrics["loss"])) and int(new.nonfinite) == 0
  assert not np.allclose(np.asarray(new.params["shared"]["embedding"]), p0["shared"]["embedding"])


def test_init_from_hugging_face_checkpoint(tmp_path):
  """--config.model.init_from starts from the checkpoint's weights (placed on the mesh)."""
  from irl_lm.models import init_params, preset, save_pretrained
  cfg = preset("t5-tiny", vocab_size=256)
  hf = init_params(cfg, jax.random.key(42))
  save_pretrained(build_model(cfg), hf, str(tmp_path / "hf"))
  c = tiny_config("iqlearn", steps=1, mesh=(2, 2, 2), num_devices=0)
  c.model.init_from = str(tmp_path / "hf")
  c.optimizer.learning_rate = 1e-9
  train_and_evaluate(c, str(tmp_path / "run"))
  params, _ = trained_params(str(tmp_path / "run"))
  assert_trees_close(params, hf, atol=1e-6)


TERMS = ("awac_loss", "q_loss", "v_loss", "cql_loss")


def term_grads(config):
  """{term: gradient of that ILQL loss term w.r.t. the params} on the run's real loss fn."""
  run = builders.build_run(config)
  state = run.init_state()
  it = data.BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 16},
                          config.data.batch_size, seed=0)
  batch = run.shard_batch(next(it))
  loss_fn = run.algorithm.make_loss(run.model)
  terms = lambda p: jax.numpy.stack(
      [loss_fn(p, state.extra, batch, state.rng, 0)[1][k] for k in TERMS])
  grads = jax.device_get(jax.jit(jax.jacrev(terms))(state.params))
  return {k: jax.tree.map(lambda g, i=i: g[i], grads) for i, k in enumerate(TERMS)}


def all_zero(tree):
  return all(not np.asarray(x).any() for x in jax.tree.leaves(tree))


def test_separate_value_trunk_splits_the_gradients():
  """The BC/AWAC term trains only the policy trunk; Q, V and CQL only the value trunk."""
  from irl_lm.models import VALUE_TRUNK, trunk_params
  c = tiny_config("ilql")
  c.loss.ilql.awac_beta = 0.5  # AWAC weights read Q and V (through a stop-gradient)
  shared = term_grads(c)
  c.loss.ilql.separate_value_trunk = True
  split = term_grads(c)
  assert not any(all_zero(trunk_params(shared[k])) for k in TERMS)  # one trunk: all reach it
  assert all_zero(split["awac_loss"][VALUE_TRUNK])
  assert not all_zero(trunk_params(split["awac_loss"]))
  for k in ("q_loss", "v_loss", "cql_loss"):
    assert all_zero(trunk_params(split[k])), k
    assert not all_zero(split[k][VALUE_TRUNK]), k


def test_separate_value_trunk_restores_exports_and_decodes(tmp_path):
  import subprocess
  import sys
  from irl_lm.decoding import generate
  from irl_lm.models import VALUE_TRUNK
  c = tiny_config("ilql", steps=3)
  c.loss.ilql.separate_value_trunk = True
  train_and_evaluate(c, str(tmp_path / "run"))
  subprocess.run([sys.executable, "-m", "irl_lm.export", f"--workdir={tmp_path / 'run'}",
                  f"--output={tmp_path / 'hf'}"], check=True, capture_output=True)
  model, params, _, _ = restore_params(str(tmp_path / "run"))
  assert VALUE_TRUNK in params
  assert os.path.exists(tmp_path / "hf" / "value_trunk.safetensors")
  _, loaded = from_pretrained(str(tmp_path / "hf"), value_heads=True, value_trunk=True)
  assert_trees_equal(loaded, params)
  batch = {"encoder_input_tokens": np.arange(1, 17, dtype=np.int32).reshape(2, 8)}
  kw = dict(max_new_tokens=6, ilql_beta=4.0, use_target_heads=False)
  np.testing.assert_array_equal(generate(model, loaded, batch, **kw).tokens,
                                generate(model, params, batch, **kw).tokens)
  import json
  import ml_collections
  from irl_lm import generate as cli
  from irl_lm.decoding import default_config
  config = ml_collections.ConfigDict({"decoding": default_config()})
  config.decoding.ilql_beta, config.decoding.max_new_tokens = 4.0, 6
  (tmp_path / "prompts.txt").write_text("what color is each : sky , coal , lemon , pig ?\n")
  cli.run(config, input_path=str(tmp_path / "prompts.txt"),
          output_path=str(tmp_path / "out.jsonl"), workdir=str(tmp_path / "run"))
  rows = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert len(rows) == 1 and len(rows[0]["samples"]) == len(rows[0]["scores"]) == 1


def test_value_trunk_starts_as_a_copy_of_the_init_from_checkpoint(tmp_path):
  from irl_lm.models import VALUE_TRUNK, init_params, preset, save_pretrained, trunk_params
  cfg = preset("t5-tiny", vocab_size=256)
  hf = init_params(cfg, jax.random.key(42))
  save_pretrained(build_model(cfg), hf, str(tmp_path / "hf"))
  c = tiny_config("ilql", mesh=(2, 2, 2), num_devices=0)
  c.model.init_from = str(tmp_path / "hf")
  c.loss.ilql.separate_value_trunk = True
  run = builders.build_run(c)
  params = run.initial_params()
  assert_trees_equal(trunk_params(params), hf)
  assert_trees_equal(params[VALUE_TRUNK], hf)
  assert jax.tree.map(lambda x: x.sharding, params[VALUE_TRUNK]) == \
      jax.tree.map(lambda x: x.sharding, trunk_params(params))
  state = run.init_state(params)
  assert_trees_equal(state.params[VALUE_TRUNK], hf)
