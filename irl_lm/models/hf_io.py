"""Read and write Hugging Face checkpoint directories (config.json + safetensors)."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import ml_dtypes
from jax.experimental import multihost_utils
import numpy as np
from flax import traverse_util
from safetensors.numpy import save_file

from irl_lm import sharding as shd
from irl_lm.errors import InputError, MissingError
from irl_lm.models.config import ModelConfig
from irl_lm.models.factory import build_model, init_heads, param_logical_specs
from irl_lm.models import base_record, fused, lora, peft_format
from irl_lm.models.heads import AUX_HEADS, HEADS, VALUE_TRUNK
from irl_lm.models.hf_config import (EXECUTION_FIELDS, LFS_POINTER_PREFIX, check_exportable,
                                     check_not_lfs_pointer, from_hf_config, read_json)
from irl_lm.models.hf_families import to_hf_config
from irl_lm.models.hf_weights import Entry, ignorable, key_aliases, weight_entries

VALUE_HEADS_FILE = "value_heads.safetensors"
VALUE_TRUNK_FILE = "value_trunk.safetensors"  # ILQL's separate value trunk, Hugging Face names
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64,
           "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def _corrupt(fn: str, **kw: Any) -> InputError:
  return InputError("truncated or corrupt safetensors file", where=fn, **kw)


def _read_header(fn: str) -> tuple[dict[str, Any], int]:
  """The tensor entries of one safetensors file and where its data starts, checked
  against the file's size (a truncated download, a Git LFS pointer, a bad header)."""
  try:
    size = os.path.getsize(fn)
    with open(fn, "rb") as f:
      head = f.read(len(LFS_POINTER_PREFIX))
      check_not_lfs_pointer(fn, head, "the weights")
      if len(head) < 8:
        raise _corrupt(fn, expected="an 8-byte header length", found=f"{size} bytes")
      n = int.from_bytes(head[:8], "little")
      if n > size - 8:
        raise _corrupt(fn, expected=f"at least {8 + n} bytes (header length {n})",
                       found=f"{size} bytes")
      f.seek(8)
      raw = f.read(n)
  except FileNotFoundError:
    raise MissingError("safetensors file not found", where=fn) from None
  except OSError as e:
    raise InputError(f"cannot read safetensors file: {e.strerror or e}", where=fn) from None
  try:
    header = json.loads(raw)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise _corrupt(fn, expected="a JSON header", found=str(e)) from None
  if not isinstance(header, dict):
    raise _corrupt(fn, expected="a JSON object header", found=type(header).__name__)
  header.pop("__metadata__", None)
  data_size = size - 8 - n
  for key, info in header.items():
    try:
      start, end = (int(x) for x in info["data_offsets"])
      shape = [int(d) for d in info["shape"]]
      dtype = info["dtype"]
    except (KeyError, TypeError, ValueError):
      raise _corrupt(fn, expected=f"dtype, shape and data_offsets for tensor {key!r}",
                     found=info) from None
    if not 0 <= start <= end:
      raise _corrupt(fn, expected=f"0 <= start <= end for tensor {key!r}",
                     found=f"data_offsets {[start, end]}")
    if end > data_size:
      raise _corrupt(fn, expected=f"at least {8 + n + end} bytes (tensor {key!r})",
                     found=f"{size} bytes")
    if dtype in _DTYPES and end - start != math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize:
      raise _corrupt(fn, expected=f"{math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize} "
                     f"bytes for tensor {key!r} ({dtype} {shape})", found=f"{end - start} bytes")
  return header, 8 + n


