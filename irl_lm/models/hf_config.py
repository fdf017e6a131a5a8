"""Conversion between Hugging Face ``config.json`` dicts and ``ModelConfig``."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from irl_lm.errors import ConfigError, InputError, MissingError
from irl_lm.models.config import ModelConfig, check_options
from irl_lm.models.hf_families import HINTS, READERS, Keys, to_hf_config

SUPPORTED_MODEL_TYPES = tuple(READERS)
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"


def check_not_lfs_pointer(path: str, head: bytes, content: str = "the file") -> None:
  """InputError when ``head`` (a file's first bytes) is a Git LFS pointer, not the content."""
  if head.startswith(LFS_POINTER_PREFIX):
    raise InputError(f"{os.path.basename(path)} is a Git LFS pointer, not {content}; "
                     "run `git lfs pull`", where=path)


def read_json(path: str) -> Any:
  """A parsed JSON file; MissingError / InputError naming the file (and line, column)."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise MissingError("file not found", where=path) from None
  except OSError as e:
    raise InputError(f"cannot read file: {e.strerror or e}", where=path) from None
  check_not_lfs_pointer(path, raw)
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise InputError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at byte offset {e.start})",
                     where=path) from None
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise InputError(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                     where=path) from None


def from_hf_config(hf: dict[str, Any], source: str = "config.json", **overrides: Any
                   ) -> ModelConfig:
  """``ModelConfig`` from a parsed Hugging Face ``config.json``.

  ``source`` (the file's path) is named in errors. Every key is read, known
  to be harmless, or refused (``hf_families``).

  Raises:
    InputError: not a JSON object, unknown ``model_type``, a missing or
      ill-typed required key, or an unsupported option, naming the key.
    ConfigError: an ``overrides`` key that is not a ``ModelConfig`` field.
  """
  check_options(overrides)
  if not isinstance(hf, dict):
    raise InputError("config is not a JSON object", where=source, expected="an object",
                     found=type(hf).__name__)
  mt = hf.get("model_type")
  if mt not in SUPPORTED_MODEL_TYPES:
    raise InputError(f"model_type={mt!r} is not supported", where=source,
                     expected=f"one of {SUPPORTED_MODEL_TYPES}", found=repr(mt))
  keys = Keys(hf, mt, source)
  try:
    cfg = READERS[mt](keys)
    keys.check_rest(HINTS.get(mt))
  except InputError:
    raise
  except KeyError as e:
    raise InputError(f"missing required key {e.args[0]!r} for model_type={mt!r}",
                     where=source) from None
  except (TypeError, ValueError, ZeroDivisionError, AttributeError) as e:
    raise InputError(f"bad value for model_type={mt!r}: {e}", where=source) from None
  cfg.update(overrides)
  try:
    return ModelConfig(**cfg)
  except ConfigError as e:  # e.g. num_heads not a multiple of num_key_value_heads
    raise ConfigError(e.what, where=e.where or source, expected=e.expected,
                      found=e.found) from None


# How a run executes, and the LoRA adapters it trains: never in config.json.
EXECUTION_FIELDS = ("dtype", "remat", "scan_layers", "dropout_rate", "attention", "attention_block",
                    "lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "param_dtype",
                    "fused_projections")


def check_exportable(cfg: ModelConfig) -> None:
  """InputError unless ``to_hf_config(cfg)`` reads back as ``cfg``: a switch that the
  family's Hugging Face class cannot express is refused, never dropped from the export."""
  back = from_hf_config(to_hf_config(cfg), **{k: getattr(cfg, k) for k in EXECUTION_FIELDS})
  for field in dataclasses.fields(ModelConfig):
    ours, theirs = getattr(cfg, field.name), getattr(back, field.name)
    same = math.isclose(ours, theirs, rel_tol=1e-9) if isinstance(ours, float) else ours == theirs
    if not same:
      raise InputError(f"model_type {to_hf_config(cfg)['model_type']!r} cannot express "
                       f"{field.name}={ours!r} (its config.json would load as {theirs!r})")


__all__ = ["from_hf_config", "to_hf_config", "check_exportable", "read_json",
           "check_not_lfs_pointer"]
