"""The base training config: every key a run can set, with its default.

Config files in ``configs/`` start from ``base_config()`` and change what they
need; ``validate`` rejects unknown keys, wrong types and incompatible options
before anything compiles.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections

from irl_lm import sharding as shd
from irl_lm.algorithms import ALGORITHMS, algorithm_class
from irl_lm.decoding.config import default_config as decoding_config
from irl_lm.errors import ConfigError, MissingError, UserError, unknown_key_error
from irl_lm.models.config import ATTENTION, DTYPES, LORA_TARGETS, PRESETS, REMAT_POLICIES
from irl_lm.training.trackers import TRACKERS, check_installed

LOSSES = tuple(ALGORITHMS)  # config.loss.name: the registered algorithms
OPTIMIZERS = ("adamw", "adafactor")
SCHEDULES = ("constant", "cosine", "linear")
ACCUM_MODES = ("microbatch", "multisteps")


@dataclasses.dataclass(frozen=True)
class Rule:
  """A constraint on one key's value: ``choices``, or ``low``/``high`` bounds (``*_open``:
  strict). The key's type is its default's."""

  choices: tuple[Any, ...] | None = None
  subset: tuple[Any, ...] | None = None  # a list whose items are all among these
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False

  def __call__(self, default: Any) -> Key:
    return Key(default, self)

  def check(self, key: str, v: Any) -> None:
    """Raises ``ConfigError`` naming ``config.<key>`` if ``v`` breaks the rule."""
    if self.choices is not None:
      if v not in self.choices:
        raise ConfigError("invalid choice", f"config.{key}",
                          expected=f"one of {sorted(self.choices)}", found=repr(v))
      return
    if self.subset is not None:  # a list, or a comma-separated string
      items = [t.strip() for t in v.split(",")] if isinstance(v, str) else v
      if not v or not set(items) <= set(self.subset):
        raise ConfigError("invalid choice", f"config.{key}",
                          expected=f"some of {list(self.subset)}", found=repr(v))
      return
    low, high = self.low, self.high
    ok = ((low is None or (v > low if self.low_open else v >= low))
          and (high is None or (v < high if self.high_open else v <= high)))
    if not ok:
      if high is None:
        bound = f"value {'>' if self.low_open else '>='} {low}"
      else:
        bound = (f"{low} {'<' if self.low_open else '<='} value "
                 f"{'<' if self.high_open else '<='} {high}")
      raise ConfigError("value out of range", f"config.{key}", expected=bound, found=v)


@dataclasses.dataclass(frozen=True)
class Key:
  """One config key: its default (which fixes its type) and the rule its values follow."""

  default: Any
  rule: Rule


def one_of(*choices: Any) -> Rule:
  return Rule(choices=tuple(choices))


POSITIVE = Rule(low=0, low_open=True)
NON_NEGATIVE = Rule(low=0)
UNIT = Rule(low=0, high=1)  # [0, 1]
FRACTION = Rule(low=0, high=1, low_open=True)  # (0, 1]


def _keys() -> dict[str, Any]:
  """Every config key: a plain default, or a ``Key`` with the rule its values follow.

  The one table of defaults, types and ranges; ``base_config`` and ``validate`` read it.
  """
  dec = decoding_config()
  decoding = {k: dec[k] for k in dec}
  decoding.update(
      method=one_of("greedy", "sample", "beam")(dec.method),
      max_new_tokens=NON_NEGATIVE(0),  # 0 = data.targets_length
      temperature=POSITIVE(dec.temperature), top_k=NON_NEGATIVE(dec.top_k),
      top_p=FRACTION(dec.top_p), num_beams=POSITIVE(dec.num_beams),
      num_samples=POSITIVE(dec.num_samples), behaviour_top_k=NON_NEGATIVE(dec.behaviour_top_k),
      behaviour_top_p=FRACTION(dec.behaviour_top_p))
  return dict(
      seed=0,
      model=dict(
          # a name from irl_lm.models.PRESETS: t5-tiny ... t5-xl, llama-3b, ...
          size=one_of(*PRESETS)("t5-small"),
          init_from="",  # Hugging Face checkpoint directory to start from
          vocab_size=0,  # 0: the task vocabulary's size, rounded up to a multiple of 128
          dtype=one_of(*DTYPES)("float32"),  # compute dtype; parameters stay float32
          # a LoRA run's frozen base stored in bfloat16 (half the memory; adapters and heads
          # stay float32); needs lora.rank > 0
          param_dtype=one_of(*DTYPES)("float32"),
          remat=one_of(*REMAT_POLICIES)("none"),
          scan_layers=False,
          # xla | chunked (blockwise, never the whole score matrix) | auto (chunked from
          # 2048 keys); attention_block: keys and queries per block
          attention=one_of(*ATTENTION)("xla"),
          attention_block=POSITIVE(512),
          # one matmul for q/k/v and one for gate/up (joined at load, split at export)
          fused_projections=False,
          # LoRA: rank 0 = full fine-tuning; adapters on the named projections (q, k, v, o,
          # gate, up, down), base frozen; the algorithm's heads still train
          lora=dict(rank=NON_NEGATIVE(0), alpha=POSITIVE(16.0),
                    dropout=Rule(low=0, high=1, high_open=True)(0.0),
                    targets=Rule(subset=LORA_TARGETS)(("q", "v"))),
          dropout_rate=Rule(low=0, high=1, high_open=True)(0.0),
      ),
      loss=dict(
          name=one_of(*LOSSES)("iqlearn"),
          iqlearn=dict(lam=NON_NEGATIVE(0.1), lam_warmup_steps=NON_NEGATIVE(0),
                       gamma=UNIT(1.0), stop_grad_next=False,
                       # online: policy samples in the value term (docs/training.md)
                       online=dict(enable=False, mix=UNIT(0.5), temperature=POSITIVE(1.0),
                                   every=POSITIVE(1), buffer_size=POSITIVE(256))),
          ilql=dict(tau=UNIT(0.7), gamma=UNIT(0.99), cql_weight=NON_NEGATIVE(0.1),
                    awac_weight=NON_NEGATIVE(1.0), awac_beta=NON_NEGATIVE(0.0),
                    awac_clip=POSITIVE(1e4), polyak_rate=FRACTION(0.005),
                    polyak_every=POSITIVE(1),
                    separate_value_trunk=False,  # True: Q/V heads on a second copy of the trunk
                    # z-score episode returns
                    reward_norm=one_of("none", "dataset", "running")("none")),
          # GAIL: discriminator reward, REINFORCE with a baseline, on-policy samples each step
          gail=dict(gamma=UNIT(1.0), temperature=POSITIVE(1.0), value_weight=NON_NEGATIVE(0.5),
                    disc_weight=POSITIVE(1.0), kl_weight=NON_NEGATIVE(0.0)),
      ),
      data=dict(
          task="embedded_summarize",
          vocabulary="",  # "", or sentencepiece | hf_tokenizer for the paper tasks
          vocabulary_path="",  # default: spiece.model / tokenizer.json in model.init_from
          tfds_data_dir="",
          inputs_length=POSITIVE(64),
          targets_length=POSITIVE(32),
          batch_size=POSITIVE(32),  # global, over all hosts
          pack=False,
          train_split="train",
          eval_split="validation",
          # data.task="jsonl": your own JSONL files, no code (docs/data.md#jsonl-from-the-config)
          jsonl=dict(train="", validation="", test="", skip_invalid=False,
                     fields=dict(ROW_FIELDS)),
          # data.task="hf_dataset": a local Hugging Face dataset, the save_to_disk directory
          # `path` (its own splits), else a JSON / JSONL / CSV / Parquet file per split;
          # rows as in jsonl, columns named by `fields`
          hf_dataset=dict(path="", train="", validation="", test="", fields=dict(ROW_FIELDS)),
      ),
      optimizer=dict(
          name=one_of(*OPTIMIZERS)("adamw"),
          learning_rate=NON_NEGATIVE(1e-3),
          schedule=one_of(*SCHEDULES)("cosine"),  # after warm-up
          warmup_steps=NON_NEGATIVE(100),
          end_learning_rate_factor=NON_NEGATIVE(0.1),
          b1=UNIT(0.9),
          b2=UNIT(0.999),
          eps=NON_NEGATIVE(1e-8),
          weight_decay=NON_NEGATIVE(0.01),
          decay_embeddings=False,  # apply weight decay to embeddings and the LM head
          grad_clip_norm=NON_NEGATIVE(1.0),  # 0 disables clipping
          grad_accum_steps=POSITIVE(1),
          # microbatch (in one step) | multisteps (optax.MultiSteps)
          grad_accum_mode=one_of(*ACCUM_MODES)("microbatch"),
      ),
      train=dict(
          steps=POSITIVE(1000),
          log_every=POSITIVE(50),
          eval_every=POSITIVE(500),
          checkpoint_every=POSITIVE(500),
          keep_checkpoints=NON_NEGATIVE(3),
          best_metric="",  # e.g. "eval/rougeL": also keep the best checkpoint by this metric
          best_mode=one_of("max", "min")("max"),
          max_nonfinite_steps=POSITIVE(5),  # stop after this many non-finite steps in a row
          peak_flops_per_device=NON_NEGATIVE(0.0),  # 0: measured with a large matmul at start-up
          async_checkpoints=True,
          # where scalars go besides the console: tensorboard and/or wandb (comma-separated;
          # wandb needs the wandb extra, and W&B's own settings: WANDB_MODE=offline, ...)
          trackers=Rule(subset=TRACKERS)("tensorboard"),
          wandb=dict(project="irl_lm", entity="", name=""),  # name "": the workdir's name
      ),
      eval=dict(
          num_examples=POSITIVE(256),
          batch_size=POSITIVE(64),
          generate=True,  # decode and compute the task's metrics
      ),
      decoding=decoding,  # eval decoding
      mesh=dict(
          shape=(-1, 1, 1),  # (data, fsdp, tensor); one -1 is filled from the device count
          num_devices=NON_NEGATIVE(0),  # 0: every device of every process; N: the first N
          rules=tuple((k, v) for k, v in shd.DEFAULT_RULES),
      ),
      distributed=dict(
          # host:port; empty = auto-detect (TPU pod, SLURM) or single process
          coordinator_address="",
          num_processes=0,
          process_id=-1,
      ),
  )


def _defaults(tree: Any) -> Any:
  if isinstance(tree, dict):
    return {k: _defaults(v) for k, v in tree.items()}
  return tree.default if isinstance(tree, Key) else tree


def base_config() -> ml_collections.ConfigDict:
  """Defaults for every config key (see docs/training.md, "Configuration")."""
  defaults = _defaults(_keys())
  decoding = defaults.pop("decoding")
  c = ml_collections.ConfigDict(defaults)
  c.decoding = decoding_config()  # keeps eos_id's typed placeholder
  c.decoding.max_new_tokens = decoding["max_new_tokens"]
  return c


def rules() -> dict[str, Rule]:
  """``{dotted key: Rule}`` of every key whose values are constrained."""
  return {k: v.rule for k, v in _walk(_keys()).items() if isinstance(v, Key)}


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


def _no_vocabulary(flat: dict[str, Any]) -> ConfigError:
  return ConfigError(
      f"config.data.vocabulary={flat['data.vocabulary']!r} needs config.data.vocabulary_path "
      "(or config.model.init_from, a Hugging Face directory with spiece.model / "
      "tokenizer.json)", "config.data.vocabulary_path")


def check_present(config: ml_collections.ConfigDict) -> None:
  """Everything a training run reads that is not there, in one error (before ``validate``
  names the first): the vocabulary, the ``init_from`` directory and a paper task's
  prepared TFDS data, each with how to provide it."""
  flat = _walk(config)
  vocabulary, path = flat.get("data.vocabulary"), flat.get("model.init_from")
  missing: list[UserError] = []
  if vocabulary and not (flat.get("data.vocabulary_path") or path):
    missing.append(_no_vocabulary(flat))
  if path and "://" not in path and not os.path.exists(path):
    missing.append(MissingError("checkpoint directory not found",
                                f"config.model.init_from={path!r}"))
  if vocabulary:  # the paper tasks (TFDS) are registered with a vocabulary kind
    from irl_lm.data.paper_tasks import not_prepared  # pylint: disable=import-outside-toplevel
    how = not_prepared(flat.get("data.task", ""), flat.get("data.tfds_data_dir") or None)
    if how:
      missing.append(MissingError(how))
  if len(missing) == 1:
    raise missing[0]
  if missing:
    raise MissingError(f"this run needs {len(missing)} things that are not here:\n" + "\n".join(
        f"  {i}. " + e.message.replace("\n", "\n     ") for i, e in enumerate(missing, 1)))


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
  for key, rule in rules().items():
    rule.check(key, flat[key])
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
  check_installed(flat["train.trackers"])
  if data and flat["data.vocabulary"] and not (flat["data.vocabulary_path"]
                                               or flat["model.init_from"]):
    raise _no_vocabulary(flat)
  if data and flat["data.task"] in (JSONL_TASK, HF_DATASET_TASK):
    _check_row_task(flat)
  if flat["loss.iqlearn.online.enable"] and flat["loss.name"] != "iqlearn":
    raise ConfigError("online IQLearn needs the IQLearn loss", "config.loss.iqlearn.online.enable",
                      expected="config.loss.name='iqlearn'", found=repr(flat["loss.name"]))
  algorithm_class(flat["loss.name"]).check_config(flat)


JSONL_TASK = "jsonl"
HF_DATASET_TASK = "hf_dataset"
ROW_FIELDS = dict(prompt="prompt", response="response", reward="reward", turns="turns",
                  messages="messages", done="done")  # jsonl.Fields' defaults


def _check_row_task(flat: dict[str, Any]) -> None:
  """``data.task="jsonl"`` or ``"hf_dataset"``: a tokenizer, and a source for each split read."""
  task = flat["data.task"]
  if not (flat["data.vocabulary_path"] or flat["model.init_from"]):
    raise ConfigError(f"config.data.task={task!r} needs a tokenizer: config.data.vocabulary_path "
                      "(a tokenizer.json) or config.model.init_from (a Hugging Face directory)",
                      "config.data.vocabulary_path")
  if task == HF_DATASET_TASK and flat["data.hf_dataset.path"]:
    return  # a save_to_disk directory brings its own splits (checked when read)
  for split in dict.fromkeys((flat["data.train_split"], flat["data.eval_split"])):
    if split not in ("train", "validation", "test"):
      raise ConfigError(f"config.data.task={task!r} has splits train, validation and test",
                        "config.data.train_split / eval_split", found=repr(split))
    if not flat[f"data.{task}.{split}"]:
      raise ConfigError(f"config.data.task={task!r} reads split {split!r} but its file is not "
                        "set", f"config.data.{task}.{split}")