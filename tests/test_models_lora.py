"""LoRA: fresh adapters compute the base exactly, PEFT adapters load with peft's numbers and
export back byte for byte, only adapters and algorithm parameters train, runs shard and
resume, plans shrink, and bad settings are refused in one line."""
import os
import re

import jax
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file

from irl_lm import data
from irl_lm.models import base_record, from_pretrained, save_pretrained
from irl_lm.models.hf_io import save_peft_adapter
from irl_lm.models.peft_format import CONFIG_FILE, WEIGHTS_FILE, read_config
from irl_lm.planning import plan_train
from irl_lm.training import builders
from irl_lm.training.checkpoints import Checkpointer
from irl_lm.training.config import validate
from irl_lm.training.trainer import train_and_evaluate
from test_training_run import _Crash, _crash_after
from training_utils import assert_trees_close, assert_trees_equal, tiny_config, trained_params

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
ALL = ("q", "k", "v", "o", "gate", "up", "down")


def rows(name):
  g = np.load(os.path.join(FIXTURES, "peft", name, "golden.npz"))
  batch = {"decoder_input_tokens": g["decoder"].astype(np.int32)}
  if "encoder" in g:
    batch["encoder_input_tokens"] = g["encoder"].astype(np.int32)
  return batch, g["logits"]


@pytest.mark.parametrize("name", ["llama_gqa", "t5_v1_1"])
def test_fresh_adapters_compute_exactly_what_the_base_does(name):
  base_model, base = from_pretrained(os.path.join(FIXTURES, "models", name))
  model, params = from_pretrained(os.path.join(FIXTURES, "models", name), lora_rank=4,
                                  lora_targets=ALL)
  flat = traverse_util.flatten_dict(params)
  assert any(k[-1] == "lora_b" for k in flat)
  assert all(not np.any(v) for k, v in flat.items() if k[-1] == "lora_b")  # B starts at 0
  batch, _ = rows(name)
  np.testing.assert_array_equal(model.apply({"params": params}, batch).logits,
                                base_model.apply({"params": base}, batch).logits)


@pytest.mark.parametrize("name,atol", [("llama_gqa", 1e-5), ("t5_v1_1", 5e-5)])
def test_a_peft_adapter_loads_with_peft_s_numbers_and_exports_back_byte_for_byte(name, atol,
                                                                                 tmp_path):
  """Goldens from peft 0.21.2 + transformers 5.25.0 (make_peft_fixtures.py); measured
  3.0e-7 (Llama) and 1.6e-5 (T5 v1.1, whose base alone differs by 7.6e-6)."""
  adapter = os.path.join(FIXTURES, "peft", name)
  model, params = from_pretrained(adapter)
  assert (model.cfg.lora_rank, model.cfg.lora_alpha) == (4, 8.0)
  batch, want = rows(name)
  got = np.asarray(model.apply({"params": params}, batch).logits)
  np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)
  base_model, base = from_pretrained(os.path.join(FIXTURES, "models", name))
  assert np.abs(np.asarray(base_model.apply({"params": base}, batch).logits) - want).max() > 1e-2
  save_peft_adapter(model, params, str(tmp_path), os.path.join(FIXTURES, "models", name))
  mine, theirs = load_file(str(tmp_path / WEIGHTS_FILE)), load_file(
      os.path.join(adapter, WEIGHTS_FILE))
  assert set(mine) == set(theirs)
  for k in theirs:
    np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)
  a, b = read_config(str(tmp_path)), read_config(adapter)
  for key in ("r", "lora_alpha", "peft_type"):
    assert a[key] == b[key]
  assert sorted(a["target_modules"]) == sorted(b["target_modules"])
  reloaded, again = from_pretrained(str(tmp_path))  # the export names its base absolutely
  np.testing.assert_array_equal(reloaded.apply({"params": again}, batch).logits, got)


def test_the_merged_export_is_the_adapted_model(tmp_path):
  model, params = from_pretrained(os.path.join(FIXTURES, "peft", "llama_gqa"))
  save_pretrained(model, params, str(tmp_path))
  plain, merged = from_pretrained(str(tmp_path))
  assert plain.cfg.lora_rank == 0
  batch, want = rows("llama_gqa")
  np.testing.assert_allclose(plain.apply({"params": merged}, batch).logits, want, atol=1e-5)


