"""The base training config: every key a run can set, with its default.

Config files in ``configs/`` start from ``base_config()`` and change what they
need; ``validate`` rejects unknown keys, wrong types and incompatible options
before anything compiles.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from irl_lm import sharding as shd
from irl_lm.algorithms import ALGORITHMS, algorithm_class
from irl_lm.decoding.config import default_config as decoding_config
from irl_lm.errors import ConfigError, unknown_key_error
from irl_lm.models.config import DTYPES, PRESETS, REMAT_POLICIES

LOSSES = tuple(ALGORITHMS)  # config.loss.name: the registered algorithms
OPTIMIZERS = ("adamw", "adafactor")
SCHEDULES = ("constant", "cosine", "linear")
ACCUM_MODES = ("microbatch", "multisteps")
REWARD_NORMS = ("none", "dataset", "running")


def base_config() -> ml_collections.ConfigDict:
  """Defaults for every config key (see docs/training.md, "Configuration")."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = dict(
      size="t5-small",  # a name from irl_lm.models.PRESETS: t5-tiny ... t5-xl, llama-3b, ...
      init_from="",  # Hugging Face checkpoint directory to start from
      vocab_size=0,  # 0: the task vocabulary's size, rounded up to a multiple of 128
      dtype="float32",  # compute dtype; parameters stay float32
      remat="none",  # none | full | save_dots
      scan_layers=False,
      dropout_rate=0.0,
  )
  c.loss = dict(
      name="iqlearn",
      iqlearn=dict(lam=0.1, lam_warmup_steps=0, gamma=1.0, stop_grad_next=False,
                   # online: policy samples in the value term (docs/training.md)
                   online=dict(enable=False, mix=0.5, temperature=1.0, every=1,
                               buffer_size=256)),
      ilql=dict(tau=0.7, gamma=0.99, cql_weight=0.1, awac_weight=1.0, awac_beta=0.0,
                awac_clip=1e4, polyak_rate=0.005, polyak_every=1,
                separate_value_trunk=False,  # True: Q/V heads on a second copy of the trunk
                reward_norm="none"),  # none | dataset | running: z-score episode returns
  )
  c.data = dict(
      task="embedded_summarize",
      vocabulary="",  # "", or sentencepiece | hf_tokenizer for the paper tasks
      vocabulary_path="",  # default: spiece.model / tokenizer.json in model.init_from
      tfds_data_dir="",
      inputs_length=64,
      targets_length=32,
      batch_size=32,  # global, over all hosts
      pack=False,
      train_split="train",
      eval_split="validation",
      # data.task="jsonl": your own JSONL files, no code (docs/data.md#jsonl-from-the-config)
      jsonl=dict(train="", validation="", test="", skip_invalid=False,
                 fields=dict(prompt="prompt", response="response", reward="reward",
                             turns="turns", messages="messages", done="done")),
  )
  c.optimizer = dict(
      name="adamw",
      learning_rate=1e-3,
      schedule="cosine",  # constant | cosine | linear (after warm-up)
      warmup_steps=100,
      end_learning_rate_factor=0.1,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.01,
      decay_embeddings=False,  # apply weight decay to embeddings and the LM head
      grad_clip_norm=1.0,  # 0 disables clipping
      grad_accum_steps=1,
      grad_accum_mode="microbatch",  # microbatch (in one step) | multisteps (optax.MultiSteps)
  )
  c.train = dict(
      steps=1000,
      log_every=50,
      eval_every=500,
      checkpoint_every=500,
      keep_checkpoints=3,
      best_metric="",  # e.g. "eval/rougeL": also keep the best checkpoint by this metric
      best_mode="max",
      max_nonfinite_steps=5,  # stop after this many non-finite steps in a row
      peak_flops_per_device=0.0,  # 0: measured with a large matmul at start-up
      async_checkpoints=True,
  )
  c.eval = dict(
      num_examples=256,
      batch_size=64,
      generate=True,  # decode and compute the task's metrics
  )
  c.decoding = decoding_config()  # eval decoding; max_new_tokens 0 = data.targets_length
  c.decoding.max_new_tokens = 0
  c.mesh = dict(
      shape=(-1, 1, 1),  # (data, fsdp, tensor); one -1 is filled from the device count
      num_devices=0,  # 0: every device of every process; N: the first N (single process)
      rules=tuple((k, v) for k, v in shd.DEFAULT_RULES),
  )
  c.distributed = dict(
      coordinator_address="",  # host:port; empty = auto-detect (TPU pod, SLURM) or single process
      num_processes=0,
      process_id=-1,
  )
  return c


