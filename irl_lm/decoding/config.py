"""Decoding settings as an ``ml_collections.ConfigDict`` and their mapping to ``generate``."""
from __future__ import annotations

from typing import Any

import jax
import ml_collections
from ml_collections import config_dict


def default_config() -> ml_collections.ConfigDict:
  """Default decoding settings (greedy, 64 new tokens).

  Fields: ``method`` (greedy | sample | beam), ``max_new_tokens``,
  ``temperature``, ``top_k`` (0 = off), ``top_p`` (1.0 = off), ``num_beams``,
  ``num_samples``, ``ilql_beta`` (0 = behaviour policy), ``behaviour_top_k``
  (0 = off) and ``behaviour_top_p`` (1.0 = off), ``use_target_heads``,
  ``eos_id`` (None = the model's; a negative id never stops) and ``seed``.
  """
  return ml_collections.ConfigDict({
      "method": "greedy",
      "max_new_tokens": 64,
      "temperature": 1.0,
      "top_k": 0,
      "top_p": 1.0,
      "num_beams": 1,
      "num_samples": 1,
      "ilql_beta": 0.0,
      "behaviour_top_k": 0,
      "behaviour_top_p": 1.0,
      "use_target_heads": True,
      "eos_id": config_dict.placeholder(int),
      "seed": 0,
  })


def generate_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Keyword arguments for ``irl_lm.decoding.generate`` from a decoding config."""
  kw = {k: config[k] for k in ("method", "max_new_tokens", "temperature", "top_k", "top_p",
                               "num_beams", "num_samples", "ilql_beta", "behaviour_top_k",
                               "behaviour_top_p", "use_target_heads", "eos_id")}
  kw["rng"] = jax.random.key(config.seed)
  return kw