class SafetensorsDir(Mapping[str, np.ndarray]):
  """Lazy, memory-mapped view of every tensor in a checkpoint directory.

  Reads ``model.safetensors`` or the files named by
  ``model.safetensors.index.json`` (or just ``files``, names in ``path``);
  supports bfloat16 without torch. A missing, truncated or corrupt file raises
  ``MissingError`` / ``InputError`` naming it.
  """

  def __init__(self, path: str, files: list[str] | None = None):
    index = os.path.join(path, "model.safetensors.index.json")
    named_by = "the caller"
    if files is None and os.path.exists(index):
      files, named_by = _index_files(index), os.path.basename(index)
    elif files is None and os.path.exists(os.path.join(path, "model.safetensors")):
      files = ["model.safetensors"]
    elif files is None:
      raise MissingError("no model.safetensors or model.safetensors.index.json", where=path)
    self._where: dict[str, tuple[str, dict[str, Any], int]] = {}
    for name in files:
      fn = os.path.join(path, name)
      if not os.path.exists(fn):
        raise MissingError(f"shard {name!r} named by {named_by} is missing", where=fn)
      header, offset = _read_header(fn)
      for key, info in header.items():
        self._where[key] = (fn, info, offset)

  def __getitem__(self, key: str) -> np.ndarray:
    fn, info, offset = self._where[key]
    if info["dtype"] not in _DTYPES:
      raise InputError(f"tensor {key} has unsupported dtype {info['dtype']}", where=fn,
                       expected=f"one of {sorted(_DTYPES)}", found=info["dtype"])
    start, end = info["data_offsets"]
    dtype = np.dtype(_DTYPES[info["dtype"]])
    if end == start:
      return np.zeros(info["shape"], dtype)
    mm = np.memmap(fn, dtype=np.uint8, mode="r", offset=offset + start, shape=(end - start,))
    return mm.view(dtype).reshape(info["shape"])

  def __contains__(self, key: object) -> bool:
    return key in self._where

  def file_of(self, key: str) -> str:
    """The file holding tensor ``key``."""
    return self._where[key][0]

  def shape(self, key: str) -> tuple[int, ...]:
    return tuple(self._where[key][1]["shape"])

  def __iter__(self) -> Iterator[str]:
    return iter(self._where)

  def __len__(self) -> int:
    return len(self._where)


def _index_files(index: str) -> list[str]:
  """The shard file names a ``model.safetensors.index.json`` names."""
  data = read_json(index)
  weight_map = data.get("weight_map") if isinstance(data, dict) else None
  if not isinstance(weight_map, dict) or not all(
      isinstance(v, str) for v in weight_map.values()):
    raise InputError("no 'weight_map' object of tensor name -> file name", where=index)
  return sorted(set(weight_map.values()))


