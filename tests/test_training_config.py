"""Config validation: each bad input gets one error naming the key."""
import contextlib

import jax
import numpy as np
import pytest

from irl_lm.errors import UserError
from irl_lm.training.config import base_config, validate
from irl_lm.training.trainer import train_and_evaluate
from training_utils import tiny_config


def test_base_and_shipped_configs_validate():
  import glob
  import importlib.util
  import os
  validate(base_config())
  root = os.path.join(os.path.dirname(__file__), "..", "configs")
  for fn in sorted(glob.glob(os.path.join(root, "*.py"))):
    spec = importlib.util.spec_from_file_location("cfg", fn)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config()
    with pytest.raises(ValueError, match="needs config.data.vocabulary_path") if \
        config.data.vocabulary else contextlib.nullcontext():
      validate(config)
    config.model.init_from = "/models/flan-t5-base"  # supplies the vocabulary
    validate(config)



def _with(**changes):
  c = tiny_config()
  for key, value in changes.items():
    node = c
    *path, last = key.split("__")
    for p in path:
      node = node[p]
    node[last] = value
  return c


@pytest.mark.parametrize("changes,message", [
    (dict(train__stepz=3), r"unknown config key \(config file\): expected 'config.train.steps' \(the closest valid key\) vs found 'config.train.stepz'"),
    (dict(model__size="t5-huge"), r"invalid choice \(config.model.size\): expected one of \[.*\] vs found 't5-huge'"),
    (dict(loss__name="ppo"), r"invalid choice \(config.loss.name\): expected one of .* vs found 'ppo'"),
    (dict(optimizer__name="sgd"), r"invalid choice \(config.optimizer.name\).* vs found 'sgd'"),
    (dict(optimizer__schedule="step"), r"invalid choice \(config.optimizer.schedule\).* vs found 'step'"),
    (dict(loss__ilql__reward_norm="batch"),
     r"invalid choice \(config.loss.ilql.reward_norm\): expected one of \['dataset', 'none', "
     r"'running'\] vs found 'batch'"),
    (dict(data__batch_size=9, optimizer__grad_accum_steps=2),
     r"\(config.data.batch_size\): expected a multiple of config.optimizer.grad_accum_steps=2 vs found 9"),
    (dict(train__steps=0), r"value out of range \(config.train.steps\): expected value > 0 vs found 0"),
    (dict(loss__ilql__tau=1.5), r"\(config.loss.ilql.tau\): expected 0 <= value <= 1 vs found 1.5"),
    (dict(loss__iqlearn__lam=-1.0), r"\(config.loss.iqlearn.lam\): expected value >= 0 vs found -1.0"),
    (dict(decoding__behaviour_top_k=-1),
     r"\(config.decoding.behaviour_top_k\): expected value >= 0 vs found -1"),
    (dict(decoding__behaviour_top_p=0.0),
     r"\(config.decoding.behaviour_top_p\): expected 0 < value <= 1 vs found 0.0"),
    (dict(mesh__shape=(2, 2)), r"not a mesh shape \(config.mesh.shape\): expected 3 positive sizes .* vs found \(2, 2\)"),
    (dict(data__vocabulary="sentencepiece"),
     r"config.data.vocabulary='sentencepiece' needs config.data.vocabulary_path"),
])
def test_bad_config_is_rejected_before_compiling(changes, message):
  with pytest.raises(ValueError, match=message):
    validate(_with(**changes))


def test_wrong_type_names_key():
  c = tiny_config()
  c.train.unlock()
  del c.train["steps"]
  c.train.steps = "many"
  with pytest.raises(ValueError, match=r"wrong type \(config.train.steps\): expected int vs found str"):
    validate(c)


def test_override_type_checked_by_ml_collections():
  c = tiny_config()
  with pytest.raises(TypeError):
    c.train.steps = "ten"


@pytest.mark.parametrize("changes,message", [
    (dict(mesh__shape=(3, -1, 1), mesh__num_devices=0),
     r"no such mesh \(mesh shape \(3, -1, 1\) does not divide 8 devices\) \(config.mesh.shape\)"),
    (dict(data__task="no_such_task"), r"No task named 'no_such_task'.*\(config.data.task='no_such_task'\)"),
    (dict(mesh__shape=(8, 1, 1), mesh__num_devices=0, data__batch_size=4),
     r"batch does not split over the mesh \(config.data.batch_size\): expected a multiple of "
     r"data x fsdp = 8 \(the mesh axes config.mesh.rules give 'batch'\) vs found 4"),
])
def test_run_time_config_errors(changes, message, tmp_path):
  with pytest.raises(UserError, match=message):
    train_and_evaluate(_with(**changes), str(tmp_path))


def test_batch_axes_follow_the_rules():
  """Rules that give 'batch' only the data axis: the batch-size check, the data shard and the
  batch sharding all read the same axes."""
  from irl_lm import sharding as shd
  from irl_lm.training import builders
  c = tiny_config(mesh=(2, 2, 1), num_devices=4)
  c.mesh.rules = tuple((k, "data" if k == "batch" else v) for k, v in c.mesh.rules)
  c.data.batch_size = 2  # not a multiple of data x fsdp = 4, a multiple of data = 2
  mesh = builders.make_mesh(c)
  rules = tuple(c.mesh.rules)
  assert shd.batch_axes(mesh, rules) == ("data",) and shd.batch_shards(mesh, rules) == 2
  batch = shd.shard_batch({"x": np.zeros((2, 3), np.int32)}, mesh, rules)
  assert batch["x"].sharding.spec == jax.sharding.PartitionSpec("data", None)
  default = tuple(tiny_config().mesh.rules)
  assert shd.batch_axes(mesh, default) == ("data", "fsdp")
  c.data.batch_size = 3
  with pytest.raises(UserError, match=r"expected a multiple of data = 2 \(the mesh axes "):
    builders.make_mesh(c)


def test_a_saved_config_is_merged_onto_the_defaults_once(tmp_path):
  """A workdir written before a key existed reads that key's default; a key since removed
  is dropped; the result validates."""
  import json
  from irl_lm.models import preset
  from irl_lm.training.checkpoints import CONFIG_FILE, read_config, write_config
  c = tiny_config("ilql")
  c.loss.ilql.tau = 0.9
  write_config(str(tmp_path), c, preset("t5-tiny", vocab_size=256))
  path = tmp_path / CONFIG_FILE
  raw = json.loads(path.read_text())
  del raw["loss"]["ilql"]["reward_norm"], raw["loss"]["ilql"]["separate_value_trunk"]
  del raw["data"]["jsonl"]
  raw["train"]["a_key_since_removed"] = 3
  path.write_text(json.dumps(raw))
  got = read_config(str(tmp_path))
  validate(got)
  assert got.loss.ilql.tau == 0.9 and got.loss.ilql.reward_norm == "none"
  assert got.loss.ilql.separate_value_trunk is False and got.data.jsonl.train == ""
  assert "a_key_since_removed" not in got.train
