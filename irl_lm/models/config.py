"""Model configuration: one frozen dataclass for every family and layout."""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

from irl_lm.errors import ConfigError

FAMILIES = {"t5": ("v1_1", "original"), "decoder": ("gpt2", "llama")}
REMAT_POLICIES = ("none", "full", "save_dots")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture and execution settings of a model.

  ``family`` is ``t5`` (encoder-decoder) or ``decoder``; ``layout`` picks the
  variant: ``v1_1`` (T5 v1.1 / Flan-T5: gated GELU, untied head) or
  ``original`` (ReLU, tied head rescaled by d_model**-0.5) for T5, and ``gpt2``
  or ``llama`` for decoders.
  """

  family: str = "t5"
  layout: str = "v1_1"
  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 8
  head_dim: int = 64
  d_ff: int = 1024
  num_layers: int = 8  # decoder layers (T5 decoder or decoder-only model)
  num_encoder_layers: int = 8  # T5 only
  num_kv_heads: int = 0  # llama grouped-query attention; 0 = num_heads
  max_position_embeddings: int = 1024  # gpt2 learned positions
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  tie_word_embeddings: bool = False
  pad_id: int = 0
  eos_id: int = 1
  decoder_start_id: int = 0
  dropout_rate: float = 0.0
  value_heads: bool = False
  dtype: str = "float32"  # compute dtype; parameters are always float32
  remat: str = "none"
  scan_layers: bool = False

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ConfigError(f"model.family={self.family!r}: expected one of {sorted(FAMILIES)}")
    if self.layout not in FAMILIES[self.family]:
      raise ConfigError(f"model.layout={self.layout!r}: family {self.family!r} "
                        f"supports {FAMILIES[self.family]}")
    if self.remat not in REMAT_POLICIES:
      raise ConfigError(f"model.remat={self.remat!r}: expected one of {REMAT_POLICIES}")
    if self.dtype not in DTYPES:
      raise ConfigError(f"model.dtype={self.dtype!r}: expected one of {DTYPES}")
    if self.kv_heads and self.num_heads % self.kv_heads:
      raise ConfigError(f"model.num_heads={self.num_heads} is not a multiple of "
                        f"model.num_kv_heads={self.kv_heads}")

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def is_encoder_decoder(self) -> bool:
    return self.family == "t5"

  def replace(self, **kw: Any) -> "ModelConfig":
    return dataclasses.replace(self, **kw)


def _t5(d_model, d_ff, heads, layers, head_dim=64, **kw) -> ModelConfig:
  return ModelConfig(family="t5", layout="v1_1", vocab_size=32128, d_model=d_model,
                     d_ff=d_ff, num_heads=heads, head_dim=head_dim, num_layers=layers,
                     num_encoder_layers=layers, **kw)


# Named sizes. ``t5-*`` follow the T5 v1.1 / Flan-T5 dimensions.
PRESETS: dict[str, ModelConfig] = {
    "t5-tiny": _t5(64, 128, 4, 2, head_dim=16, relative_attention_max_distance=32),
    "t5-mini": _t5(256, 512, 4, 4, head_dim=64),
    "t5-small": _t5(512, 1024, 6, 8),
    "t5-base": _t5(768, 2048, 12, 12),
    "t5-large": _t5(1024, 2816, 16, 24),
    "t5-xl": _t5(2048, 5120, 32, 24),
    "gpt2-tiny": ModelConfig(family="decoder", layout="gpt2", vocab_size=50257, d_model=64,
                             d_ff=256, num_heads=4, head_dim=16, num_layers=2,
                             layer_norm_eps=1e-5, tie_word_embeddings=True,
                             eos_id=50256, pad_id=0),
    "gpt2": ModelConfig(family="decoder", layout="gpt2", vocab_size=50257, d_model=768,
                        d_ff=3072, num_heads=12, head_dim=64, num_layers=12,
                        layer_norm_eps=1e-5, tie_word_embeddings=True, eos_id=50256),
    "llama-tiny": ModelConfig(family="decoder", layout="llama", vocab_size=32000, d_model=64,
                              d_ff=172, num_heads=4, num_kv_heads=2, head_dim=16,
                              num_layers=2, layer_norm_eps=1e-5, eos_id=2),
    "llama-3b": ModelConfig(family="decoder", layout="llama", vocab_size=32000, d_model=3200,
                            d_ff=8640, num_heads=32, num_kv_heads=32, head_dim=100,
                            num_layers=26, layer_norm_eps=1e-6, eos_id=2),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
  """A named model size (``t5-small`` ... ``t5-xl``, ``llama-3b``, ...)."""
  if name not in PRESETS:
    raise ConfigError(f"model.size={name!r}: expected one of {sorted(PRESETS)}")
  check_options(overrides)
  return PRESETS[name].replace(**overrides)


def check_options(names: Iterable[str]) -> None:
  """ConfigError naming the first of ``names`` that is not a ``ModelConfig`` field."""
  fields = sorted(f.name for f in dataclasses.fields(ModelConfig))
  for name in sorted(set(names) - set(fields)):
    close = difflib.get_close_matches(name, fields, n=1)
    raise ConfigError(f"unknown model option {name!r}"
                      + (f"; did you mean {close[0]!r}?" if close else ""))
