"""Bad user files and names raise one `irl_lm.errors.UserError` that names the file (and line)."""
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from irl_lm.data import DatasetNotPreparedError, JsonlFormatError, get_task, make_vocabulary
from irl_lm.data.jsonl import read_jsonl
from irl_lm.errors import ConfigError, InputError, MissingError, UnknownNameError, UserError
from irl_lm.models import from_pretrained, preset

MODELS = os.path.join(os.path.dirname(__file__), "fixtures", "models")
DATA = os.path.join(os.path.dirname(__file__), "fixtures", "data")
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4b0d5d4e3ba8c0a2d5b6e4c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2\n"
               "size 124968\n")
SINGLE = json.dumps({"prompt": "a b", "response": "c d", "reward": 1.0})


def raises(cls, *parts):
  """pytest.raises(cls) that also checks the message is one line holding every part."""

  class Check:
    def __enter__(self):
      self.ctx = pytest.raises(cls)
      self.info = self.ctx.__enter__()
      return self.info

    def __exit__(self, *exc):
      suppressed = self.ctx.__exit__(*exc)
      assert type(self.info.value) is cls, type(self.info.value)  # the exact class
      message = str(self.info.value)
      assert "\n" not in message, message
      for part in parts:
        assert str(part) in message, (part, message)
      return suppressed

  return Check()


@pytest.fixture
def gpt2(tmp_path):
  dst = tmp_path / "gpt2"
  shutil.copytree(os.path.join(MODELS, "gpt2"), dst)
  return dst


# --- models: from_pretrained ---------------------------------------------------------------


def test_truncated_weights(gpt2):
  fn = gpt2 / "model.safetensors"
  fn.write_bytes(fn.read_bytes()[:60_000])
  with raises(InputError, "truncated or corrupt safetensors file", fn, "60000 bytes"):
    from_pretrained(str(gpt2))


def test_weights_cut_inside_the_header(gpt2):
  fn = gpt2 / "model.safetensors"
  fn.write_bytes(fn.read_bytes()[:100])
  with raises(InputError, "truncated or corrupt safetensors file", fn):
    from_pretrained(str(gpt2))


def test_corrupt_header(gpt2):
  fn = gpt2 / "model.safetensors"
  data = bytearray(fn.read_bytes())
  data[8:12] = b"\xff\xfe\x00]"
  fn.write_bytes(bytes(data))
  with raises(InputError, "truncated or corrupt safetensors file", fn):
    from_pretrained(str(gpt2))


def test_git_lfs_pointer_instead_of_weights(gpt2):
  fn = gpt2 / "model.safetensors"
  fn.write_text(LFS_POINTER)
  with raises(InputError, "Git LFS pointer", "git lfs pull", fn):
    from_pretrained(str(gpt2))


def test_missing_weights_file(gpt2):
  os.remove(gpt2 / "model.safetensors")
  with raises(MissingError, "no model.safetensors", gpt2):
    from_pretrained(str(gpt2))


def test_missing_directory_and_config(gpt2, tmp_path):
  with raises(MissingError, "checkpoint directory not found", tmp_path / "nope"):
    from_pretrained(str(tmp_path / "nope"))
  os.remove(gpt2 / "config.json")
  with raises(MissingError, "no config.json", gpt2):
    from_pretrained(str(gpt2))


def test_malformed_config_names_file_line_and_column(gpt2):
  fn = gpt2 / "config.json"
  lines = fn.read_text().splitlines()
  lines[2] = lines[2].replace(",", ",,")  # line 3
  fn.write_text("\n".join(lines))
  with raises(InputError, "invalid JSON", fn, "line 3 column"):
    from_pretrained(str(gpt2))


def test_config_lfs_pointer(gpt2):
  (gpt2 / "config.json").write_text(LFS_POINTER)
  with raises(InputError, "Git LFS pointer", gpt2 / "config.json"):
    from_pretrained(str(gpt2))


