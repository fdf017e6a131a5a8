"""Config -> objects: the task, the model config, the mesh and the starting parameters."""
from __future__ import annotations

import logging
import os
from typing import Any

import jax
import ml_collections
import seqio
from jax.sharding import Mesh

from irl_lm import data
from irl_lm import sharding as shd
from irl_lm.errors import ConfigError, UserError
from irl_lm.models import ModelConfig, from_pretrained, preset


def get_task(config: ml_collections.ConfigDict) -> seqio.Task:
  """The seqio task of ``config.data``, registering the paper tasks when configured."""
  d = config.data
  if d.vocabulary:
    path = d.vocabulary_path or (os.path.join(config.model.init_from, "spiece.model")
                                 if d.vocabulary == "sentencepiece" else config.model.init_from)
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


def model_kind(cfg: ModelConfig) -> str:
  return "encdec" if cfg.is_encoder_decoder else "decoder"


def model_config(config: ml_collections.ConfigDict, task: seqio.Task) -> ModelConfig:
  """The ``ModelConfig`` of a run started from scratch.

  ``model.vocab_size=0`` takes the task vocabulary's size rounded up to a
  multiple of 128 (so the vocab axis shards evenly).
  """
  m = config.model
  vocab = vocabulary(task)
  size = m.vocab_size or -(-vocab.vocab_size // 128) * 128
  if size < vocab.vocab_size:
    raise ConfigError("model vocabulary smaller than the task's", "config.model.vocab_size",
                      expected=f">= {vocab.vocab_size}", found=size)
  return preset(m.size, vocab_size=size, value_heads=m.value_heads, dtype=m.dtype,
                remat=m.remat, scan_layers=m.scan_layers, dropout_rate=m.dropout_rate,
                eos_id=vocab.eos_id, pad_id=0)


def initial_model(config: ml_collections.ConfigDict, task: seqio.Task, mesh: Mesh
                  ) -> tuple[ModelConfig, Any | None]:
  """(model config, starting params or None for a random init)."""
  m = config.model
  if not m.init_from:
    return model_config(config, task), None
  model, params = from_pretrained(
      m.init_from, value_heads=m.value_heads, dtype=m.dtype, mesh=mesh, rules=config.mesh.rules,
      rng=jax.random.PRNGKey(config.seed), remat=m.remat, scan_layers=m.scan_layers,
      dropout_rate=m.dropout_rate)
  vocab = vocabulary(task)
  if model.cfg.vocab_size < vocab.vocab_size:
    raise ConfigError("model vocabulary smaller than the task's",
                      f"config.model.init_from={m.init_from!r}",
                      expected=f"vocab_size >= {vocab.vocab_size}", found=model.cfg.vocab_size)
  logging.info("Starting from %s", m.init_from)
  return model.cfg, params


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """The mesh of ``config.mesh`` (over the first ``num_devices`` devices if set)."""
  n = config.mesh.num_devices
  if n and (n > jax.device_count() or jax.process_count() > 1):
    raise ConfigError("more devices than this process has", "config.mesh.num_devices",
                      expected=f"<= {jax.device_count()} (single process)", found=n)
  try:
    return shd.make_mesh(tuple(config.mesh.shape), devices=jax.devices()[:n] if n else None)
  except ValueError as e:
    raise ConfigError(f"no such mesh ({e})", "config.mesh.shape") from None