def lora_config(loss="mle", size="gpt2-tiny", **kw):
  c = tiny_config(loss, **kw)
  c.model.size = size
  c.model.lora.rank = 4
  c.model.lora.targets = ALL if not size.startswith("gpt2") else tuple(t for t in ALL
                                                                        if t != "gate")
  if loss == "gail":
    c.data.pack = False
  return c


@pytest.mark.parametrize("loss,own", [("mle", ()), ("iqlearn", ()), ("ilql", ("heads",)),
                                      ("gail", ("aux_heads",))])
def test_only_adapters_and_the_algorithms_own_parameters_train(loss, own):
  config = lora_config(loss)
  run = builders.build_run(config)
  state = run.init_state()
  opt_leaves = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(
      state.opt_state) if getattr(_, "ndim", 0) > 0}
  assert opt_leaves and all("lora_" in k or any(o in k for o in own) for k in opt_leaves)
  it = data.BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 16},
                          config.data.batch_size, seed=0, pack=config.data.pack)
  before = traverse_util.flatten_dict(jax.device_get(state.params))
  for _ in range(2):
    state, _ = run.train_step(state, run.shard_batch(next(it)))
  after = traverse_util.flatten_dict(jax.device_get(state.params))
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert {k for k in changed if k[-1] in ("lora_a", "lora_b")}
  assert all(k[-1] in ("lora_a", "lora_b") or k[0] in own for k in changed), changed
  for o in own:
    assert any(k[0] == o for k in changed)


def test_step_zero_equals_full_fine_tuning_and_a_lora_run_shards_and_resumes(tmp_path,
                                                                             monkeypatch):
  full = builders.build_run(tiny_config("iqlearn", steps=4))
  lora = builders.build_run(lora_config("iqlearn", size="t5-tiny", steps=4))
  it = data.BatchIterator(full.task, "train", full.kind, {"inputs": 32, "targets": 16}, 8,
                          seed=0)
  batch = next(it)
  _, m_full = full.train_step(full.init_state(), full.shard_batch(batch))
  _, m_lora = lora.train_step(lora.init_state(), lora.shard_batch(batch))
  assert float(m_lora["loss"]) == float(m_full["loss"])  # B = 0: the same model at step 0
  one = train_and_evaluate(lora_config("iqlearn", size="t5-tiny", steps=4), str(tmp_path / "1"))
  eight_cfg = lora_config("iqlearn", size="t5-tiny", steps=4, mesh=(2, 2, 2), num_devices=0)
  eight = train_and_evaluate(eight_cfg, str(tmp_path / "8"))
  np.testing.assert_allclose(eight["train/loss"], one["train/loss"], rtol=1e-5)
  assert_trees_close(trained_params(str(tmp_path / "8"))[0],
                     trained_params(str(tmp_path / "1"))[0], atol=1e-5)
  eight_cfg.train.checkpoint_every = 2
  with monkeypatch.context() as m:
    _crash_after(m, 3)
    with pytest.raises(_Crash):
      train_and_evaluate(eight_cfg, str(tmp_path / "resumed"))
  assert Checkpointer(str(tmp_path / "resumed"), eight_cfg.train).all_steps() == [2]
  train_and_evaluate(eight_cfg, str(tmp_path / "resumed"))
  assert_trees_equal(trained_params(str(tmp_path / "resumed"))[0],
                     trained_params(str(tmp_path / "8"))[0])


def test_a_lora_plan_holds_optimizer_state_for_the_adapters_only():
  full = plan_train(tiny_config("mle"), jax.devices()[:1], 2 ** 30)
  lora = plan_train(lora_config("mle", size="t5-tiny"), jax.devices()[:1], 2 ** 30)
  assert lora.params > full.params  # the adapters are added
  assert lora.optimizer < full.optimizer / 5