@pytest.mark.parametrize("edit,cls,parts", [
    (lambda c: c.pop("n_embd"), InputError, ["missing required key 'n_embd'"]),
    (lambda c: c.update(model_type="bloom"), InputError, ["model_type='bloom' is not supported"]),
    (lambda c: c.update(n_head="twelve"), InputError, ["bad value"]),
    (lambda c: c.update(activation_function="quick_gelu"), InputError,
     ["activation_function='quick_gelu' is not supported"]),
])
def test_bad_config_values_name_the_file(gpt2, edit, cls, parts):
  fn = gpt2 / "config.json"
  cfg = json.loads(fn.read_text())
  edit(cfg)
  fn.write_text(json.dumps(cfg))
  with raises(cls, fn, *parts):
    from_pretrained(str(gpt2))


def test_config_not_an_object(gpt2):
  (gpt2 / "config.json").write_text("[1, 2]")
  with raises(InputError, "not a JSON object", gpt2 / "config.json"):
    from_pretrained(str(gpt2))


def test_inconsistent_heads_in_config_name_the_file(tmp_path):
  d = tmp_path / "llama"
  shutil.copytree(os.path.join(MODELS, "llama_gqa"), d)
  cfg = json.loads((d / "config.json").read_text())
  cfg["num_key_value_heads"] = 3
  (d / "config.json").write_text(json.dumps(cfg))
  with raises(ConfigError, "num_kv_heads=3", d / "config.json"):
    from_pretrained(str(d))


def test_unknown_override(gpt2):
  with raises(ConfigError, "unknown model option 'scan_layer'; did you mean 'scan_layers'?"):
    from_pretrained(str(gpt2), scan_layer=True)
  with raises(ConfigError, "unknown model option 'n_layers'"):
    preset("t5-tiny", n_layers=3)