def _stack_layers(flat: dict[tuple[str, ...], np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
  """Unrolled ``layers_i`` leaves -> one ``layers`` leaf stacked on axis 0."""
  groups: dict[tuple[str, ...], dict[int, np.ndarray]] = {}
  out = {}
  for path, x in flat.items():
    idx = next((k for k, p in enumerate(path) if p.startswith("layers_")), None)
    if idx is None:
      out[path] = x
      continue
    key = path[:idx] + ("layers",) + path[idx + 1:]
    groups.setdefault(key, {})[int(path[idx][len("layers_"):])] = x
  for key, layers in groups.items():
    out[key] = np.stack([layers[i] for i in range(len(layers))])
  return out


def _unstack_layers(flat: dict[tuple[str, ...], np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
  out = {}
  for path, x in flat.items():
    if "layers" in path:
      i = path.index("layers")
      for n in range(x.shape[0]):
        out[path[:i] + (f"layers_{n}",) + path[i + 1:]] = x[n]
    else:
      out[path] = x
  return out


def _read_trunk(cfg: ModelConfig, tensors: SafetensorsDir, shapes: dict[tuple[str, ...], Any],
                path: str) -> dict[tuple[str, ...], np.ndarray]:
  """Converted trunk parameters (unrolled names), checking names and shapes."""
  entries = weight_entries(cfg)
  out, used = {}, set()
  for e in entries:
    key = next((k for k in [e.hf_key, *key_aliases(cfg, e.hf_key)] if k in tensors), None)
    if key is None:
      raise InputError(f"missing weight {e.hf_key!r}",
                       where=f"{path}, for parameter {'/'.join(e.path)}")
    used.add(key)
    want = e.hf_shape(shapes[e.path])
    if tensors.shape(key) != want:
      raise InputError(f"weight {key!r} has shape {tensors.shape(key)}, expected {want}",
                       where=f"{tensors.file_of(key)}, for parameter {'/'.join(e.path)}")
    out[e.path] = e.to_ours(tensors[key], shapes[e.path])
  extra = [k for k in tensors if k not in used and not ignorable(cfg, k)]
  if extra:
    raise InputError(f"unexpected weight {extra[0]!r}"
                     + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""),
                     where=tensors.file_of(extra[0]))
  return out


def peft_base(path: str) -> str | None:
  """The base checkpoint of a PEFT adapter directory (None if ``path`` is not one): its
  ``base_model_name_or_path``, read relative to the adapter directory when not absolute."""
  if not (os.path.isdir(path) and os.path.exists(os.path.join(path, peft_format.CONFIG_FILE))):
    return None
  base = peft_format.read_config(path).get("base_model_name_or_path")
  if not base:
    raise InputError("the adapter names no base model (base_model_name_or_path)",
                     os.path.join(path, peft_format.CONFIG_FILE))
  return base if os.path.isabs(base) else os.path.normpath(os.path.join(path, base))


def checkpoint_dir(path: str) -> str:
  """The directory holding a model's own files: a PEFT adapter's base, else ``path``."""
  return peft_base(path) or path


def tokenizer_home(path: str) -> str:
  """Where a checkpoint's tokenizer lives: ``path`` when it has one (an export, or an
  adapter saved with its tokenizer), else its base model's directory."""
  if any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "spiece.model")):
    return path
  return checkpoint_dir(path)


def load_hf_config(path: str, **overrides: Any) -> ModelConfig:
  """``ModelConfig`` of a checkpoint directory (or a lone ``config.json``), or of a PEFT
  LoRA adapter directory (its base model's, with the adapter's rank, alpha and targets).

  As transformers >= 5 does, a checkpoint that holds its own ``lm_head.weight``
  has an untied head whatever ``tie_word_embeddings`` says (mT5, UMT5).
  """
  base = peft_base(path)
  if base is not None:
    lora_keys = ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets")
    cfg = load_hf_config(base, **{k: v for k, v in overrides.items() if k not in lora_keys})
    lora = peft_format.lora_overrides(peft_format.read_config(path), cfg)
    asked = overrides.get("lora_rank", 0)
    if asked and (asked, tuple(sorted(overrides.get("lora_targets", ())))) != (
        lora["lora_rank"], lora["lora_targets"]):
      raise InputError(f"the config asks for LoRA rank {asked} on "
                       f"{tuple(overrides.get('lora_targets', ()))}, the adapter has rank "
                       f"{lora['lora_rank']} on {lora['lora_targets']}", path)
    return cfg.replace(**lora)
  cfg_file = os.path.join(path, "config.json") if os.path.isdir(path) else path
  if not os.path.exists(cfg_file):
    raise MissingError("no config.json", where=path)
  cfg = from_hf_config(read_json(cfg_file), source=cfg_file, **overrides)
  directory = os.path.dirname(cfg_file)
  has_weights = any(os.path.exists(os.path.join(directory, f)) for f in
                    ("model.safetensors", "model.safetensors.index.json"))
  if (cfg.tie_word_embeddings and "tie_word_embeddings" not in overrides and has_weights
      and "lm_head.weight" in SafetensorsDir(directory)):
    cfg = cfg.replace(tie_word_embeddings=False)
  return cfg


def from_pretrained(path: str, *, value_heads: bool = False, value_trunk: bool = False,
                    dtype: str = "float32", mesh: jax.sharding.Mesh | None = None,
                    rules: shd.Rules = shd.DEFAULT_RULES, rng: jax.Array | None = None,
                    **overrides: Any) -> tuple[nn.Module, Any]:
  """Loads a Hugging Face T5 / GPT-2 / Llama checkpoint directory.

  Args:
    path: directory with ``config.json`` and ``model.safetensors`` (or a
      sharded ``model.safetensors.index.json``).
    value_heads: add ILQL heads; read from ``value_heads.safetensors`` when the
      directory has one, else freshly initialised from ``rng``.
    value_trunk: add ILQL's separate value trunk under ``params['value_trunk']``;
      read from ``value_trunk.safetensors`` when the directory has one, else a
      copy of the checkpoint's trunk.
    dtype: compute dtype (parameters are float32).
    mesh: when given, every parameter is placed straight into its sharding on
      this mesh (one tensor at a time on the host; each device gets its shard).
    rules: logical axis rules used with ``mesh``.
    **overrides: further ``ModelConfig`` fields (``remat``, ``scan_layers``, ...).

  Returns:
    ``(model, params)``.
  """
  if not os.path.isdir(path):
    raise MissingError("checkpoint directory not found" if not os.path.exists(path)
                       else "not a checkpoint directory", where=path)
  cfg = load_hf_config(path, dtype=dtype, **overrides)
  base = peft_base(path)
  adapter, path = (path, base) if base else (None, path)
  if adapter is not None and os.path.exists(os.path.join(adapter, base_record.RECORD_FILE)):
    base_record.check(adapter, path, "this adapter")  # one irl_lm exported
  specs, abstract = param_logical_specs(cfg, heads=value_heads, value_trunk=value_trunk)
  # the checkpoint's own weights: separate projections, one entry per layer
  unrolled = cfg.replace(scan_layers=False, lora_rank=0, fused_projections=False)
  shapes = traverse_util.flatten_dict(param_logical_specs(unrolled)[1])
  shapes = {k: tuple(v.shape) for k, v in shapes.items()}
  flat = _read_trunk(cfg, SafetensorsDir(path), shapes, path)
  if value_trunk:
    flat.update(_read_value_trunk(cfg, path, shapes, flat))
  flat = fused.join(flat, cfg)
  if value_heads:
    flat.update(_read_heads(cfg, path, rng))
  if cfg.lora_rank:  # a PEFT adapter's, else fresh (B = 0: the base model's numbers)
    every = traverse_util.flatten_dict(param_logical_specs(
        cfg.replace(scan_layers=False), value_heads, value_trunk)[1])
    missing = {k: v for k, v in every.items() if k not in flat}
    if adapter is not None:
      trunk = {k: tuple(v.shape) for k, v in missing.items()
               if k[0] not in (VALUE_TRUNK, HEADS, AUX_HEADS)}
      flat.update(peft_format.from_peft(cfg, SafetensorsDir(
          adapter, files=[peft_format.WEIGHTS_FILE]), trunk, adapter, path))
      missing = {k: v for k, v in missing.items() if k not in flat}
    flat.update(lora.fresh_adapters(missing, jax.random.key(0) if rng is None else rng))
  if cfg.scan_layers:
    flat = _stack_layers(flat)
  flat = traverse_util.flatten_dict(lora.stored(traverse_util.unflatten_dict(flat), cfg))
  want = traverse_util.flatten_dict(abstract)
  for k, v in want.items():
    if flat[k].shape != v.shape:
      raise InputError(f"parameter {'/'.join(k)} has shape {flat[k].shape}, expected {v.shape}",
                       where=path)
  if mesh is None:
    params = {k: jax.numpy.asarray(v) for k, v in flat.items()}
  else:
    shardings = traverse_util.flatten_dict(shd.logical_shardings(specs, abstract, mesh, rules))
    params = {k: jax.make_array_from_callback(v.shape, shardings[k], lambda i, v=v: v[i])
              for k, v in flat.items()}
  return build_model(cfg), traverse_util.unflatten_dict(params)


def _read_value_trunk(cfg: ModelConfig, path: str, shapes: dict[tuple[str, ...], Any],
                      trunk: dict[tuple[str, ...], np.ndarray]
                      ) -> dict[tuple[str, ...], np.ndarray]:
  """The value trunk from ``value_trunk.safetensors``, else a copy of ``trunk``."""
  if os.path.exists(os.path.join(path, VALUE_TRUNK_FILE)):
    trunk = _read_trunk(cfg, SafetensorsDir(path, files=[VALUE_TRUNK_FILE]), shapes, path)
  else:
    logging.info("%s: no %s; the value trunk starts as a copy of the trunk", path,
                 VALUE_TRUNK_FILE)
  return {(VALUE_TRUNK,) + k: v for k, v in trunk.items()}


def _read_heads(cfg: ModelConfig, path: str, rng: jax.Array | None
                ) -> dict[tuple[str, ...], np.ndarray]:
  fn = os.path.join(path, VALUE_HEADS_FILE)
  fresh = init_heads(cfg, jax.random.key(0) if rng is None else rng)
  want = {(HEADS,) + k: np.asarray(v) for k, v in traverse_util.flatten_dict(fresh).items()}
  if not os.path.exists(fn):
    logging.info("%s: no %s; value heads start from a random init", path, VALUE_HEADS_FILE)
    return want
  tensors = SafetensorsDir(path, files=[VALUE_HEADS_FILE])
  got = {(HEADS,) + tuple(k.split("/")): k for k in tensors}
  for k, v in want.items():
    if k not in got:
      raise InputError(f"missing weight {'/'.join(k[1:])!r}", where=fn)
    if tensors.shape(got[k]) != v.shape:
      raise InputError(f"weight {'/'.join(k[1:])!r} has shape {tensors.shape(got[k])}, "
                       f"expected {v.shape}", where=fn)
  extra = sorted(set(got) - set(want))
  if extra:
    raise InputError(f"unexpected weight {'/'.join(extra[0][1:])!r}", where=fn)
  return {k: np.asarray(tensors[name], np.float32) for k, name in got.items()}


def _hf_tensors(cfg: ModelConfig, flat: dict[tuple[str, ...], np.ndarray]
                ) -> dict[str, np.ndarray]:
  """Trunk parameters (unrolled names) -> Hugging Face tensors."""
  tensors: dict[str, np.ndarray] = {}
  parts: dict[str, dict[int, np.ndarray]] = {}
  for e in weight_entries(cfg):
    if e.path not in flat:
      raise ValueError(f"save_pretrained: parameters lack {'/'.join(e.path)}")
    t = e.to_hf(flat[e.path])
    if e.part:
      parts.setdefault(e.hf_key, {})[e.part[0]] = t
    else:
      tensors[e.hf_key] = t
  for key, p in parts.items():
    tensors[key] = np.concatenate([p[i] for i in range(len(p))], axis=-1)
  return tensors


# Files of a source checkpoint that an export carries over unchanged.
SOURCE_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "tokenizer.model", "spiece.model", "vocab.json",
                "merges.txt", "added_tokens.json", "chat_template.jinja")


