"""Trackers: Weights & Biases (offline) gets the scalars the run logs and the run's config, a
resumed run continues the same W&B run, TensorBoard is still written, and a tracker whose
package is missing is refused before anything compiles."""
import glob
import json
import os
import sys

import pytest

from irl_lm.training.config import validate
from irl_lm.training.trackers import WANDB_ID_FILE
from irl_lm.training.trainer import train_and_evaluate
from training_utils import tiny_config

BLOCK = 32768  # W&B's transaction log: LevelDB's log format after a 7-byte file header


def wandb_records(path: str) -> list:
  """The protobuf records of an offline W&B run file."""
  from wandb.proto import wandb_internal_pb2
  data = open(path, "rb").read()
  assert data[:4] == b":W&B"
  pos, out, buf = 7, [], b""
  while pos + 7 <= len(data):
    left = BLOCK - pos % BLOCK
    length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
    if left < 7 or (length == 0 and kind == 0):  # the rest of a block is padding
      pos += left
      continue
    buf += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):  # a whole record, or the last piece of one
      record = wandb_internal_pb2.Record()
      record.ParseFromString(buf)
      out.append(record)
      buf = b""
  return out


def history_and_config(path: str) -> tuple[dict[int, dict[str, float]], dict[str, object], str]:
  history, config, run_id = {}, {}, ""
  for r in wandb_records(path):
    kind = r.WhichOneof("record_type")
    if kind == "history":
      items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
      history[int(items.pop("_step", r.history.step.num))] = items
    elif kind == "config":
      config.update({i.key: json.loads(i.value_json) for i in r.config.update})
    elif kind == "run":
      run_id = r.run.run_id
      config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
  return history, config, run_id


def test_wandb_gets_the_runs_scalars_and_config_and_a_resumed_run_continues_it(tmp_path,
                                                                               monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  c = tiny_config("mle", steps=4)
  c.train.trackers = "tensorboard,wandb"
  c.train.checkpoint_every = 4
  run = str(tmp_path / "run")
  last = train_and_evaluate(c, run)
  (path,) = glob.glob(os.path.join(run, "wandb", "offline-run-*", "run-*.wandb"))
  history, config, run_id = history_and_config(path)
  assert sorted(history) == [2, 4]  # train.log_every = 2
  assert history[4]["train/loss"] == pytest.approx(last["train/loss"], rel=1e-6)
  assert config["loss"]["name"] == "mle" and config["train"]["steps"] == 4
  assert run_id == open(os.path.join(run, WANDB_ID_FILE)).read().strip()
  assert glob.glob(os.path.join(run, "tensorboard", "events.out.tfevents.*"))
  c.train.steps = 6
  train_and_evaluate(c, run)
  paths = sorted(glob.glob(os.path.join(run, "wandb", "offline-run-*", "run-*.wandb")))
  assert len(paths) == 2 and paths[0] == path
  history, _, resumed_id = history_and_config(paths[1])
  assert resumed_id == run_id and sorted(history) == [6]


def test_a_tracker_that_is_not_installed_or_not_known_is_refused(monkeypatch):
  c = tiny_config("mle")
  c.train.trackers = "tensorboard,mlflow"
  with pytest.raises(ValueError, match=r"invalid choice \(config.train.trackers\): expected some "
                     r"of \['tensorboard', 'wandb'\] vs found 'tensorboard,mlflow'"):
    validate(c, data=False)
  c.train.trackers = "wandb"
  monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
  with pytest.raises(ValueError, match=r"^config.train.trackers names wandb, which is not "
                     r"installed \(config.train.trackers\): expected pip install "
                     r"'irl_lm\[wandb\]'$"):
    validate(c, data=False)
