"""Config -> run: one place that builds the mesh, task, model, optimizer, state and steps.

``build_run`` is what training, the planner, the benchmarks and the tests call;
``irl_lm.workdir`` reads a trained run back for generation and export.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from irl_lm import data
from irl_lm import sharding as shd
from irl_lm.algorithms import Algorithm, make_algorithm
from irl_lm.errors import ConfigError, UserError
from irl_lm.models import ModelConfig, build_model, from_pretrained, lora, preset
from irl_lm.models.attention import resolve as resolve_attention
from irl_lm.models.attention import unsupported as unsupported_attention
from irl_lm.models.hf_io import checkpoint_dir, load_hf_config, tokenizer_home
from irl_lm.training.config import HF_DATASET_TASK, JSONL_TASK, check_present, validate
from irl_lm.training.optim import make_optimizer
from irl_lm.training.state import TrainState, new_state, state_shardings
from irl_lm.training.step import make_eval_step, make_train_step

if TYPE_CHECKING:
  import seqio


def _row_task(config: ml_collections.ConfigDict) -> seqio.Task:
  """``data.task="jsonl"`` (the files of ``data.jsonl``) or ``"hf_dataset"`` (the local
  Hugging Face dataset of ``data.hf_dataset``): read now, errors naming file and line/row."""
  d = config.data
  path = d.vocabulary_path or tokenizer_home(config.model.init_from)
  vocab = data.make_vocabulary(d.vocabulary or "hf_tokenizer", path)
  directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
  try:
    template = data.load_chat_template(directory)
  except data.NoChatTemplateError:
    template = None  # chat rows, if any, are refused with their file and line
  if d.task == JSONL_TASK:
    splits = {s: d.jsonl[s] for s in ("train", "validation", "test") if d.jsonl[s]}
    task = data.register_jsonl_reward_task(
        JSONL_TASK, splits, vocab, skip_invalid=d.jsonl.skip_invalid, chat_template=template,
        fields=data.JsonlFields(**d.jsonl.fields))
  else:
    h = d.hf_dataset
    files = {s: h[s] for s in ("train", "validation", "test") if h[s]}
    task = data.register_hf_dataset_task(
        HF_DATASET_TASK, h.path, files, tuple(dict.fromkeys((d.train_split, d.eval_split))),
        vocab, chat_template=template, fields=data.JsonlFields(**h.fields))
  for split in dict.fromkeys((d.train_split, d.eval_split)):
    try:
      task.source.columns(split)
    except UserError as e:
      key = f"config.data.{d.task}." + ("path" if d.task == HF_DATASET_TASK and d.hf_dataset.path
                                          else split)
      raise type(e)(e.what, key + (f", {e.where}" if e.where else ""), e.expected,
                    e.found) from None
  return task


def get_task(config: ml_collections.ConfigDict) -> seqio.Task:
  """The seqio task of ``config.data``, registering the paper tasks or the config's JSONL
  files when configured."""
  d = config.data
  if d.task in (JSONL_TASK, HF_DATASET_TASK):
    return _row_task(config)
  if d.vocabulary:
    home = tokenizer_home(config.model.init_from) if config.model.init_from else ""
    path = d.vocabulary_path or (os.path.join(home, "spiece.model")
                                 if d.vocabulary == "sentencepiece" else home)
    data.register_paper_tasks(d.vocabulary, path, tfds_data_dir=d.tfds_data_dir or None)
  try:
    return data.get_task(d.task)
  except UserError as e:
    raise type(e)(e.what, f"config.data.task={d.task!r}" + (f", {e.where}" if e.where else ""),
                  e.expected, e.found) from None
  except (KeyError, ValueError) as e:
    raise ConfigError(f"no such task ({e})", f"config.data.task={d.task!r}") from None


def vocabulary(task: seqio.Task) -> seqio.Vocabulary:
  return task.output_features["targets"].vocabulary


def _execution(config: ml_collections.ConfigDict) -> dict[str, Any]:
  m = config.model
  return dict(dtype=m.dtype, remat=m.remat, scan_layers=m.scan_layers,
              dropout_rate=m.dropout_rate, attention=m.attention,
              attention_block=m.attention_block, lora_rank=m.lora.rank,
              lora_alpha=m.lora.alpha, lora_dropout=m.lora.dropout,
              lora_targets=tuple(m.lora.targets), param_dtype=m.param_dtype,
              fused_projections=m.fused_projections)


def model_config(config: ml_collections.ConfigDict, task: seqio.Task | None) -> ModelConfig:
  """The ``ModelConfig`` a config trains (from ``init_from``'s config.json if set).

  ``model.vocab_size=0`` takes the task vocabulary's size rounded up to a
  multiple of 128 (so the vocab axis shards evenly); ``task`` may be None only
  when the size is given or comes from ``init_from``.
  """
  m = config.model
  vocab = vocabulary(task) if task is not None else None
  if m.init_from:
    cfg = load_hf_config(m.init_from, **_execution(config))
    where = f"config.model.init_from={m.init_from!r}"
  else:
    if not m.vocab_size and vocab is None:
      raise ConfigError("the model's vocabulary size needs the task", "config.model.vocab_size",
                        expected="a size > 0 (or a task to take it from)", found=0)
    size = m.vocab_size or -(-vocab.vocab_size // 128) * 128
    extra = dict(eos_id=vocab.eos_id, pad_id=0) if vocab is not None else {}
    cfg = preset(m.size, vocab_size=size, **_execution(config), **extra)
    where = "config.model.vocab_size"
  if vocab is not None and cfg.vocab_size < vocab.vocab_size:
    raise ConfigError("model vocabulary smaller than the task's", where,
                      expected=f"vocab_size >= {vocab.vocab_size}", found=cfg.vocab_size)
  if m.init_from and vocab is not None:
    from irl_lm.data.special_tokens import check_special_tokens  # pylint: disable=import-outside-toplevel
    check_special_tokens(vocab, checkpoint_dir(m.init_from),
                         f"{where}, the task {task.name!r}'s vocabulary")
    # Of the checkpoint's EOS ids, the one its tokenizer ends rows with is where sampling stops.
    cfg = dataclasses.replace(cfg, eos_id=vocab.eos_id)
  return cfg


def make_mesh(config: ml_collections.ConfigDict,
              devices: list[jax.Device] | None = None) -> Mesh:
  """The mesh of ``config.mesh`` over ``devices`` (default: the first
  ``mesh.num_devices`` devices, or all), checked against the batch size."""
  n = config.mesh.num_devices
  if devices is None:
    if n and (n > jax.device_count() or jax.process_count() > 1):
      raise ConfigError("more devices than this process has", "config.mesh.num_devices",
                        expected=f"<= {jax.device_count()} (single process)", found=n)
    devices = jax.devices()[:n] if n else None
  try:
    mesh = shd.make_mesh(tuple(config.mesh.shape), devices=devices)
  except ValueError as e:
    raise ConfigError(f"no such mesh ({e})", "config.mesh.shape") from None
  axes = shd.batch_axes(mesh, tuple(config.mesh.rules))
  rows = shd.batch_shards(mesh, tuple(config.mesh.rules))
  if config.data.batch_size % rows:
    raise ConfigError("batch does not split over the mesh", "config.data.batch_size",
                      expected=f"a multiple of {' x '.join(axes) or 'nothing'} = {rows} "
                      "(the mesh axes config.mesh.rules give 'batch')",
                      found=config.data.batch_size)
  return mesh


def optimizer(config: ml_collections.ConfigDict
              ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, schedule); the schedule counts optimizer updates, so with
  ``multisteps`` accumulation it is ``train.steps / grad_accum_steps`` long."""
  opt = config.optimizer
  multisteps = opt.grad_accum_mode == "multisteps" and opt.grad_accum_steps > 1
  steps = config.train.steps
  return make_optimizer(opt, steps // opt.grad_accum_steps if multisteps else steps)


def batch_shapes(config: ml_collections.ConfigDict, cfg: ModelConfig
                 ) -> dict[str, tuple[tuple[int, ...], Any]]:
  """``{feature: (shape, dtype)}`` of one global training batch (`data.features`)."""
  d = config.data
  lengths = {"inputs": d.inputs_length, "targets": d.targets_length}
  table = {f.name: f.dtype for f in data.batch_features(cfg.kind, d.pack)}
  return {k: ((d.batch_size, n), table[k])
          for k, n in data.feature_lengths(cfg.kind, d.pack, lengths).items()}


@dataclasses.dataclass
class Run:
  """A built run: everything the trainer, the planner and the benchmarks share.

  ``train_step(state, batch) -> (state, metrics)`` and ``eval_step(state,
  batch) -> sums`` are jitted with the state's and the batch's shardings and
  carry their mesh and rules; ``lower`` them with ``abstract_state()`` and
  ``abstract_batch()`` to compile ahead of time.
  """

  config: ml_collections.ConfigDict
  mesh: Mesh
  rules: tuple[tuple[str, Any], ...]
  task: seqio.Task | None
  model_cfg: ModelConfig
  model: nn.Module
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  algorithm: Algorithm
  state_abstract: TrainState
  shardings: TrainState
  train_step: shd.MeshFunction
  eval_step: shd.MeshFunction

  @property
  def kind(self) -> str:
    return self.model_cfg.kind

  def batch_sharding(self, ndim: int = 2) -> NamedSharding:
    return shd.batch_sharding(self.mesh, self.rules, ndim)

  def shard_batch(self, batch: dict[str, Any]) -> dict[str, jax.Array]:
    """This process's rows -> global arrays split over the batch axes."""
    return shd.shard_batch(batch, self.mesh, self.rules)

  def abstract_state(self) -> TrainState:
    """The state as sharded ``ShapeDtypeStruct``s."""
    return shd.with_shardings(self.state_abstract, self.shardings)

  def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
    """One global training batch as sharded ``ShapeDtypeStruct``s."""
    return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=self.batch_sharding(len(shape)))
            for k, (shape, dtype) in batch_shapes(self.config, self.model_cfg).items()}

  def init_state(self, params: Any | None = None, **startup: Any) -> TrainState:
    """The sharded state at step 0, created under jit (never whole on one device).

    ``params`` (e.g. from ``init_from``) are the starting parameters; None
    initialises them randomly from ``config.seed``. ``startup`` are the values the
    algorithm's state starts from (``Algorithm.startup``; e.g. ILQL's
    ``reward_stats``).
    """
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(self.config.seed))
    algo, extra = self.algorithm, self.state_abstract.extra

    def make(p: Any) -> TrainState:
      p = algo.complete_params(self.model_cfg, p, init_rng)
      return new_state(p, self.tx, state_rng, algo.init_extra(p, extra, **startup),
                       self.model_cfg)

    if params is None:
      init = algo.param_init_fn(self.model_cfg)
      return shd.jit(lambda r: make(init(r)), self.mesh, self.rules,
                     out_shardings=self.shardings)(init_rng)
    return shd.jit(make, self.mesh, self.rules, out_shardings=self.shardings)(params)

  def initial_params(self) -> Any | None:
    """``model.init_from``'s weights placed on the mesh (None: random init); see
    ``initial_params``."""
    return initial_params(self.config, self.algorithm, self.mesh, self.rules)

  @property
  def base_outside(self) -> bool:
    """Whether checkpoints leave out the frozen base (a LoRA run from ``init_from``)."""
    return base_outside(self.config, self.model_cfg)

  def saved(self, state: TrainState) -> dict[str, Any]:
    """The tree a checkpoint holds of ``state`` (or of its abstract or sharding twin): the
    state's fields, less a frozen base that lives in ``init_from``."""
    tree = state.saved()
    if self.base_outside:
      tree["params"] = lora.partition(tree["params"], self.model_cfg)[0]
    return tree

  def from_saved(self, tree: dict[str, Any]) -> TrainState:
    """The state of a restored checkpoint tree, the frozen base read back from ``init_from``."""
    tree = dict(tree)
    if self.base_outside:
      frozen = lora.partition(self.initial_params(), self.model_cfg)[1]
      tree["params"] = lora.combine(tree["params"], frozen)
    return TrainState.from_saved(tree)


