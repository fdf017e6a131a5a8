"""LoRA adapters in PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

PEFT keeps, for each adapted ``nn.Linear`` of the transformers model, ``lora_A.weight``
``[rank, in]`` and ``lora_B.weight`` ``[out, rank]`` under
``base_model.model.<module>``; the update is ``(alpha / rank) * B A``. irl_lm's
adapters are the same matrices with the kernel's own axes (``A``: in_dims + (rank,),
``B``: (rank,) + out_dims), so the conversion is a reshape and a transpose per adapter,
found through the same weight map the model's own export uses.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from irl_lm.errors import InputError
from irl_lm.models.config import ModelConfig
from irl_lm.models.hf_weights import Entry, weight_entries

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."
# Adapter options that change the numbers in ways irl_lm does not implement: refused.
MUST_BE_OFF = ("use_rslora", "use_dora", "rank_pattern", "alpha_pattern", "layers_to_transform",
               "fan_in_fan_out", "modules_to_save", "lora_bias", "exclude_modules",
               "layer_replication", "target_parameters", "trainable_token_indices",
               "use_qalora", "use_bdlora", "alora_invocation_tokens")


def _adapted(cfg: ModelConfig) -> list[Entry]:
  """The kernels of ``cfg`` that carry adapters, refusing layouts PEFT cannot express."""
  entries = [e for e in weight_entries(cfg) if e.path[-1] == "kernel"]
  if cfg.layout == "gpt2":
    raise InputError("GPT-2 keeps q, k and v in one fused c_attn (a Conv1D): its adapters "
                     "have no PEFT form here; export the merged model instead",
                     "--format=peft")
  return entries


def _module(e: Entry) -> str:
  return e.hf_key[:-len(".weight")]


def to_peft(cfg: ModelConfig, flat: dict[tuple[str, ...], np.ndarray]
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(PEFT tensors, adapter config) of the adapters in ``flat`` (unrolled layer names)."""
  tensors, modules = {}, set()
  for e in _adapted(cfg):
    parent = e.path[:-1]
    if parent + ("lora_a",) not in flat:
      continue
    a, b = flat[parent + ("lora_a",)], flat[parent + ("lora_b",)]
    r = a.shape[-1]
    name = PREFIX + _module(e)
    tensors[f"{name}.lora_A.weight"] = np.ascontiguousarray(a.reshape(-1, r).T, np.float32)
    tensors[f"{name}.lora_B.weight"] = np.ascontiguousarray(b.reshape(r, -1).T, np.float32)
    modules.add(_module(e).rsplit(".", 1)[-1])
  config = {
      "peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM" if cfg.kind == "encdec" else "CAUSAL_LM",
      "r": cfg.lora_rank, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
      "target_modules": sorted(modules), "bias": "none", "fan_in_fan_out": False,
      "use_rslora": False, "use_dora": False, "modules_to_save": None,
      "init_lora_weights": True, "inference_mode": True, "base_model_name_or_path": None,
      "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None, "revision": None,
  }
  return tensors, config


def read_config(path: str) -> dict[str, Any]:
  """A PEFT adapter directory's config, checked for what irl_lm can load exactly."""
  fn = os.path.join(path, CONFIG_FILE)
  with open(fn, encoding="utf-8") as f:
    config = json.load(f)
  off = [k for k in MUST_BE_OFF if config.get(k)]
  if config.get("peft_type") != "LORA":
    off.insert(0, "peft_type")
  if config.get("bias", "none") != "none":
    off.append("bias")
  if off:
    raise InputError(f"{CONFIG_FILE} sets {off[0]}={config.get(off[0])!r}, which irl_lm cannot "
                     "load exactly", fn)
  return config


def lora_overrides(config: dict[str, Any], cfg: ModelConfig) -> dict[str, Any]:
  """The ``ModelConfig`` LoRA fields an adapter config describes for a model ``cfg``."""
  targets = set(config["target_modules"] if isinstance(config["target_modules"], list)
                else [config["target_modules"]])
  probe = cfg.replace(lora_rank=1, lora_targets=("q", "k", "v", "o", "gate", "up", "down"))
  names = {}
  for e in _adapted(probe):
    ours = _target_of(e)
    if ours:
      names.setdefault(_module(e).rsplit(".", 1)[-1], set()).add(ours)
  unknown = sorted(targets - set(names))
  if unknown:
    raise InputError(f"target_modules {unknown} are not attention or MLP projections of "
                     f"this {cfg.layout} model (known: {sorted(names)})", CONFIG_FILE)
  ours = tuple(sorted({t for m in targets for t in names[m]}))
  return dict(lora_rank=int(config["r"]), lora_alpha=float(config["lora_alpha"]),
              lora_dropout=float(config.get("lora_dropout", 0.0)), lora_targets=ours)


_TARGET_OF = {"query": "q", "key": "k", "value": "v", "out": "o", "wi_0": "gate",
              "wi_1": "up", "wi": "up", "wo": "down"}


def _target_of(e: Entry) -> str | None:
  """The LoRA target name (``q`` ... ``down``) of a kernel entry, None for others."""
  if len(e.path) < 3 or e.path[-3] not in ("attn", "cross", "mlp"):
    return None
  return _TARGET_OF.get(e.path[-2])


def from_peft(cfg: ModelConfig, tensors: Any, shapes: dict[tuple[str, ...], tuple[int, ...]],
              where: str, base: str) -> dict[tuple[str, ...], np.ndarray]:
  """Our adapters (unrolled names, ``shapes`` of the ``lora_a``/``lora_b`` leaves) from PEFT
  tensors (a mapping name -> array) of the adapter at ``where`` for the model at ``base``;
  every adapter the model has must be in the file."""
  out = {}
  for e in _adapted(cfg):
    parent = e.path[:-1]
    if parent + ("lora_a",) not in shapes:
      continue
    name = PREFIX + _module(e)
    for ours, theirs, rank_first in (("lora_a", "lora_A", True), ("lora_b", "lora_B", False)):
      key = f"{name}.{theirs}.weight"
      if key not in tensors:
        raise InputError(f"missing adapter {key!r}", where)
      shape = shapes[parent + (ours,)]
      x = np.asarray(tensors[key], np.float32)
      want = (shape[-1], math.prod(shape[:-1])) if rank_first else (math.prod(shape[1:]), shape[0])
      if x.shape != want:
        raise InputError(f"the adapter was made for another base model: its {key!r} has shape "
                         f"{x.shape}, the base model {base} needs {want}", where)
      out[parent + (ours,)] = np.ascontiguousarray(x.T.reshape(shape))
  return out
