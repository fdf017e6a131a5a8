"""The tokenizer's special tokens against a Hugging Face checkpoint's, checked before compiling.

A checkpoint states its ids in ``config.json`` and ``generation_config.json``
(``bos_token_id``, ``eos_token_id`` (an id or a list), ``pad_token_id``). The
tokenizer must agree with them:

* EOS: the tokenizer's EOS (what training rows end with and evaluation stops at) must
  be one of the checkpoint's EOS ids (what ``generate`` and online sampling stop at);
* BOS: a BOS the tokenizer's template adds must be the checkpoint's ``bos_token_id``;
  a tokenizer that adds none (GPT-2, Qwen) is fine whatever the checkpoint says;
* PAD: if both define one, the same id. A missing pad token needs nothing: irl_lm
  masks padding (segment ids and loss weights) and never feeds a pad token to the
  model, so no pad token is added and none is written to an export that had none.
"""
from __future__ import annotations

import json
import os
from typing import Any

import seqio

from irl_lm.data.vocabularies import HfTokenizerVocabulary
from irl_lm.errors import ConfigError, InputError

FILES = ("config.json", "generation_config.json")


def _ids(value: Any) -> tuple[int, ...]:
  if isinstance(value, bool) or value is None:
    return ()
  if isinstance(value, int):
    return (value,)
  if isinstance(value, list):
    return tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool))
  return ()


def checkpoint_ids(model_dir: str) -> dict[str, dict[str, tuple[int, ...]]]:
  """``{file: {"bos"|"eos"|"pad": ids}}`` of the checkpoint files present in `model_dir`."""
  out = {}
  for name in FILES:
    path = os.path.join(model_dir, name)
    if not os.path.isfile(path):
      continue
    try:
      with open(path, encoding="utf-8") as f:
        config = json.load(f)
    except (OSError, ValueError) as e:
      raise InputError(f"cannot read {name}: {e}", where=path) from None
    if isinstance(config, dict):
      out[name] = {k: _ids(config.get(f"{k}_token_id")) for k in ("bos", "eos", "pad")}
  return out


def tokenizer_ids(vocabulary: seqio.Vocabulary) -> dict[str, int | None]:
  """The tokenizer's BOS (as its template adds it), EOS and PAD ids."""
  pad = None
  if isinstance(vocabulary, HfTokenizerVocabulary):
    token = vocabulary.special_tokens.get("pad_token")
    pad = vocabulary.token_id(token) if token else None
  return {"bos": vocabulary.bos_id if isinstance(vocabulary, HfTokenizerVocabulary) else None,
          "eos": vocabulary.eos_id, "pad": pad}


def check_special_tokens(vocabulary: seqio.Vocabulary, model_dir: str, where: str) -> None:
  """ConfigError (one line naming both ids) if the tokenizer and checkpoint disagree."""
  mine = tokenizer_ids(vocabulary)
  for name, theirs in checkpoint_ids(model_dir).items():
    for kind in ("eos", "bos", "pad"):
      ids, own = theirs[kind], mine[kind]
      if own is None or not ids or own in ids:
        continue
      found = ids[0] if len(ids) == 1 else list(ids)
      raise ConfigError(
          f"the tokenizer's {kind.upper()} is id {own} but the checkpoint's {name} has "
          f"{kind}_token_id {found}; use the checkpoint's own tokenizer", where)