def base_outside(config: ml_collections.ConfigDict, cfg: ModelConfig) -> bool:
  """A LoRA run from a checkpoint: its frozen base stays there (``training.base_model``)."""
  return bool(cfg.lora_rank and config.model.init_from)


def initial_params(config: ml_collections.ConfigDict, algorithm: Algorithm, mesh: Mesh,
                   rules: shd.Rules) -> Any | None:
  """``model.init_from``'s weights placed on ``mesh`` (None: random init).

  For ILQL the value heads come from ``value_heads.safetensors`` or start
  fresh from ``config.seed``; a separate value trunk comes from
  ``value_trunk.safetensors`` or starts as a copy of the checkpoint's trunk.
  """
  m = config.model
  if not m.init_from:
    return None
  _, params = from_pretrained(
      m.init_from, value_heads=algorithm.value_heads, value_trunk=algorithm.value_trunk,
      mesh=mesh, rules=rules, rng=jax.random.PRNGKey(config.seed), **_execution(config))
  logging.info("Starting from %s", m.init_from)
  return params


def attention_for(config: ml_collections.ConfigDict, cfg: ModelConfig, mesh: Mesh) -> ModelConfig:
  """``cfg`` with ``model.attention`` resolved for this mesh's devices and the data's lengths
  (``auto`` chosen and logged); a ``ConfigError`` naming the feature that rules out the
  implementation asked for."""
  d = config.data
  lengths = (d.inputs_length + d.targets_length,) if cfg.kind == "decoder" else \
      (d.inputs_length, d.targets_length)
  features = dict(platform=mesh.devices.flat[0].platform, dtype=cfg.dtype,
                  softcap=cfg.attn_softcap, relative_bias=cfg.position == "relative",
                  head_dim=cfg.head_dim, lengths=lengths)
  why = unsupported_attention(cfg.attention, **features)
  if why:
    raise ConfigError(why, f"config.model.attention={cfg.attention!r}",
                      expected="xla or chunked (they run everywhere)")
  how = resolve_attention(cfg.attention, max(lengths), **features)
  logging.info("Attention: %s (model.attention=%s, %d keys per row)", how, cfg.attention,
               max(lengths))
  return dataclasses.replace(cfg, attention=how)