def _shard(gpt2):
  """Splits model.safetensors into two shards with an index; returns the shard names."""
  w = load_file(str(gpt2 / "model.safetensors"))
  keys = sorted(w)
  names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
  halves = [keys[:len(keys) // 2], keys[len(keys) // 2:]]
  for name, part in zip(names, halves):
    save_file({k: w[k] for k in part}, str(gpt2 / name))
  index = {"weight_map": {k: n for n, part in zip(names, halves) for k in part}}
  (gpt2 / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
  os.remove(gpt2 / "model.safetensors")
  return names


def test_sharded_index_names_a_missing_shard(gpt2):
  names = _shard(gpt2)
  from_pretrained(str(gpt2))  # loads while complete
  os.remove(gpt2 / names[1])
  with raises(MissingError, f"shard {names[1]!r}", "model.safetensors.index.json",
              gpt2 / names[1]):
    from_pretrained(str(gpt2))


def test_sharded_index_malformed(gpt2):
  _shard(gpt2)
  index = gpt2 / "model.safetensors.index.json"
  index.write_text('{"weight_map": ')
  with raises(InputError, "invalid JSON", index, "line 1 column"):
    from_pretrained(str(gpt2))
  index.write_text('{"metadata": {}}')
  with raises(InputError, "weight_map", index):
    from_pretrained(str(gpt2))


def test_truncated_value_heads_file(gpt2):
  save_file({"q1/kernel": np.zeros((4, 4), np.float32)},
            str(gpt2 / "value_heads.safetensors"))
  fn = gpt2 / "value_heads.safetensors"
  fn.write_bytes(fn.read_bytes()[:-10])
  with raises(InputError, "truncated or corrupt safetensors file", fn):
    from_pretrained(str(gpt2), value_heads=True)


# --- data: JSONL ---------------------------------------------------------------------------


def test_jsonl_invalid_utf8_names_line_and_byte_offset(tmp_path):
  path = tmp_path / "bad.jsonl"
  lines = [SINGLE.encode(), SINGLE.encode(), b'{"prompt": "caf\xff", "response": "x", "reward": 1}']
  path.write_bytes(b"\n".join(lines) + b"\n")
  offset = 2 * (len(SINGLE) + 1) + lines[2].index(b"\xff")
  with raises(JsonlFormatError, f"{path}:3: ", "invalid UTF-8", "0xff",
              f"byte offset {offset}") as err:
    read_jsonl(str(path))
  assert str(err.value).startswith(f"{path}:3: ")
  assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)
  columns, skipped = read_jsonl(str(path), skip_invalid=True)
  assert len(columns["inputs"]) == 2
  assert len(skipped) == 1 and skipped[0].startswith(f"{path}:3: invalid UTF-8")


def test_jsonl_crlf_and_bom_still_parse(tmp_path):
  path = tmp_path / "crlf.jsonl"
  path.write_bytes(b"\xef\xbb\xbf" + SINGLE.encode() + b"\r\n\r\n" + SINGLE.encode() + b"\r\n")
  columns, skipped = read_jsonl(str(path))
  assert len(columns["inputs"]) == 2 and not skipped


def test_jsonl_missing_file(tmp_path):
  with raises(MissingError, "JSONL file not found", tmp_path / "none.jsonl"):
    read_jsonl(str(tmp_path / "none.jsonl"))


def test_error_class_hierarchy():
  assert issubclass(JsonlFormatError, InputError) and issubclass(JsonlFormatError, ValueError)
  assert issubclass(DatasetNotPreparedError, MissingError)
  assert issubclass(DatasetNotPreparedError, FileNotFoundError)


# --- data: vocabularies --------------------------------------------------------------------


def test_sentencepiece_missing_corrupt_and_lfs(tmp_path):
  with raises(MissingError, "SentencePiece model not found", tmp_path / "no.model"):
    make_vocabulary("sentencepiece", str(tmp_path / "no.model"))
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"\x00\xff not a model proto \xff" * 10)
  with raises(InputError, "malformed SentencePiece model", bad):
    make_vocabulary("sentencepiece", str(bad))
  lfs = tmp_path / "spiece.model"
  lfs.write_text(LFS_POINTER)
  with raises(InputError, "Git LFS pointer", lfs):
    make_vocabulary("sentencepiece", str(lfs))
  make_vocabulary("sentencepiece", os.path.join(DATA, "spiece.model"))  # the fixture loads


def test_tokenizer_json_missing_and_malformed(tmp_path):
  with raises(MissingError, "tokenizer file not found", tmp_path / "tokenizer.json"):
    make_vocabulary("hf_tokenizer", str(tmp_path))  # a directory without tokenizer.json
  fn = tmp_path / "tok" / "tokenizer.json"
  fn.parent.mkdir()
  fn.write_text(open(os.path.join(DATA, "tokenizer.json")).read()[:500])
  with raises(InputError, "malformed tokenizer.json", fn, "line"):
    make_vocabulary("hf_tokenizer", str(fn))


def test_bad_vocabulary_config():
  with raises(ConfigError, "Unknown vocabulary kind 'bpe'"):
    make_vocabulary("bpe", "x")
  with raises(ConfigError, "needs a local file path"):
    make_vocabulary("sentencepiece")


# --- data: task registry -------------------------------------------------------------------


def test_unknown_task_suggests_close_names():
  with raises(UnknownNameError, "'embedded_arithmetc'", "Did you mean 'embedded_arithmetic'"):
    get_task("embedded_arithmetc")


def test_task_module_that_does_not_import(tmp_path, monkeypatch):
  with raises(UnknownNameError, "No module named 'no_such_tasks_module'"):
    get_task("no_such_tasks_module:my_task")
  (tmp_path / "broken_tasks.py").write_text("import no_such_dependency_xyz\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  with raises(UserError, "'broken_tasks'", "No module named 'no_such_dependency_xyz'"):
    get_task("broken_tasks:my_task")
