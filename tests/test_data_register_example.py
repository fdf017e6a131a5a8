"""Runs docs/data.md's "Registering a new dataset" example (tests/fixtures/data/my_tasks.py) end to end."""
import json
import os
import shutil

import numpy as np
import pytest

from irl_lm.data import BatchIterator, compute_metrics, eval_examples, get_task

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
EXAMPLE = os.path.join(FIXTURES, "my_tasks.py")
DATA_DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "data.md")
QA = [("anna has 3 apples and buys 4 more . how many ?", "3 + 4 = 7 . #### 7"),
      ("ben has 10 pens and gives away 2 . how many ?", "10 - 2 = 8 . #### 8"),
      ("6 boxes of 2 cakes . how many cakes ?", "6 * 2 = 12 . #### 12"),
      ("tom has 5 cards and finds 5 more . how many ?", "5 + 5 = 10 . #### 10")]


@pytest.fixture
def project(tmp_path, monkeypatch):
  """A directory laid out as docs/data.md describes: my_tasks.py, spiece.model, my_data/."""
  shutil.copy(EXAMPLE, tmp_path / "my_tasks.py")
  shutil.copy(os.path.join(FIXTURES, "spiece.model"), tmp_path / "spiece.model")
  data = tmp_path / "my_data"
  data.mkdir()
  for split, rows in (("train", QA), ("validation", QA[:2])):
    (data / f"{split}.tsv").write_text("".join(f"{q}\t{a}\n" for q, a in rows))
  for name, rows in (("rewards", QA), ("rewards_validation", QA[2:])):
    lines = [json.dumps({"prompt": q, "response": a, "reward": float(i)})
             for i, (q, a) in enumerate(rows)]
    (data / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  return tmp_path


def test_example_trains_and_evaluates(project):
  task = get_task("my_tasks:my_task")  # what --config.data.task=my_tasks:my_task does
  batch = next(BatchIterator(task, "train", "encdec", {"inputs": 64, "targets": 32}, 2, seed=0))
  assert batch["encoder_input_tokens"].shape == (2, 64)
  assert batch["decoder_loss_weights"].sum() == (batch["decoder_target_tokens"] > 0).sum()
  examples = eval_examples("my_task", "validation")
  assert examples[0]["inputs_pretokenized"] == f"question: {QA[0][0]}"
  assert compute_metrics("my_task", examples, ["#### 7", "#### 9"]) == {"accuracy": 50.0}

  ilql = get_task("my_ilql_task")
  batch = next(BatchIterator(ilql, "train", "decoder", {"inputs": 64, "targets": 32}, 4,
                             shuffle=False, repeat=False))
  np.testing.assert_array_equal(batch["decoder_rewards"].sum(axis=1), [0.0, 1.0, 2.0, 3.0])
  examples = eval_examples("my_ilql_task", "validation")
  assert compute_metrics(ilql, examples, [a for _, a in QA[2:]])["rougeL"] == pytest.approx(100.0)


def test_readme_command_trains_on_the_example(project):
  """The docs' `--config.data.task=my_tasks:my_task` run, in-process and shortened."""
  import importlib.util
  from irl_lm.training.trainer import train_and_evaluate
  spec = importlib.util.spec_from_file_location(
      "quickstart", os.path.join(os.path.dirname(__file__), os.pardir, "configs", "quickstart.py"))
  quickstart = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(quickstart)
  config = quickstart.get_config()
  config.data.task = "my_tasks:my_task"
  config.eval.num_examples = 2
  config.data.batch_size = 4
  config.train.steps = 2
  config.mesh.num_devices = 1
  config.train.peak_flops_per_device = 1e11
  metrics = train_and_evaluate(config, str(project / "run"))
  assert np.isfinite(metrics["train/loss"]) and "eval/accuracy" in metrics


def test_data_doc_shows_the_example_verbatim():
  """docs/data.md ("Registering a new dataset") shows tests/fixtures/data/my_tasks.py verbatim."""
  with open(EXAMPLE, encoding="utf-8") as f:
    code = f.read()
  with open(DATA_DOC, encoding="utf-8") as f:
    doc = f.read()
  assert f"```python\n{code}```" in doc
