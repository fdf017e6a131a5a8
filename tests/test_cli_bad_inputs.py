"""A battery of bad inputs against every entry point, run as their command lines run.

Each case asserts: the exit status, exactly one ``error:`` line (or none, for
inputs the run must survive) naming the problem, no traceback, and that every
file the case protects is still there, unchanged. ``tests/cli_battery.py`` runs
one entry point's cases in one process, so the battery costs five start-ups.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "configs" / "tiny.py"
GPT2 = ROOT / "tests" / "fixtures" / "models" / "gpt2"
SMALL_VOCAB = ROOT / "tests" / "fixtures" / "decoding" / "tokenizer.json"  # 96 tokens, as GPT2
LARGE_VOCAB = ROOT / "tests" / "fixtures" / "data" / "tokenizer.json"  # 401 tokens
LLAMA_BOS = ROOT / "tests" / "fixtures" / "pretrained" / "llama_bos"  # with its tokenizer
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               "size 1048576\n")


@dataclasses.dataclass
class Case:
  """One command line: ``setup(dir)`` returns its flags; ``error`` is a regex or None (success)."""
  id: str
  entry: str
  setup: Callable[[Path], list[str]]
  error: str | None
  warning: str | None = None  # a regex the console must show (runs that survive)
  keep: Callable[[Path], list[Path]] = lambda d: []  # files that must survive unchanged
  check: Callable[[Path], None] | None = None  # more assertions after the run
  code: int = 2


def _tiny(*flags: str) -> Callable[[Path], list[str]]:
  return lambda d: [f"--config={TINY}", f"--workdir={d / 'run'}", *flags]


def _trained(*flags: str) -> Callable[[Path], list[str]]:
  """The tiny run's flags on a copy of the trained workdir (checkpoints 2 and 4)."""
  def setup(d: Path) -> list[str]:
    shutil.copytree(TRAINED, d / "run")
    return [f"--config={TINY}", f"--workdir={d / 'run'}", *flags]
  return setup


def _checkpoint_files(d: Path) -> list[Path]:
  return sorted(p for p in (d / "run").rglob("*") if p.is_file() and "checkpoints" in p.parts)


def _truncate_largest(step_dir: Path) -> None:
  big = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])


def _corrupt(step: int, how: str) -> Callable[[Path], None]:
  def corrupt(d: Path) -> None:
    step_dir = d / "run" / "checkpoints" / str(step)
    if how == "truncate":
      _truncate_largest(step_dir)
    else:
      (step_dir / "state" / "_METADATA").unlink()
  return corrupt


def _then(first: Callable[[Path], list[str]], *more: Callable[[Path], None]
          ) -> Callable[[Path], list[str]]:
  def setup(d: Path) -> list[str]:
    flags = first(d)
    for m in more:
      m(d)
    return flags
  return setup


def _register_jsonl(d: Path, name: str, vocabulary: str) -> None:
  """``d/name.py``, registering a reward-labelled JSONL task over ``d/rewards.jsonl``."""
  (d / f"{name}.py").write_text(
      "from irl_lm.data import make_vocabulary, register_jsonl_reward_task\n"
      f"register_jsonl_reward_task({name!r}, {{'train': {str(d / 'rewards.jsonl')!r}, "
      f"'validation': {str(d / 'rewards.jsonl')!r}}}, make_vocabulary({vocabulary}))\n")


def _task_module(name: str, jsonl: bytes | None) -> Callable[[Path], list[str]]:
  """A module registering a reward-labelled JSONL task over ``jsonl`` (None: a missing file)."""
  def setup(d: Path) -> list[str]:
    if jsonl is not None:
      (d / "rewards.jsonl").write_bytes(jsonl)
    _register_jsonl(d, name, "'embedded'")
    return _tiny(f"--config.data.task={name}:{name}", "--config.loss.name=ilql")(d)
  return setup