def test_bad_lora_settings_are_refused_in_one_line(tmp_path):
  c = lora_config()
  c.model.lora.targets = ("q", "qkv")
  with pytest.raises(ValueError, match=r"invalid choice \(config.model.lora.targets\): expected "
                     r"some of \['q', 'k', 'v', 'o', 'gate', 'up', 'down'\] vs found "
                     r"\('q', 'qkv'\)"):
    validate(c, data=False)
  adapter = tmp_path / "dora"
  adapter.mkdir()
  config = open(os.path.join(FIXTURES, "peft", "llama_gqa", CONFIG_FILE)).read()
  (adapter / CONFIG_FILE).write_text(config.replace('"use_dora": false', '"use_dora": true'))
  with pytest.raises(ValueError, match=r"adapter_config.json sets use_dora=True, which irl_lm "
                     r"cannot load exactly"):
    from_pretrained(str(adapter))


def test_a_lora_run_exports_an_adapter_that_generates_the_runs_text_and_starts_a_run(tmp_path):
  """Fine-tune the pretrained Llama fixture with LoRA (3 steps, adapters move), export it as
  a PEFT adapter and merged; generate --workdir, --hf_dir=ADAPTER and --hf_dir=MERGED write
  the same text, and a new run starts from the adapter with the run's adapters."""
  import json

  from irl_lm.workdir import export, restore_params
  from test_data_framing import FIXTURE, generated, jsonl_config
  c = jsonl_config()
  c.train.steps, c.train.checkpoint_every = 3, 3
  c.optimizer.warmup_steps = 0
  c.model.lora.rank, c.model.lora.targets = 4, ALL
  run = str(tmp_path / "run")
  train_and_evaluate(c, run)
  model, params, _, _ = restore_params(run)
  b = [v for k, v in traverse_util.flatten_dict(params).items() if k[-1] == "lora_b"]
  assert b and any(np.any(np.asarray(x)) for x in b)  # the adapters trained
  assert export(run, str(tmp_path / "adapter"), adapter=True) == []
  assert export(run, str(tmp_path / "merged")) == []
  assert read_config(str(tmp_path / "adapter"))["base_model_name_or_path"] == FIXTURE
  texts = generated(tmp_path, "once there was a cat named tom.\nthe dog ran.\n",
                    dict(workdir=run), dict(hf_dir=str(tmp_path / "adapter")),
                    dict(hf_dir=str(tmp_path / "merged")))
  assert texts[0] == texts[1] == texts[2]
  again = jsonl_config()
  again.model.init_from = str(tmp_path / "adapter")
  started = builders.build_run(again)
  assert started.model_cfg.lora_rank == 4
  got = traverse_util.flatten_dict(jax.device_get(started.initial_params()))
  for k, v in traverse_util.flatten_dict(jax.device_get(params)).items():
    np.testing.assert_array_equal(got[k], v, err_msg="/".join(k))
  saved = Checkpointer(run, c.train).saved_shapes(3)  # the adapters, never the frozen base
  params = [k for k in saved if k.startswith("params")]
  assert params and all("lora_" in k for k in params), params
  assert json.loads((tmp_path / "run" / base_record.RECORD_FILE).read_text())["sha256"] == \
      base_record.fingerprint(FIXTURE)
  assert json.loads((tmp_path / "adapter" / base_record.RECORD_FILE).read_text()) == \
      json.loads((tmp_path / "run" / base_record.RECORD_FILE).read_text())


def test_a_changed_base_model_is_refused_naming_both_and_nothing_is_touched(tmp_path):
  """A LoRA run resumed, generated from or exported on a base whose weights changed since
  it trained stops in one line that names both, and its checkpoints stay as they were."""
  import shutil

  from safetensors.numpy import save_file

  from irl_lm.errors import InputError
  from irl_lm.workdir import export
  from test_data_framing import FIXTURE, jsonl_config
  base = str(tmp_path / "base")
  shutil.copytree(FIXTURE, base)
  c = jsonl_config(fixture=base)
  c.train.steps, c.train.checkpoint_every = 2, 2
  c.model.lora.rank = 4
  run = str(tmp_path / "run")
  train_and_evaluate(c, run)
  weights = os.path.join(base, "model.safetensors")
  tensors = load_file(weights)
  name = sorted(tensors)[0]
  tensors[name] = tensors[name] + 1e-3
  save_file(tensors, weights)
  before = sorted(os.listdir(os.path.join(run, "checkpoints")))
  c.train.steps = 4
  why = (r"the base model differs from the one this run was trained on: \S+/base hashes to "
         r"sha256 [0-9a-f]{16}, this run's was \S+/base with sha256 [0-9a-f]{16}")
  with pytest.raises(InputError, match=why):
    train_and_evaluate(c, run)
  with pytest.raises(InputError, match=why):
    export(run, str(tmp_path / "merged"))
  assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == before
  assert not os.path.exists(tmp_path / "merged")


