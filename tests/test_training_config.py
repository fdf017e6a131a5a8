"""Config validation: each bad input gets one error naming the key."""
import contextlib

import pytest

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
    (dict(train__stepz=3), r"unknown config key 'config.train.stepz'"),
    (dict(model__size="t5-huge"), r"config.model.size='t5-huge': expected one of"),
    (dict(loss__name="ppo"), r"config.loss.name='ppo': expected one of"),
    (dict(optimizer__name="sgd"), r"config.optimizer.name='sgd'"),
    (dict(optimizer__schedule="step"), r"config.optimizer.schedule='step'"),
    (dict(loss__name="ilql", model__value_heads=False),
     r"config.loss.name='ilql' needs config.model.value_heads=True"),
    (dict(data__batch_size=9, optimizer__grad_accum_steps=2),
     r"config.data.batch_size=9 is not divisible by config.optimizer.grad_accum_steps=2"),
    (dict(train__steps=0), r"config.train.steps=0 must be positive"),
    (dict(loss__ilql__tau=1.5), r"config.loss.ilql.tau=1.5 must be in \[0, 1\]"),
    (dict(loss__iqlearn__lam=-1.0), r"config.loss.iqlearn.lam=-1.0 must be >= 0"),
    (dict(mesh__shape=(2, 2)), r"config.mesh.shape=\(2, 2\): expected 3 entries"),
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
  with pytest.raises(ValueError, match=r"config.train.steps='many' has type str, expected int"):
    validate(c)


def test_override_type_checked_by_ml_collections():
  c = tiny_config()
  with pytest.raises(TypeError):
    c.train.steps = "ten"


@pytest.mark.parametrize("changes,message", [
    (dict(mesh__shape=(3, -1, 1), mesh__num_devices=0),
     r"config.mesh.shape: mesh shape \(3, -1, 1\) does not divide 8 devices"),
    (dict(data__task="no_such_task"), r"config.data.task='no_such_task'"),
    (dict(mesh__shape=(8, 1, 1), mesh__num_devices=0, data__batch_size=4),
     r"config.data.batch_size=4 is not divisible by the mesh's data x fsdp = 8"),
])
def test_run_time_config_errors(changes, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    train_and_evaluate(_with(**changes), str(tmp_path))