def with_loss(c: ml_collections.ConfigDict, loss: str, config_file: str
              ) -> ml_collections.ConfigDict:
  """``c`` trained with ``loss``: the one way a config file takes ``--config=FILE:LOSS``.

  The algorithm may adjust the config to its needs (ILQL decodes with guidance,
  ``decoding.ilql_beta``, unless ``c`` set its own strength).
  """
  if loss not in LOSSES:
    raise ConfigError("no such loss", f"--config={config_file}:{loss}",
                      expected=f"one of {LOSSES}", found=repr(loss))
  c.loss.name = loss
  algorithm_class(loss).configure(c)
  return c


def _walk(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.update(_walk(v, key + "."))
    else:
      out[key] = v
  return out


def _type_ok(want: Any, got: Any) -> bool:
  if want is None or got is None:
    return True
  if isinstance(want, bool) or isinstance(got, bool):
    return isinstance(want, bool) == isinstance(got, bool)
  if isinstance(want, float):
    return isinstance(got, (int, float))
  if isinstance(want, (tuple, list)):
    return isinstance(got, (tuple, list))
  return isinstance(got, type(want))


def _check_choice(flat: dict[str, Any], key: str, choices: Any) -> None:
  if flat[key] not in choices:
    raise ConfigError("invalid choice", f"config.{key}",
                      expected=f"one of {sorted(choices)}", found=repr(flat[key]))


def _check_range(flat: dict[str, Any], key: str, low: float, high: float | None = None, low_open: bool = False, high_open: bool = False
                 ) -> None:
  """``low <= value <= high`` (``<`` where the bound is open); ``high=None``: no upper bound."""
  v = flat[key]
  ok = ((v > low if low_open else v >= low)
        and (high is None or (v < high if high_open else v <= high)))
  if not ok:
    if high is None:
      bound = f"value {'>' if low_open else '>='} {low}"
    else:
      bound = f"{low} {'<' if low_open else '<='} value {'<' if high_open else '<='} {high}"
    raise ConfigError("value out of range", f"config.{key}",
                      expected=bound, found=v)


_POSITIVE = ("train.steps", "data.batch_size", "data.inputs_length", "data.targets_length",
             "train.log_every", "train.eval_every", "train.checkpoint_every",
             "train.max_nonfinite_steps", "optimizer.grad_accum_steps", "eval.batch_size",
             "eval.num_examples", "loss.ilql.polyak_every", "decoding.num_beams",
             "loss.iqlearn.online.every", "loss.iqlearn.online.buffer_size",
             "decoding.num_samples")
_NON_NEGATIVE = ("train.keep_checkpoints", "optimizer.learning_rate", "optimizer.warmup_steps",
                 "optimizer.weight_decay", "optimizer.grad_clip_norm", "optimizer.eps",
                 "optimizer.end_learning_rate_factor", "loss.iqlearn.lam",
                 "loss.iqlearn.lam_warmup_steps", "loss.ilql.cql_weight",
                 "loss.ilql.awac_weight", "loss.ilql.awac_beta", "decoding.top_k",
                 "decoding.behaviour_top_k",
                 "mesh.num_devices", "train.peak_flops_per_device", "decoding.max_new_tokens")
_UNIT = ("loss.iqlearn.gamma", "loss.ilql.gamma", "loss.ilql.tau", "optimizer.b1",
         "optimizer.b2", "loss.iqlearn.online.mix")


def validate(config: ml_collections.ConfigDict, data: bool = True) -> None:
  """Raises ConfigError naming the key for unknown keys, bad types, values and combinations.

  ``data=False`` (the planner, which reads no data) skips the checks of the data sources:
  a vocabulary file and JSONL files.
  """
  base, flat = _walk(base_config()), _walk(config)
  for key in flat:
    if key not in base:
      raise unknown_key_error(key, list(base), "config file")
  for key, want in base.items():
    if key not in flat:
      raise ConfigError("missing config key", f"config.{key}")
    if not _type_ok(want, flat[key]):
      raise ConfigError("wrong type", f"config.{key}",
                        expected=type(want).__name__, found=type(flat[key]).__name__)
  _check_choice(flat, "model.size", PRESETS)
  _check_choice(flat, "model.remat", REMAT_POLICIES)
  _check_choice(flat, "model.dtype", DTYPES)
  _check_choice(flat, "loss.name", LOSSES)
  _check_choice(flat, "optimizer.name", OPTIMIZERS)
  _check_choice(flat, "optimizer.schedule", SCHEDULES)
  _check_choice(flat, "optimizer.grad_accum_mode", ACCUM_MODES)
  _check_choice(flat, "loss.ilql.reward_norm", REWARD_NORMS)
  _check_choice(flat, "train.best_mode", ("max", "min"))
  _check_choice(flat, "decoding.method", ("greedy", "sample", "beam"))
  for key in _POSITIVE:
    _check_range(flat, key, 0, low_open=True)
  for key in _NON_NEGATIVE:
    _check_range(flat, key, 0)
  for key in _UNIT:
    _check_range(flat, key, 0, 1)
  _check_range(flat, "loss.ilql.polyak_rate", 0, 1, low_open=True)
  _check_range(flat, "loss.ilql.awac_clip", 0, low_open=True)
  _check_range(flat, "model.dropout_rate", 0, 1, high_open=True)
  _check_range(flat, "decoding.temperature", 0, low_open=True)
  _check_range(flat, "loss.iqlearn.online.temperature", 0, low_open=True)
  _check_range(flat, "decoding.top_p", 0, 1, low_open=True)
  _check_range(flat, "decoding.behaviour_top_p", 0, 1, low_open=True)
  if flat["data.batch_size"] % flat["optimizer.grad_accum_steps"]:
    raise ConfigError("batch not divisible into micro-batches", "config.data.batch_size",
                      expected=f"a multiple of config.optimizer.grad_accum_steps="
                      f"{flat['optimizer.grad_accum_steps']}", found=flat["data.batch_size"])
  shape = tuple(flat["mesh.shape"])
  if len(shape) != 3 or any(not isinstance(n, int) or (n < 1 and n != -1) for n in shape) \
      or shape.count(-1) > 1:
    raise ConfigError("not a mesh shape", "config.mesh.shape",
                      expected="3 positive sizes (data, fsdp, tensor), at most one -1",
                      found=shape)
  if flat["train.best_metric"] and not flat["train.best_metric"].startswith("eval/"):
    raise ConfigError("config.train.best_metric names no eval metric", "config.train.best_metric",
                      expected="'eval/<metric>', e.g. 'eval/loss'",
                      found=repr(flat["train.best_metric"]))
  if data and flat["data.vocabulary"] and not (flat["data.vocabulary_path"]
                                               or flat["model.init_from"]):
    raise ConfigError(f"config.data.vocabulary={flat['data.vocabulary']!r} needs "
                      "config.data.vocabulary_path (or config.model.init_from, a Hugging Face "
                      "directory with spiece.model / tokenizer.json)", "config.data.vocabulary_path")
  if data and flat["data.task"] == JSONL_TASK:
    _check_jsonl(flat)
  if flat["loss.iqlearn.online.enable"] and flat["loss.name"] != "iqlearn":
    raise ConfigError("online IQLearn needs the IQLearn loss", "config.loss.iqlearn.online.enable",
                      expected="config.loss.name='iqlearn'", found=repr(flat["loss.name"]))
  algorithm_class(flat["loss.name"]).check_config(flat)


JSONL_TASK = "jsonl"


def _check_jsonl(flat: dict[str, Any]) -> None:
  """``data.task="jsonl"``: a file per split it reads, and a tokenizer."""
  if not (flat["data.vocabulary_path"] or flat["model.init_from"]):
    raise ConfigError("config.data.task='jsonl' needs a tokenizer: config.data.vocabulary_path "
                      "(a tokenizer.json) or config.model.init_from (a Hugging Face directory)",
                      "config.data.vocabulary_path")
  for split in dict.fromkeys((flat["data.train_split"], flat["data.eval_split"])):
    if split not in ("train", "validation", "test"):
      raise ConfigError("config.data.task='jsonl' has splits train, validation and test",
                        "config.data.train_split / eval_split", found=repr(split))
    if not flat[f"data.jsonl.{split}"]:
      raise ConfigError(f"config.data.task='jsonl' reads split {split!r} but its file is not "
                        "set", f"config.data.jsonl.{split}")