def _same_model(cfg: ModelConfig, source: str) -> bool:
  """Whether ``source``'s config.json describes exactly ``cfg`` (whose EOS may be any of the
  file's ``eos_token_id`` list: the one the run's tokenizer uses)."""
  try:
    theirs = load_hf_config(source, **{k: getattr(cfg, k) for k in EXECUTION_FIELDS})
  except (InputError, MissingError):
    return False
  eos = read_json(os.path.join(source, "config.json")).get("eos_token_id")
  if isinstance(eos, list) and cfg.eos_id in eos:
    theirs = dataclasses.replace(theirs, eos_id=cfg.eos_id)
  return theirs == cfg


def _write_config(cfg: ModelConfig, path: str, source: str | None) -> None:
  """config.json: ``source``'s file byte for byte when it describes ``cfg`` (every field,
  ``max_position_embeddings``, token ids, RoPE settings, as it came in); else ``source``'s
  fields with irl_lm's own written over them, when that reads back as ``cfg``; else
  irl_lm's own."""
  target = os.path.join(path, "config.json")
  src = os.path.join(source, "config.json") if source else None
  if src and os.path.exists(src):
    if _same_model(cfg, source):
      shutil.copyfile(src, target)
      return
    merged = {**read_json(src), **to_hf_config(cfg)}
    try:
      if from_hf_config(merged, source=src, **{k: getattr(cfg, k) for k in EXECUTION_FIELDS}) \
          == cfg:
        write_json(merged, target)
        return
    except (InputError, MissingError):
      pass
    logging.info("%s describes another model; writing irl_lm's own config.json", source)
  write_json(to_hf_config(cfg), target)