def test_an_adapter_of_another_base_model_is_refused_naming_both(tmp_path):
  """An adapter whose shapes do not fit the base it names, and an adapter irl_lm exported
  whose recorded base no longer hashes the same: one line each, naming adapter and base."""
  import json
  import shutil

  from safetensors.numpy import save_file

  from irl_lm.errors import InputError
  src = os.path.join(FIXTURES, "peft", "llama_gqa")
  other = tmp_path / "other"
  shutil.copytree(src, other)
  config = json.loads((other / CONFIG_FILE).read_text())
  wide = os.path.join(FIXTURES, "models", "gemma")  # head_dim 16, not 8
  (other / CONFIG_FILE).write_text(json.dumps({**config, "base_model_name_or_path": wide}))
  with pytest.raises(InputError, match=(
      r"the adapter was made for another base model: its "
      r"'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight' has shape \(32, 4\), "
      rf"the base model {re.escape(wide)} needs \(64, 4\) \({re.escape(str(other))}\)")):
    from_pretrained(str(other))
  base = tmp_path / "base"
  shutil.copytree(os.path.join(FIXTURES, "models", "llama_gqa"), base)
  model, params = from_pretrained(src)
  save_peft_adapter(model, params, str(tmp_path / "exported"), str(base))
  from_pretrained(str(tmp_path / "exported"))  # its own base: loads
  tensors = load_file(str(base / "model.safetensors"))
  name = sorted(tensors)[0]
  save_file({**tensors, name: tensors[name] * 2}, str(base / "model.safetensors"))
  with pytest.raises(InputError, match=(
      rf"the base model differs from the one this adapter was trained on: {re.escape(str(base))} "
      r"hashes to sha256 [0-9a-f]{16}, this adapter's was \S+ with sha256 [0-9a-f]{16}")):
    from_pretrained(str(tmp_path / "exported"))


def test_a_bfloat16_base_halves_the_frozen_bytes_and_computes_the_rounded_base(tmp_path):
  """``model.param_dtype='bfloat16'``: the frozen base is stored in bfloat16, adapters and
  heads stay float32 (and alone have optimizer state); step 0 computes exactly what a
  float32 run on the bfloat16-rounded base does; without LoRA it is refused."""
  import jax.numpy as jnp
  config = lora_config("ilql", size="t5-tiny")
  config.model.param_dtype = "bfloat16"
  run = builders.build_run(config)
  state = run.init_state()
  flat = traverse_util.flatten_dict(state.params)
  for k, v in flat.items():
    trains = k[-1] in ("lora_a", "lora_b") or k[0] == "heads"
    assert v.dtype == (jnp.float32 if trains else jnp.bfloat16), k
  full = builders.build_run(lora_config("ilql", size="t5-tiny"))
  rounded = jax.tree.map(lambda x: np.asarray(x, np.float32), state.params)  # a copy
  it = data.BatchIterator(run.task, "train", run.kind, {"inputs": 32, "targets": 16},
                          config.data.batch_size, seed=0)
  batch = next(it)
  _, m16 = run.train_step(state, run.shard_batch(batch))
  _, m32 = full.train_step(full.init_state(rounded), full.shard_batch(batch))
  np.testing.assert_allclose(float(m16["loss"]), float(m32["loss"]), rtol=1e-6)
  frozen = lambda r: sum(x.size * x.dtype.itemsize for k, x in traverse_util.flatten_dict(
      r.state_abstract.params).items() if k[-1] not in ("lora_a", "lora_b") and k[0] != "heads")
  assert frozen(run) * 2 == frozen(full)
  config.model.lora.rank = 0
  with pytest.raises(ValueError, match=r"model.param_dtype='bfloat16' stores a LoRA run's "
                     r"frozen base; without LoRA every parameter trains and stays float32"):
    builders.build_run(config)
