"""Conversion between Hugging Face ``config.json`` dicts and ``ModelConfig``."""
from __future__ import annotations

import json
import os
from typing import Any

from irl_lm.errors import ConfigError, InputError, MissingError
from irl_lm.models.config import ModelConfig, check_options

SUPPORTED_MODEL_TYPES = ("t5", "gpt2", "llama")
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


def load_hf_config(path: str, **overrides: Any) -> ModelConfig:
  """``ModelConfig`` from a ``config.json`` file, or a directory holding one."""
  if os.path.isdir(path):
    path = os.path.join(path, "config.json")
  if not os.path.exists(path):
    raise MissingError("no config.json", where=path)
  return from_hf_config(read_json(path), source=path, **overrides)


def _rope_theta(hf: dict[str, Any], source: str) -> float:
  params = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling") or {}
  kind = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
  if kind != "default":
    raise InputError(f"rope scaling type {kind!r} is not supported (only the default RoPE)",
                     where=source)
  return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def from_hf_config(hf: dict[str, Any], source: str = "config.json", **overrides: Any
                   ) -> ModelConfig:
  """``ModelConfig`` from a parsed Hugging Face ``config.json``.

  ``source`` (the file's path) is named in errors.

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
  try:
    cfg = _fields(hf, mt, source)
  except InputError:
    raise
  except KeyError as e:
    raise InputError(f"missing required key {e.args[0]!r} for model_type={mt!r}",
                     where=source) from None
  except (TypeError, ValueError, ZeroDivisionError) as e:
    raise InputError(f"bad value for model_type={mt!r}: {e}", where=source) from None
  cfg.update(overrides)
  try:
    return ModelConfig(**cfg)
  except ConfigError as e:  # e.g. num_heads not a multiple of num_key_value_heads
    raise ConfigError(e.what, where=e.where or source, expected=e.expected,
                      found=e.found) from None


def _fields(hf: dict[str, Any], mt: str, source: str) -> dict[str, Any]:
  """``ModelConfig`` fields from a config.json of a supported ``model_type``."""
  if mt == "t5":
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in ("relu", "gated-gelu"):
      raise InputError(f"feed_forward_proj={proj!r} is not supported "
                       "(expected 'relu' or 'gated-gelu')", where=source)
    cfg = dict(
        kind="encdec", layout="v1_1" if proj == "gated-gelu" else "original",
        vocab_size=hf["vocab_size"], d_model=hf["d_model"], num_heads=hf["num_heads"],
        head_dim=hf["d_kv"], d_ff=hf["d_ff"],
        num_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        num_encoder_layers=hf["num_layers"],
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        # Tied = the original T5 head (shared embedding, output scaled by
        # d_model**-0.5). transformers>=5 always reports tie_word_embeddings=True
        # and records the scaling as scale_decoder_outputs instead.
        tie_word_embeddings=hf.get("scale_decoder_outputs",
                                   hf.get("tie_word_embeddings", True)),
        pad_id=hf.get("pad_token_id", 0) or 0, eos_id=hf.get("eos_token_id", 1),
        decoder_start_id=hf.get("decoder_start_token_id", 0) or 0)
  elif mt == "gpt2":
    act = hf.get("activation_function", "gelu_new")
    if act != "gelu_new":
      raise InputError(f"activation_function={act!r} is not supported "
                       "(expected 'gelu_new')", where=source)
    d = hf["n_embd"]
    cfg = dict(
        kind="decoder", layout="gpt2", vocab_size=hf["vocab_size"], d_model=d,
        num_heads=hf["n_head"], head_dim=d // hf["n_head"], d_ff=hf.get("n_inner") or 4 * d,
        num_layers=hf["n_layer"], max_position_embeddings=hf["n_positions"],
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), tie_word_embeddings=True,
        eos_id=hf.get("eos_token_id", 50256), pad_id=0)
  elif mt == "llama":
    for key in ("attention_bias", "mlp_bias"):
      if hf.get(key):
        raise InputError(f"{key}=true is not supported", where=source)
    act = hf.get("hidden_act", "silu")
    if act != "silu":
      raise InputError(f"hidden_act={act!r} is not supported (expected 'silu')", where=source)
    h = hf["num_attention_heads"]
    eos = hf.get("eos_token_id", 2)
    cfg = dict(
        kind="decoder", layout="llama", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
        num_heads=h, num_kv_heads=hf.get("num_key_value_heads") or h,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // h, d_ff=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"], layer_norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(hf, source),
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
        eos_id=eos[0] if isinstance(eos, list) else eos, pad_id=0)
  return cfg


def to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
  """A ``config.json`` dict that transformers' PyTorch classes load."""
  if cfg.kind == "encdec":
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
        "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.head_dim,
        "d_ff": cfg.d_ff, "num_layers": cfg.num_encoder_layers,
        "num_decoder_layers": cfg.num_layers, "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_eps,
        "feed_forward_proj": "gated-gelu" if cfg.layout == "v1_1" else "relu",
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "scale_decoder_outputs": cfg.tie_word_embeddings, "is_encoder_decoder": True,
        "pad_token_id": cfg.pad_id, "eos_token_id": cfg.eos_id,
        "decoder_start_token_id": cfg.decoder_start_id, "use_cache": True,
    }
  if cfg.layout == "gpt2":
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_head": cfg.num_heads,
        "n_layer": cfg.num_layers, "n_inner": cfg.d_ff,
        "n_positions": cfg.max_position_embeddings, "layer_norm_epsilon": cfg.layer_norm_eps,
        "activation_function": "gelu_new", "resid_pdrop": cfg.dropout_rate,
        "embd_pdrop": cfg.dropout_rate, "attn_pdrop": cfg.dropout_rate,
        "bos_token_id": cfg.eos_id, "eos_token_id": cfg.eos_id, "tie_word_embeddings": True,
    }
  return {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
      "intermediate_size": cfg.d_ff, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.kv_heads,
      "head_dim": cfg.head_dim, "rms_norm_eps": cfg.layer_norm_eps, "rope_theta": cfg.rope_theta,
      "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
      "tie_word_embeddings": cfg.tie_word_embeddings, "eos_token_id": cfg.eos_id,
      "bos_token_id": 1, "max_position_embeddings": cfg.max_position_embeddings,
  }