def write_json(config: dict[str, Any], target: str) -> None:
  """A config dict as indented JSON (config.json as irl_lm writes it)."""
  with open(target, "w") as f:
    json.dump(config, f, indent=2)


def save_pretrained(model: nn.Module, params: Any, path: str, source: str | None = None) -> None:
  """Writes ``params`` as a Hugging Face directory (config.json + model.safetensors).

  transformers' PyTorch ``from_pretrained`` loads the directory with the same
  logits. Value heads, if present, go to ``value_heads.safetensors`` beside it,
  and a separate value trunk to ``value_trunk.safetensors`` (Hugging Face
  names). ``source``: the checkpoint the model started from (``init_from``):
  its ``config.json`` is written back unchanged (every field irl_lm did not
  change) and its generation config and tokenizer files are copied. Sharded (multi-host) parameters are gathered; only process 0 writes.
  """
  cfg: ModelConfig = model.cfg
  check_exportable(cfg)
  params = {k: v for k, v in params.items() if k != AUX_HEADS}  # training-only heads
  if cfg.lora_rank:  # the plain model the adapters describe
    params = lora.merged(params, cfg)
  params = multihost_utils.process_allgather(params, tiled=True)
  flat = {k: np.asarray(v, np.float32) for k, v in traverse_util.flatten_dict(params).items()}
  flat = fused.split(_unstack_layers(flat), cfg)
  if jax.process_index() != 0:
    return
  os.makedirs(path, exist_ok=True)
  save_file(_hf_tensors(cfg, flat), os.path.join(path, "model.safetensors"),
            metadata={"format": "pt"})
  _write_config(cfg, path, source)
  for name in SOURCE_FILES if source else ():
    if os.path.exists(os.path.join(source, name)):
      shutil.copyfile(os.path.join(source, name), os.path.join(path, name))
  heads = {"/".join(k[1:]): v for k, v in flat.items() if k[0] == HEADS}
  if heads:
    save_file(heads, os.path.join(path, VALUE_HEADS_FILE))
  value_trunk = {k[1:]: v for k, v in flat.items() if k[0] == VALUE_TRUNK}
  if value_trunk:
    save_file(_hf_tensors(cfg, value_trunk), os.path.join(path, VALUE_TRUNK_FILE),
              metadata={"format": "pt"})


