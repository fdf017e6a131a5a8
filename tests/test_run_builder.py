"""The planner compiles exactly the train step the trainer runs, for every config in configs/."""
import glob
import json
import importlib.util
import os
import tempfile

import jax
import pytest

from irl_lm.planning.planner import lower_train
from irl_lm.training import builders
from irl_lm.training.checkpoints import tree_shapes
from irl_lm.training.host_batches import HostBatches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "fixtures", "data")
FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
VARIANTS = {"t5_xl.py": [":ilql"], "llama_3b.py": [":ilql"], "quickstart.py": [":mle"]}
CONFIGS = [f + v for f in FILES for v in [""] + VARIANTS.get(f, [])]
EMBEDDED = ("embedded_summarize", "embedded_ilql", "embedded_arithmetic")


def load(name: str):
  path, _, arg = name.partition(":")
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, "configs", path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  if config.data.vocabulary:  # the paper tasks' vocabulary, from a fixture instead of init_from
    config.data.vocabulary_path = os.path.join(
        DATA, "spiece.model" if config.data.vocabulary == "sentencepiece" else "tokenizer.json")
    config.data.tfds_data_dir = prepared_stand_in(config.data.task)
  return config


def prepared_stand_in(task: str) -> str:
  """A TFDS directory that looks prepared for ``task`` (the builder's start-up check passes;
  these tests read no example of it)."""
  from irl_lm.data.paper_tasks import PAPER_TASKS
  root = os.path.join(tempfile.gettempdir(), "irl_lm_tfds_stand_in")
  name, version = PAPER_TASKS[task].tfds_name.split(":")
  os.makedirs(os.path.join(root, name, version), exist_ok=True)
  with open(os.path.join(root, name, version, "dataset_info.json"), "w") as f:
    f.write(json.dumps({"name": name.split("/")[0], "version": version}))
  return root


def test_every_config_is_covered():
  assert {"quickstart.py", "iqlearn_xsum.py", "t5_xl.py", "llama_3b.py"} <= set(FILES)


def specs(shardings):
  return jax.tree.map(lambda s: tuple(s.spec), shardings)


@pytest.mark.parametrize("name", CONFIGS)
def test_planner_compiles_the_trainers_step(name):
  assert_planner_lowers_the_trainers_step(load(name))


def test_planner_compiles_the_trainers_step_with_a_separate_value_trunk():
  config = load("ilql_embedded.py")
  config.loss.ilql.separate_value_trunk = True
  assert_planner_lowers_the_trainers_step(config)
  assert "value_trunk" in builders.build_run(config, with_task=False).state_abstract.params


def assert_planner_lowers_the_trainers_step(config):
  trainer = builders.build_run(config)  # as train_and_evaluate builds it
  planned, lowered = lower_train(config, jax.devices())  # as plan_train lowers it
  # The planner reads no data, so its EOS and pad ids are the preset's; no step uses them.
  ids = dict(eos_id=0, pad_id=0)
  assert trainer.model_cfg.replace(**ids) == planned.model_cfg.replace(**ids)
  assert tree_shapes(trainer.state_abstract) == tree_shapes(planned.state_abstract)
  assert jax.tree.map(lambda x: x.dtype, trainer.state_abstract) == \
      jax.tree.map(lambda x: x.dtype, planned.state_abstract)
  assert specs(trainer.shardings) == specs(planned.shardings)
  if config.data.task in EMBEDDED:  # data on this machine: the trainer's first real batch
    d = config.data
    real = next(HostBatches(trainer.task, d.train_split, trainer.kind,
                            {"inputs": d.inputs_length, "targets": d.targets_length},
                            d.batch_size, seed=0, pack=d.pack, index=0, count=1))
    batch = trainer.shard_batch(real)
    want = {k: (v.shape, v.dtype) for k, v in planned.abstract_batch().items()}
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == want
  else:
    batch = trainer.abstract_batch()
  trained = trainer.train_step.lower(trainer.abstract_state(), batch)
  assert trained.as_text() == lowered.as_text()


@pytest.mark.parametrize("size, pack", [("t5-tiny", False), ("t5-tiny", True),
                                        ("gpt2-tiny", False)])
def test_abstract_batch_is_the_real_batch(size, pack):
  """One feature table (data/features.py): what the planner compiles for is what comes in."""
  from irl_lm import data
  from training_utils import tiny_config
  c = tiny_config()
  c.model.size, c.data.pack = size, pack
  run = builders.build_run(c)
  lengths = {"inputs": c.data.inputs_length, "targets": c.data.targets_length}
  batch = next(data.BatchIterator(run.task, "train", run.kind, lengths, c.data.batch_size,
                                  pack=pack))
  want = {k: (v.shape, v.dtype) for k, v in run.abstract_batch().items()}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == want