def build_run(config: ml_collections.ConfigDict, *, devices: list[jax.Device] | None = None,
              with_task: bool = True, model_cfg: ModelConfig | None = None) -> Run:
  """Builds the run ``config`` describes (after validating it).

  Args:
    devices: the mesh's devices (default: ``config.mesh``'s); the planner
      passes simulated or TPU-topology devices.
    with_task: look up the task (training). Without it (planning) the task is
      read only when the model's vocabulary size comes from it.
    model_cfg: a model other than ``config.model``'s (benchmarks of custom sizes).
  """
  if with_task:
    check_present(config)
  validate(config, data=with_task)
  mesh = make_mesh(config, devices)
  rules = tuple(config.mesh.rules)
  m = config.model
  needs_task = with_task or not (m.vocab_size or m.init_from or model_cfg)
  task = get_task(config) if needs_task else None
  cfg = model_cfg or model_config(config, task)
  model = build_model(attention_for(config, cfg, mesh))  # run.model_cfg keeps what was asked
  tx, schedule = optimizer(config)
  algorithm = make_algorithm(config)
  abstract, shardings = state_shardings(cfg, tx, mesh, rules, algorithm,
                                        batch_shapes(config, cfg))
  batch = shd.batch_sharding(mesh, rules)
  step = make_train_step(model, algorithm, config.optimizer, tx, schedule)
  train_step = shd.jit(step, mesh, rules, in_shardings=(shardings, batch),
                       out_shardings=(shardings, shd.replicated(mesh)), donate_argnums=0)
  eval_step = shd.jit(make_eval_step(model, algorithm), mesh, rules,
                      in_shardings=(shardings, batch))
  return Run(config, mesh, rules, task, cfg, model, tx, schedule, algorithm, abstract, shardings,
             train_step, eval_step)