def save_peft_adapter(model: nn.Module, params: Any, path: str, base: str) -> None:
  """Writes the policy's LoRA adapters as a PEFT adapter of the checkpoint ``base``
  (``adapter_config.json`` + ``adapter_model.safetensors``) that ``peft`` loads onto
  transformers' model of ``base``, and ``from_pretrained(path)`` loads back."""
  cfg: ModelConfig = model.cfg
  if not cfg.lora_rank:
    raise InputError("the run trains no LoRA adapters (config.model.lora.rank=0); export the "
                     "model itself", "--format=peft")
  trunk = {k: v for k, v in params.items() if k not in (HEADS, VALUE_TRUNK, AUX_HEADS)}
  trunk = multihost_utils.process_allgather(trunk, tiled=True)
  flat = {k: np.asarray(v, np.float32) for k, v in traverse_util.flatten_dict(trunk).items()}
  tensors, config = peft_format.to_peft(cfg, _unstack_layers(flat))
  if jax.process_index() != 0:
    return
  os.makedirs(path, exist_ok=True)
  save_file(tensors, os.path.join(path, peft_format.WEIGHTS_FILE), metadata={"format": "pt"})
  write_json({**config, "base_model_name_or_path": os.path.abspath(base)},
             os.path.join(path, peft_format.CONFIG_FILE))
  base_record.write(path, checkpoint_dir(base))


__all__ = ["from_pretrained", "load_hf_config", "save_pretrained", "save_peft_adapter",
           "SafetensorsDir", "Entry"]
