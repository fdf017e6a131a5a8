"""Hugging Face datasets as a source (``data.task="hf_dataset"``): a save_to_disk directory
and Parquet, CSV and JSON Lines files give exactly the rows the JSONL task gives, columns
mapped by name; a run trains on one; a hub name, a bad row and a missing split are refused
in one line; nothing is downloaded."""
import json
import os
import re

import datasets
import numpy as np
import pytest

from irl_lm import data
from irl_lm.errors import InputError, MissingError
from irl_lm.training import builders
from irl_lm.training.config import validate
from irl_lm.training.trainer import train_and_evaluate
from test_data_framing import FIXTURE, jsonl_config

COLUMNS = {"prompt": "question", "response": "answer", "reward": "score"}


def rows(split: str) -> list[dict]:
  with open(os.path.join(FIXTURE, "data", f"{split}.jsonl")) as f:
    out = [json.loads(line) for line in f]
  return [{"question": r["prompt"], "answer": r["response"], "score": i / 10}
          for i, r in enumerate(out)]


def sources(tmp_path) -> dict[str, dict]:
  """The same rows four ways: the JSONL reference, a saved directory, Parquet and CSV."""
  split_rows = {s: rows(s) for s in ("train", "validation")}
  out = {"jsonl": {}, "parquet": {}, "csv": {}}
  for split, rs in split_rows.items():
    (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    out["jsonl"][split] = str(tmp_path / f"{split}.jsonl")
    ds = datasets.Dataset.from_list(rs)
    ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    ds.to_csv(str(tmp_path / f"{split}.csv"), index=False)
    out["parquet"][split] = str(tmp_path / f"{split}.parquet")
    out["csv"][split] = str(tmp_path / f"{split}.csv")
  datasets.DatasetDict({s: datasets.Dataset.from_list(rs) for s, rs in split_rows.items()}) \
      .save_to_disk(str(tmp_path / "saved"))
  return out


def test_every_local_form_gives_the_rows_the_jsonl_task_gives(tmp_path):
  files = sources(tmp_path)
  vocab = data.make_vocabulary("hf_tokenizer", os.path.join(FIXTURE, "tokenizer.json"))
  fields = data.JsonlFields(**COLUMNS)
  want = data.register_jsonl_reward_task("ref_rows", files["jsonl"], vocab, fields=fields)
  got = {name: data.register_hf_dataset_task(f"hf_rows_{name}", path, fs, ("train", "validation"),
                                             vocab, fields=fields)
         for name, path, fs in (("saved", str(tmp_path / "saved"), {}),
                                ("parquet", "", files["parquet"]), ("csv", "", files["csv"]),
                                ("jsonl", "", files["jsonl"]))}
  for split in ("train", "validation"):
    ref = want.source.columns(split)
    assert len(ref["inputs"]) == len(rows(split)) and ref["turn_rewards"][:, 0].any()
    for name, task in got.items():
      cols = task.source.columns(split)
      assert sorted(cols) == sorted(ref), name
      for k in ref:
        np.testing.assert_array_equal(cols[k], ref[k], err_msg=f"{name} {split} {k}")


def test_a_run_trains_on_a_saved_dataset(tmp_path):
  sources(tmp_path)
  c = jsonl_config()
  c.data.task = "hf_dataset"
  c.data.hf_dataset.path = str(tmp_path / "saved")
  c.data.hf_dataset.fields.update(COLUMNS)
  c.train.steps = 2
  metrics = train_and_evaluate(c, str(tmp_path / "run"))
  assert np.isfinite(metrics["train/loss"])


def test_bad_sources_are_refused_in_one_line(tmp_path):
  vocab = data.make_vocabulary("hf_tokenizer", os.path.join(FIXTURE, "tokenizer.json"))
  hub = data.register_hf_dataset_task("hf_hub", "someone/some_dataset", {}, ("train",), vocab)
  with pytest.raises(MissingError, match=re.escape(
      "'someone/some_dataset' is no local directory, and irl_lm never downloads at run time; "
      "save it once where the Hub is reachable: python -c \"import datasets; "
      "datasets.load_dataset('someone/some_dataset').save_to_disk('DIR')\", then pass "
      "config.data.hf_dataset.path=DIR")):
    hub.source.columns("train")
  bad = rows("train")
  bad[3]["answer"] = ""
  datasets.Dataset.from_list(bad).to_parquet(str(tmp_path / "bad.parquet"))
  task = data.register_hf_dataset_task("hf_bad", "", {"train": str(tmp_path / "bad.parquet")},
                                       ("train",), vocab, fields=data.JsonlFields(**COLUMNS))
  with pytest.raises(data.JsonlFormatError, match=re.escape(
      f"{tmp_path / 'bad.parquet'}, split train, row 3: empty 'answer'")):
    task.source.columns("train")
  sources(tmp_path)
  c = jsonl_config()
  c.data.task = "hf_dataset"
  c.data.hf_dataset.path = str(tmp_path / "saved")
  c.data.hf_dataset.fields.update(COLUMNS)
  c.data.eval_split = "test"
  with pytest.raises(InputError, match=re.escape(
      f"the dataset has no split 'test' (config.data.hf_dataset.path, {tmp_path / 'saved'}): "
      "expected one of ['train', 'validation'] vs found 'test'")):
    builders.get_task(c)
  c = jsonl_config("ilql")
  c.data.task, c.data.hf_dataset.path, c.data.hf_dataset.fields.reward = "hf_dataset", "d", ""
  with pytest.raises(ValueError, match=re.escape(
      "ILQL learns from rewards, but the rows have none (config.data.hf_dataset.fields.reward)")):
    validate(c)