def _init_from(breakage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
  """A run from a broken copy of the gpt2 fixture, on a task in its own 96-token vocabulary
  (so the config checks pass and the weights are what fails)."""
  def setup(d: Path) -> list[str]:
    hf = _hf_dir(breakage)(d)
    (d / "rewards.jsonl").write_bytes(b'{"prompt": "a b", "response": "c", "reward": 1}\n' * 8)
    _register_jsonl(d, "hf_task", f"'hf_tokenizer', {str(hf / 'tokenizer.json')!r}")
    return _tiny(f"--config.model.init_from={hf}", "--config.data.task=hf_task:hf_task")(d)
  return setup


def _jsonl_run(*flags: str, edit: Callable[[Path], None] = lambda hf: None,
               rows: bytes | None = None) -> Callable[[Path], list[str]]:
  """``data.task=jsonl`` from a copy of the pretrained llama_bos fixture (``edit`` changes the
  copy), on its own data files or on ``rows`` (train and validation)."""
  def setup(d: Path) -> list[str]:
    shutil.copytree(LLAMA_BOS, d / "hf")
    edit(d / "hf")
    train = valid = LLAMA_BOS / "data" / "validation.jsonl"
    if rows is not None:
      train = valid = d / "rows.jsonl"
      train.write_bytes(rows)
    return _tiny(f"--config.model.init_from={d / 'hf'}", "--config.data.task=jsonl",
                 f"--config.data.jsonl.train={train}",
                 f"--config.data.jsonl.validation={valid}", "--config.data.jsonl.fields.reward=",
                 *flags)(d)
  return setup


def _set_json(name: str, **changes) -> Callable[[Path], None]:
  def edit(hf: Path) -> None:
    config = json.loads((hf / name).read_text())
    config.update(changes)
    (hf / name).write_text(json.dumps(config))
  return edit


def _chat_template(hf: Path) -> None:
  (hf / "chat_template.jinja").write_text(
      "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


def _hf_dir(breakage: Callable[[Path], None]) -> Callable[[Path], Path]:
  def make(d: Path) -> Path:
    shutil.copytree(GPT2, d / "hf")
    shutil.copy(SMALL_VOCAB, d / "hf" / "tokenizer.json")
    breakage(d / "hf")
    return d / "hf"
  return make


def _truncate_weights(hf: Path) -> None:
  _truncate_largest(hf)


def _lfs_weights(hf: Path) -> None:
  (hf / "model.safetensors").write_text(LFS_POINTER)


def _bad_config_json(hf: Path) -> None:
  (hf / "config.json").write_text('{"model_type": "gpt2",\n  "n_embd": 32,,\n}')


def _prompts(d: Path, content: bytes = b"the cat sat\n") -> Path:
  (d / "prompts.txt").write_bytes(content)
  return d / "prompts.txt"


def _generate(hf: Callable[[Path], Path] | None = None, *flags: str, prompts: bytes = b"a b\n",
              vocab: Path | None = None) -> Callable[[Path], list[str]]:
  def setup(d: Path) -> list[str]:
    model = hf(d) if hf else _hf_dir(lambda _: None)(d)
    out = [f"--hf_dir={model}", f"--input={_prompts(d, prompts)}", f"--output={d / 'out.jsonl'}",
           "--config.decoding.max_new_tokens=2"]
    if vocab:
      out.append(f"--vocab={vocab}")
    return out + list(flags)
  return setup


def _from_workdir(*flags: str, corrupt: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
  def setup(d: Path) -> list[str]:
    shutil.copytree(TRAINED, d / "run")
    for how in corrupt:
      for step in (2, 4):
        _corrupt(step, how)(d)
    return [f"--workdir={d / 'run'}", *flags]
  return setup


def _export(*flags: str, existing_model: bool = False, corrupt: tuple[str, ...] = ()
            ) -> Callable[[Path], list[str]]:
  def setup(d: Path) -> list[str]:
    if existing_model:
      shutil.copytree(GPT2, d / "hf_out")
    return _from_workdir(f"--output={d / 'hf_out'}", *flags, corrupt=corrupt)(d)
  return setup


def _plan(*flags: str) -> Callable[[Path], list[str]]:
  return lambda d: [f"--config={TINY}", *flags]


def _assert_no_workdir(d: Path) -> None:
  assert not (d / "run").exists(), sorted((d / "run").rglob("*"))


def _assert_fallback(d: Path) -> None:
  aside = list((d / "run" / "checkpoints_unreadable").iterdir())
  assert [p.name.split(".")[0] for p in aside] == ["4"], aside
  assert (d / "run" / "checkpoints" / "4").is_dir()  # trained again from step 2 and saved


CASES = [
    # --- main: flags and config values ---
    Case("unknown-key", "main", _tiny("--config.train.stepz=3"),
         r"unknown config key \(command line\): expected 'config.train.steps' \(the closest "
         r"valid key\) vs found 'config.train.stepz'"),
    Case("unknown-section", "main", _tiny("--config.trainz.steps=3"),
         r"unknown config key \(command line\): expected 'config.train.steps'"),
    Case("wrong-type-override", "main", _tiny("--config.train.steps=abc"),
         r"config.train.steps=abc"),
    Case("targets-length-0", "main", _tiny("--config.data.targets_length=0"),
         r"value out of range \(config.data.targets_length\): expected value > 0 vs found 0"),
    Case("inputs-length-negative", "main", _tiny("--config.data.inputs_length=-4"),
         r"\(config.data.inputs_length\): expected value > 0 vs found -4"),
    Case("batch-size-0", "main", _tiny("--config.data.batch_size=0"),
         r"\(config.data.batch_size\): expected value > 0 vs found 0"),
    Case("keep-negative", "main", _tiny("--config.train.keep_checkpoints=-1"),
         r"\(config.train.keep_checkpoints\): expected value >= 0 vs found -1"),
    Case("attention-cudnn-on-cpu", "main", _tiny("--config.model.attention=cudnn",
                                                 "--config.model.dtype=bfloat16"),
         r"cuDNN's fused attention needs a GPU \(this run's devices are cpu\) "
         r"\(config.model.attention='cudnn'\): expected xla or chunked"),
    Case("attention-splash-t5", "main", _tiny("--config.model.attention=splash"),
         r"the splash kernel runs on TPUs only \(this run's devices are cpu\)"),
    Case("bf16-base-without-lora", "main", _tiny("--config.model.param_dtype=bfloat16"),
         r"model.param_dtype='bfloat16' stores a LoRA run's frozen base; without LoRA every "
         r"parameter trains and stays float32"),
    Case("lora-target-the-model-lacks", "main", _tiny("--config.model.size=gpt2-tiny",
                                                      "--config.model.lora.rank=4",
                                                      "--config.model.lora.targets=('q','gate')"),
         r"model.lora.targets names 'gate', which a gpt2 model lacks \(its MLP has no gate "
         r"projection\): expected names from \('q', 'k', 'v', 'o', 'up', 'down'\)"),
    Case("xsum-everything-missing", "main",
         lambda d: [f"--config={ROOT / 'configs' / 'iqlearn_xsum.py'}", f"--workdir={d / 'run'}",
                    f"--config.data.tfds_data_dir={d / 'tfds'}"],
         r"^error: this run needs 2 things that are not here: +1\. config.data.vocabulary="
         r"'sentencepiece' needs config.data.vocabulary_path .* +2\. TFDS dataset 'xsum' is not "
         r"prepared in .*/tfds\. XSUM needs a manual download"),
    Case("model-size", "main", _tiny("--config.model.size=t5-huge"),
         r"invalid choice \(config.model.size\): expected one of .* vs found 't5-huge'"),
    Case("loss-name", "main", _tiny("--config.loss.name=ppo"),
         r"invalid choice \(config.loss.name\).* vs found 'ppo'"),
    Case("remat", "main", _tiny("--config.model.remat=some"),
         r"invalid choice \(config.model.remat\)"),
    Case("dtype", "main", _tiny("--config.model.dtype=int8"),
         r"invalid choice \(config.model.dtype\)"),
    Case("config-loss", "main",
         lambda d: [f"--config={ROOT / 'configs' / 'quickstart.py'}:ppo", f"--workdir={d}"],
         r"no such loss \(--config=.*quickstart.py:ppo\): expected one of \('mle', 'iqlearn', "
         r"'ilql', 'gail'\) vs found 'ppo'"),
    Case("learning-rate", "main", _tiny("--config.optimizer.learning_rate=-0.1"),
         r"\(config.optimizer.learning_rate\): expected value >= 0"),
    Case("tau", "main", _tiny("--config.loss.ilql.tau=1.5"),
         r"\(config.loss.ilql.tau\): expected 0 <= value <= 1 vs found 1.5"),
    Case("gamma", "main", _tiny("--config.loss.iqlearn.gamma=2.0"),
         r"\(config.loss.iqlearn.gamma\): expected 0 <= value <= 1"),
    Case("polyak-rate", "main", _tiny("--config.loss.ilql.polyak_rate=0.0"),
         r"\(config.loss.ilql.polyak_rate\): expected 0 < value <= 1"),
    Case("dropout", "main", _tiny("--config.model.dropout_rate=1.0"),
         r"\(config.model.dropout_rate\): expected 0 <= value < 1"),
    Case("temperature", "main", _tiny("--config.decoding.temperature=0.0"),
         r"\(config.decoding.temperature\): expected value > 0"),
    Case("decoding-method", "main", _tiny("--config.decoding.method=nucleus"),
         r"invalid choice \(config.decoding.method\)"),
    Case("grad-accum", "main", _tiny("--config.optimizer.grad_accum_steps=3"),
         r"\(config.data.batch_size\): expected a multiple of "
         r"config.optimizer.grad_accum_steps=3 vs found 8"),
    Case("mesh-entries", "main", _tiny("--config.mesh.shape=(2,2)"),
         r"not a mesh shape \(config.mesh.shape\)"),
    Case("mesh-two-fills", "main", _tiny("--config.mesh.shape=(-1,-1,1)"),
         r"not a mesh shape \(config.mesh.shape\)"),
    Case("mesh-too-big", "main", _tiny("--config.mesh.shape=(4,1,1)", "--config.mesh.num_devices=0"),
         r"no such mesh .*\(config.mesh.shape\)"),
    Case("num-devices", "main", _tiny("--config.mesh.num_devices=99"),
         r"more devices than this process has \(config.mesh.num_devices\)"),
    Case("batch-over-mesh", "main", _tiny("--config.mesh.num_devices=2", "--config.mesh.shape=(2,1,1)",
                                          "--config.data.batch_size=3"),
         r"batch does not split over the mesh \(config.data.batch_size\): expected a multiple "
         r"of data x fsdp = 2 \(the mesh axes config.mesh.rules give 'batch'\) vs found 3"),
    Case("best-metric-name", "main", _tiny("--config.train.best_metric=rougeL"),
         r"\(config.train.best_metric\): expected 'eval/<metric>'"),
    Case("vocabulary-path", "main", _tiny("--config.data.vocabulary=sentencepiece"),
         r"needs config.data.vocabulary_path"),
    Case("unknown-task", "main", _tiny("--config.data.task=embedded_summarise"),
         r"No task named 'embedded_summarise'\. Did you mean 'embedded_summarize'"),
    Case("task-module", "main", _tiny("--config.data.task=no_such_module:task"),
         r"No module named 'no_such_module'"),
    Case("train-split", "main", _tiny("--config.data.train_split=trian"),
         r"has no split 'trian' \(config.data.train_split\)"),
    Case("eval-split", "main", _tiny("--config.data.eval_split=dev"),
         r"has no split 'dev' \(config.data.eval_split\)"),
    Case("ilql-without-rewards", "main",
         _tiny("--config.loss.name=ilql"),
         r"needs reward-labelled data \(config.data.task\): expected a task with a 'reward' or "
         r"'turn_rewards' column vs found 'embedded_summarize' without rewards"),
    Case("config-missing", "main", lambda d: [f"--config={d / 'nope.py'}", f"--workdir={d}"],
         r"nope.py"),
    Case("config-syntax", "main",
         lambda d: ((d / "broken.py").write_text("def get_config(:\n"),
                    [f"--config={d / 'broken.py'}", f"--workdir={d}"])[1],
         r"broken.py"),
    Case("workdir-missing-flag", "main", lambda d: [f"--config={TINY}"], r"--workdir"),
    Case("positional", "main", _tiny("extra"), r"unexpected command-line arguments"),
    Case("workdir-is-file", "main",
         lambda d: ((d / "run").write_text("x"), _tiny()(d))[1], r"run"),
    Case("workdir-unwritable", "main",
         lambda d: [f"--config={TINY}", "--workdir=/proc/irl_lm_no_such/run"],
         r"cannot write the workdir: .* \(--workdir=/proc/irl_lm_no_such/run\)"),
    Case("failed-checks-leave-no-workdir", "main",
         _tiny("--config.data.task=no_such_task"), r"No task named 'no_such_task'",
         check=_assert_no_workdir),
    # --- main: data files ---
    Case("jsonl-bad-json", "main",
         _task_module("bad_json", b'{"prompt": "a", "response": "b", "reward": 1}\n{"prompt": \n'),
         r"rewards.jsonl:2: invalid JSON"),
    Case("jsonl-not-utf8", "main",
         _task_module("not_utf8", b'{"prompt": "a", "response": "b", "reward": 1}\n'
                      b'{"prompt": "a", "response": "b", "reward": 1}\n{"prompt": "\xff"}\n'),
         r"rewards.jsonl:3"),
    Case("jsonl-reward-type", "main",
         _task_module("reward_type", b'{"prompt": "a", "response": "b", "reward": "high"}\n'),
         r"rewards.jsonl:1: field 'reward' must be a number"),
    Case("jsonl-missing", "main", _task_module("missing_file", None), r"rewards.jsonl"),
    # --- main: data.task=jsonl and a checkpoint's own special tokens ---
    Case("special-tokens-disagree", "main",
         _jsonl_run(edit=_set_json("config.json", eos_token_id=3)),
         r"the tokenizer's EOS is id 2 but the checkpoint's config.json has eos_token_id 3; use "
         r"the checkpoint's own tokenizer \(config.model.init_from="),
    Case("jsonl-config-no-file", "main", _jsonl_run("--config.data.jsonl.train=/no/such.jsonl"),
         r"JSONL file not found \(config.data.jsonl.train, /no/such.jsonl\)"),
    Case("jsonl-config-field-mapping", "main",
         _jsonl_run("--config.data.jsonl.fields.prompt=question"),
         r"validation.jsonl:1: missing field 'question'"),
    Case("jsonl-config-chat-roles", "main",
         _jsonl_run(edit=_chat_template, rows=json.dumps({"messages": [
             {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
             {"role": "assistant", "content": "c"}]}).encode() + b"\n"),
         r"rows.jsonl:1: messages\[1\]: role 'user' follows 'user'; roles must alternate"),
    Case("jsonl-config-ilql-no-rewards", "main", _jsonl_run("--config.loss.name=ilql"),
         r"ILQL learns from rewards, but the rows have none \(config.data.jsonl.fields.reward\)"),
    # --- main: starting weights ---
    Case("init-from-missing", "main", _tiny("--config.model.init_from=/no/such/model"),
         r"/no/such/model"),
    Case("init-from-truncated", "main", _init_from(_truncate_weights), r"model.safetensors"),
    Case("init-from-lfs", "main", _init_from(_lfs_weights), r"Git LFS pointer"),
    Case("init-from-small-vocab", "main",
         lambda d: _tiny(f"--config.model.init_from={_hf_dir(lambda _: None)(d)}")(d),
         r"model vocabulary smaller than the task's \(config.model.init_from=.*\): expected "
         r"vocab_size >= 237 vs found 96"),
    Case("init-from-config-json", "main",
         lambda d: _tiny(f"--config.model.init_from={_hf_dir(_bad_config_json)(d)}")(d),
         r"line 2 column 16 \(.*config.json\)"),
    # --- main: checkpoints (nothing saved is lost) ---
    Case("resume-other-size", "main", _trained("--config.model.size=t5-mini"),
         r"the workdir holds a checkpoint of another run \(.*/run\): expected v1_1 \(encdec\) "
         r"d_model \d+, .* vs found v1_1 \(encdec\) d_model 64, 2 layers, vocab 256; loss iqlearn; "
         r"optimizer adamw \(step 4;", keep=_checkpoint_files),
    Case("resume-other-loss", "main",
         _trained("--config.loss.name=ilql", "--config.data.task=embedded_ilql"),
         r"checkpoint of another run .*; loss ilql.* vs found .*loss iqlearn",
         keep=_checkpoint_files),
    Case("resume-other-optimizer", "main", _trained("--config.optimizer.name=adafactor"),
         r"checkpoint of another run .*optimizer adafactor vs found .*optimizer adamw",
         keep=_checkpoint_files),
    Case("all-checkpoints-corrupt", "main",
         _then(_trained(), _corrupt(4, "metadata"), _corrupt(2, "metadata")),
         r"no checkpoint in the workdir can be restored; all were left in place "
         r"\(.*checkpoints\): .*step 4: .*step 2", keep=_checkpoint_files),
    Case("newest-truncated", "main", _then(_trained(), _corrupt(4, "truncate")), None,
         warning=r"checkpoint 4 in .* cannot be restored", check=_assert_fallback, code=0),
    # --- generate ---
    Case("gen-neither-source", "generate",
         lambda d: [f"--input={_prompts(d)}", f"--output={d / 'o'}"],
         r"give exactly one of --hf_dir and --workdir"),
    Case("gen-both-sources", "generate",
         lambda d: [f"--hf_dir={GPT2}", f"--workdir={d}", f"--input={_prompts(d)}",
                    f"--output={d / 'o'}"], r"give exactly one of --hf_dir and --workdir"),
    Case("gen-missing-input", "generate",
         lambda d: [f"--hf_dir={GPT2}", f"--input={d / 'none.txt'}", f"--output={d / 'o'}"],
         r"no prompts file \(--input=.*none.txt\)"),
    Case("gen-input-not-utf8", "generate", _generate(prompts=b"fine\nbad \xff\xfe here\n"),
         r"not UTF-8 text \(.*prompts.txt:2, byte 4\)"),
    Case("gen-input-blank", "generate", _generate(prompts=b"\n  \n"), r"no prompts"),
    Case("gen-hf-missing", "generate",
         lambda d: [f"--hf_dir={d / 'nohf'}", f"--vocab={SMALL_VOCAB}", f"--input={_prompts(d)}",
                    f"--output={d / 'o'}"], r"nohf"),
    Case("gen-hf-truncated", "generate", _generate(_hf_dir(_truncate_weights)),
         r"model.safetensors"),
    Case("gen-hf-lfs", "generate", _generate(_hf_dir(_lfs_weights)), r"Git LFS pointer"),
    Case("gen-hf-config-json", "generate", _generate(_hf_dir(_bad_config_json)),
         r"line 2 column 16 \(.*config.json\)"),
    Case("gen-no-tokenizer", "generate",
         lambda d: [f"--hf_dir={GPT2}", f"--input={_prompts(d)}", f"--output={d / 'o'}"],
         r"no tokenizer \(pass --vocab\)"),
    Case("gen-tokenizer-too-large", "generate", _generate(vocab=LARGE_VOCAB),
         r"tokenizer larger than the model's vocabulary .*: expected <= 96 tokens vs found 401"),
    Case("gen-tokenizer-malformed", "generate",
         lambda d: ((d / "tok.json").write_text("{not json"),
                    _generate(vocab=d / "tok.json")(d))[1], r"tok.json"),
    Case("gen-temperature", "generate", _generate(None, "--config.decoding.temperature=-1.0"),
         r"\(config.decoding.temperature\): expected value > 0"),
    Case("gen-unknown-key", "generate", _generate(None, "--config.decoding.temprature=0.5"),
         r"unknown config key \(command line\): expected 'config.decoding.temperature'"),
    Case("gen-batch-size", "generate", _generate(None, "--batch_size=0"),
         r"\(--batch_size\): expected value >= 1"),
    Case("gen-output-exists", "generate",
         lambda d: ((d / "out.jsonl").write_text("earlier results\n"), _generate()(d))[1],
         r"the output file exists; pass --overwrite", keep=lambda d: [d / "out.jsonl"]),
    Case("gen-workdir-missing", "generate",
         lambda d: [f"--workdir={d / 'norun'}", f"--input={_prompts(d)}", f"--output={d / 'o'}"],
         r"no config.json; is this an irl_lm workdir\?"),
    Case("gen-workdir-step", "generate",
         lambda d: _from_workdir("--step=3", f"--input={_prompts(d)}", f"--output={d / 'o'}")(d),
         r"no checkpoint for step 3 .*: expected one of \[2, 4\] vs found 3"),
    Case("gen-workdir-corrupt", "generate",
         lambda d: _from_workdir(f"--input={_prompts(d)}", f"--output={d / 'o'}",
                                 corrupt=("metadata",))(d),
         r"no checkpoint in the workdir can be restored", keep=_checkpoint_files),
    # --- export ---
    Case("export-no-workdir-flag", "export", lambda d: [f"--output={d / 'o'}"], r"--workdir"),
    Case("export-workdir-missing", "export",
         lambda d: [f"--workdir={d / 'norun'}", f"--output={d / 'o'}"], r"no config.json"),
    Case("export-overwrite", "export", _export(existing_model=True),
         r"the output directory already holds a model; pass --overwrite",
         keep=lambda d: sorted((d / "hf_out").iterdir())),
    Case("export-step", "export", _export("--step=7"), r"no checkpoint for step 7"),
    Case("export-corrupt", "export", _export(corrupt=("metadata",)),
         r"no checkpoint in the workdir can be restored", keep=_checkpoint_files),
    Case("export-config-json", "export",
         lambda d: ((d / "run").mkdir(), (d / "run" / "config.json").write_text("{oops"),
                    [f"--workdir={d / 'run'}", f"--output={d / 'o'}"])[2],
         r"malformed JSON .*config.json:1:2"),
    Case("export-no-checkpoints", "export",
         lambda d: (shutil.copytree(TRAINED, d / "run", ignore=shutil.ignore_patterns("checkpoints")),
                    [f"--workdir={d / 'run'}", f"--output={d / 'o'}"])[1],
         r"no checkpoint in the workdir"),
    # --- plan ---
    Case("plan-devices-0", "plan", _plan("--devices=0"), r"\(--devices\): expected value >= 1"),
    Case("plan-devices-negative", "plan", _plan("--devices=-2"),
         r"\(--devices\): expected value >= 1 vs found -2"),
    Case("plan-both", "plan", _plan("--devices=2", "--topology=v5e:2x2"), r"exactly one of"),
    Case("plan-neither", "plan", _plan(), r"exactly one of --topology and --devices"),
    Case("plan-memory", "plan", _plan("--devices=2", "--device_memory=lots"),
         r"not a memory size \(--device_memory\)"),
    Case("plan-topology", "plan", _plan("--topology=v9:2x2"), r"not a TPU topology \(--topology\)"),
    Case("plan-chip", "plan", _plan("--devices=2", "--chip=h900"),
         r"unknown chip \(--chip\): expected one of \['a100', 'h100', 'h200'"),
    Case("plan-chip-topology", "plan", _plan("--topology=v5e:2x2", "--chip=h100"),
         r"--chip is for --devices: a topology's chips give the roofline \(--chip\)"),
    Case("plan-headroom", "plan", _plan("--devices=2", "--headroom=1.5"),
         r"\(--headroom\): expected 0 <= value < 1"),
    Case("plan-config-value", "plan", _plan("--devices=2", "--config.model.size=t5-huge"),
         r"invalid choice \(config.model.size\)"),
    Case("plan-unknown-key", "plan", _plan("--devices=2", "--config.model.sise=t5-tiny"),
         r"unknown config key \(command line\): expected 'config.model.size'"),
    # --- experiments ---
    Case("exp-seeds", "experiments", lambda d: ["--seeds=0", f"--outdir={d}"],
         r"\(--seeds\): expected value >= 1 vs found 0"),
    Case("exp-workers", "experiments", lambda d: ["--workers=0", f"--outdir={d}"],
         r"\(--workers\): expected value >= 1 vs found 0"),
    Case("exp-suite", "experiments", lambda d: ["--suite=everything", f"--outdir={d}"],
         r"--suite"),
    Case("exp-positional", "experiments", lambda d: ["now", f"--outdir={d}"],
         r"unexpected command-line arguments"),
]
ENTRIES = ("main", "generate", "export", "plan", "experiments")
TRAINED: Path = Path()


def _digest(paths: list[Path]) -> dict[str, str]:
  return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
  """The tiny config trained for 4 steps: checkpoints 2 and 4."""
  import importlib.util
  from irl_lm.training.trainer import train_and_evaluate
  global TRAINED
  TRAINED = tmp_path_factory.mktemp("trained") / "run"
  spec = importlib.util.spec_from_file_location("tiny_config", TINY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  train_and_evaluate(module.get_config(), str(TRAINED))
  return TRAINED


def _problems(case: Case, result: dict, d: Path, before: dict[str, str]) -> list[str]:
  err, out = result["stderr"], []
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  if result["code"] != case.code:
    out.append(f"exit {result['code']}, expected {case.code}")
  if "Traceback (most recent call last)" in err:
    out.append("printed a traceback")
  if case.error is None:
    if errors:
      out.append(f"unexpected error line {errors}")
  elif len(errors) != 1:
    out.append(f"{len(errors)} error lines, expected 1")
  elif not re.search(case.error, errors[0]):
    out.append(f"error line does not match {case.error!r}")
  if case.warning and not re.search(case.warning, err):
    out.append(f"no warning matching {case.warning!r}")
  after = _digest([Path(p) for p in before if Path(p).exists()])
  lost = [p for p in before if before[p] != after.get(p)]
  if lost:
    out.append(f"lost or changed {len(lost)} protected files, e.g. {lost[0]}")
  if case.check and not out:
    try:
      case.check(d)
    except AssertionError as e:
      out.append(f"check failed: {e}")
  return out + ([f"stderr tail: {err[-1500:]}"] if out else [])


def test_battery_is_large_and_covers_every_entry_point():
  assert len(CASES) >= 60
  assert len({c.id for c in CASES}) == len(CASES)
  assert {c.entry for c in CASES} == set(ENTRIES)


def _run_battery(entry: str, tmp_path: Path) -> dict[str, list[str]]:
  """Runs ``entry``'s cases in one process; the problems of each case that misbehaved."""
  cases = [c for c in CASES if c.entry == entry]
  tmp_path = tmp_path / entry
  tmp_path.mkdir()
  specs, protected = [], {}
  for c in cases:
    d = tmp_path / c.id
    d.mkdir()
    args = [str(a) for a in c.setup(d)]
    protected[c.id] = _digest(c.keep(d))
    specs.append({"id": c.id, "args": args, "cwd": str(d)})
  (tmp_path / "cases.json").write_text(json.dumps(specs))
  env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
  env.pop("IRL_LM_DEBUG", None)
  proc = subprocess.run([sys.executable, str(ROOT / "tests" / "cli_battery.py"), entry,
                         str(tmp_path / "cases.json"), str(tmp_path / "results.json")],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  failures = {c.id: _problems(c, results[c.id], tmp_path / c.id, protected[c.id])
              for c in cases}
  return {k: v for k, v in failures.items() if v}


def test_bad_inputs(trained, tmp_path):
  """Every entry point, one process each (one test, so one trained workdir serves them all)."""
  failures = {}
  for entry in ENTRIES:
    failures.update(_run_battery(entry, tmp_path))
  assert not failures, "\n\n".join(f"{k}: " + "\n  ".join(v) for k, v in failures.items())
