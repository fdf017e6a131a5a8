"""Model configuration: one frozen dataclass for every kind and layout."""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

from irl_lm.errors import ConfigError

KINDS = ("encdec", "decoder")
# ``model.remat`` -> jax checkpoint policy of each layer (None: no remat).
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # attention and MLP projections
ATTENTION = ("xla", "chunked", "cudnn", "splash", "auto")  # model.attention (models.attention)
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "save_dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}
DTYPES = ("float32", "bfloat16")

# Each layout is a preset of feature switches; the layers read only the switches,
# so a new architecture is a new entry here (plus its Hugging Face weight names).
_T5 = dict(kind="encdec", activation="gelu_new", gated_mlp=True, norm="rms",
           position="relative", use_bias=False, scaled_attention=False)
_LLAMA = dict(kind="decoder", activation="silu", gated_mlp=True, norm="rms", position="rope",
              use_bias=False, scaled_attention=True, head_rescale=False)
_GEMMA = dict(_LLAMA, activation="gelu_new", norm="rms_1p", embed_scale=True)
LAYOUTS: dict[str, dict[str, Any]] = {
    "v1_1": _T5,  # T5 v1.1 / Flan-T5
    "original": dict(_T5, activation="relu", gated_mlp=False),
    "mt5": dict(_T5, head_rescale=False),
    "umt5": dict(_T5, rel_bias_per_layer=True),
    "gpt2": dict(kind="decoder", activation="gelu_new", gated_mlp=False, norm="layer",
                 position="learned", use_bias=True, scaled_attention=True, head_rescale=False),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": dict(_LLAMA, qkv_bias=True),
    "qwen3": dict(_LLAMA, qk_norm=True),
    "gemma": _GEMMA,
    "gemma2": dict(_GEMMA, sandwich_norms=True),
    "gemma3": dict(_GEMMA, sandwich_norms=True, qk_norm=True),
}
SWITCHES = ("activation", "gated_mlp", "norm", "position", "use_bias", "scaled_attention",
            "qkv_bias", "out_bias", "mlp_bias", "qk_norm", "embed_scale", "sandwich_norms",
            "rel_bias_per_layer", "head_rescale")
# Switches a layout may leave out, and what they then are (a bias switch: ``use_bias``).
_SWITCH_DEFAULTS = dict(qk_norm=False, embed_scale=False, sandwich_norms=False,
                        rel_bias_per_layer=False)
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
LAYER_TYPES = ("full", "sliding")
NORMS = ("rms", "rms_1p", "layer")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture and execution settings of a model.

  ``kind`` is ``encdec`` (T5 family) or ``decoder`` (decoder-only). ``layout``
  names the architecture and presets the feature switches (``LAYOUTS``):
  ``v1_1`` (T5 v1.1 / Flan-T5), ``original`` (T5), ``mt5``, ``umt5``, ``gpt2``,
  ``llama``, ``mistral``, ``qwen2``, ``qwen3``, ``gemma``, ``gemma2``,
  ``gemma3``. A switch left None takes the layout's value; the numeric options
  below (RoPE scaling, windows, soft-caps) are read from a checkpoint's
  ``config.json`` or set by a preset.
  """

  kind: str = "encdec"
  layout: str = "v1_1"
  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 8
  head_dim: int = 64
  d_ff: int = 1024
  num_layers: int = 8  # decoder layers (T5 decoder or decoder-only model)
  num_encoder_layers: int = 8  # T5 only
  num_kv_heads: int = 0  # grouped-query attention; 0 = num_heads
  max_position_embeddings: int = 1024  # gpt2 learned positions; RoPE scaling's reference
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  tie_word_embeddings: bool = False
  pad_id: int = 0
  eos_id: int = 1
  decoder_start_id: int = 0
  dropout_rate: float = 0.0
  activation: str | None = None  # relu, gelu, gelu_new (tanh approximation), silu
  gated_mlp: bool | None = None
  norm: str | None = None  # rms (x * w), rms_1p (x * (1 + w), Gemma) or layer
  position: str | None = None  # relative (T5 buckets), learned or rope
  use_bias: bool | None = None  # biases on attention and MLP projections (GPT-2)
  scaled_attention: bool | None = None  # scores scaled by head_dim**-0.5
  qkv_bias: bool | None = None  # biases on q, k, v (None: use_bias)
  out_bias: bool | None = None  # bias on the attention output (None: use_bias)
  mlp_bias: bool | None = None  # biases on the MLP projections (None: use_bias)
  qk_norm: bool | None = None  # per-head norm of q and k before RoPE (Qwen3, Gemma 3)
  embed_scale: bool | None = None  # embeddings times sqrt(d_model) (Gemma)
  sandwich_norms: bool | None = None  # norms after attention and MLP too (Gemma 2, 3)
  rel_bias_per_layer: bool | None = None  # T5: a relative bias in every layer (UMT5)
  head_rescale: bool | None = None  # T5: decoder output * d_model**-0.5 (None: tied)
  query_scale: float = 0.0  # attention scale; 0: head_dim**-0.5 (scaled_attention) or 1
  scale_by_layer: bool = False  # scores / (layer + 1) (GPT-2 scale_attn_by_inverse_layer_idx)
  attn_softcap: float = 0.0  # scores -> cap * tanh(scores / cap) before the mask; 0 = off
  final_softcap: float = 0.0  # logits -> cap * tanh(logits / cap); 0 = off
  sliding_window: int = 0  # keys i - W < j <= i on the "sliding" layers
  layer_types: tuple[str, ...] = ()  # "full" | "sliding" per layer; () = all full
  rope_type: str = "default"  # default, linear, dynamic (NTK), yarn, llama3
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0  # llama3
  rope_high_freq_factor: float = 4.0  # llama3
  rope_original_max: int = 0  # llama3, yarn: original_max_position_embeddings
  rope_beta_fast: float = 32.0  # yarn
  rope_beta_slow: float = 1.0  # yarn
  rope_truncate: bool = True  # yarn
  rope_attention_factor: float = 1.0  # cos and sin scale (yarn)
  rope_local_theta: float = 0.0  # sliding layers' unscaled RoPE theta (Gemma 3); 0 = global
  dtype: str = "float32"  # compute dtype
  # storage of the frozen base in a LoRA run (what trains is always float32)
  param_dtype: str = "float32"
  remat: str = "none"
  scan_layers: bool = False
  # How attention runs (models.attention): xla (whole score matrix), chunked (blockwise,
  # online softmax, attention_block keys and queries at a time), cudnn (GPU), splash
  # (TPU), auto (splash or cudnn where the model's features allow, else chunked from
  # AUTO_CHUNKED_LENGTH keys). Execution only: the numbers agree to float rounding.
  attention: str = "xla"
  attention_block: int = 512
  # One matmul for q, k and v (self-attention) and one for a gated MLP's gate and up
  # (models.fused); the numbers are the separate projections'. Execution only.
  fused_projections: bool = False
  # LoRA (models.lora): rank 0 = off; adapters on the named projections of every layer
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_dropout: float = 0.0
  lora_targets: tuple[str, ...] = ("q", "v")

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ConfigError(f"model.kind={self.kind!r}: expected one of {KINDS}")
    if self.layout not in LAYOUTS:
      raise ConfigError(f"model.layout={self.layout!r}: expected one of {sorted(LAYOUTS)}")
    if LAYOUTS[self.layout]["kind"] != self.kind:
      raise ConfigError(f"model.layout={self.layout!r} is a {LAYOUTS[self.layout]['kind']} "
                        f"layout, not {self.kind}")
    for name in SWITCHES:
      if getattr(self, name) is None:
        default = self.use_bias if name.endswith("_bias") and name != "use_bias" else \
            _SWITCH_DEFAULTS.get(name)
        if name == "head_rescale":
          default = self.tie_word_embeddings
        object.__setattr__(self, name, LAYOUTS[self.layout].get(name, default))
    object.__setattr__(self, "layer_types", tuple(self.layer_types))
    if self.remat not in REMAT_POLICIES:
      raise ConfigError(f"model.remat={self.remat!r}: expected one of {tuple(REMAT_POLICIES)}")
    if self.dtype not in DTYPES:
      raise ConfigError(f"model.dtype={self.dtype!r}: expected one of {DTYPES}")
    if self.param_dtype not in DTYPES:
      raise ConfigError(f"model.param_dtype={self.param_dtype!r}: expected one of {DTYPES}")
    if self.param_dtype != "float32" and not self.lora_rank:
      raise ConfigError(f"model.param_dtype={self.param_dtype!r} stores a LoRA run's frozen "
                        "base; without LoRA every parameter trains and stays float32",
                        expected="model.lora.rank > 0, or model.param_dtype='float32'")
    object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
    if not set(self.lora_targets) <= set(LORA_TARGETS):
      raise ConfigError(f"model.lora.targets={self.lora_targets!r}: expected names from "
                        f"{LORA_TARGETS}")
    if self.lora_rank and "gate" in self.lora_targets and not self.gated_mlp:
      raise ConfigError(f"model.lora.targets names 'gate', which a {self.layout} model lacks "
                        "(its MLP has no gate projection)",
                        expected=f"names from {tuple(t for t in LORA_TARGETS if t != 'gate')}")
    joined = set(self.lora_targets) & {"q", "k", "v", "gate", "up"}
    if self.fused_projections and self.lora_rank and joined:
      raise ConfigError(f"model.fused_projections joins q/k/v and gate/up into one kernel "
                        f"each, and LoRA adapts them separately (model.lora.targets names "
                        f"{tuple(t for t in self.lora_targets if t in joined)})",
                        expected="model.lora.targets from ('o', 'down'), or "
                        "model.fused_projections=False")
    if self.attention not in ATTENTION:
      raise ConfigError(f"model.attention={self.attention!r}: expected one of {ATTENTION}")
    if self.norm not in NORMS:
      raise ConfigError(f"model.norm={self.norm!r}: expected one of {NORMS}")
    if self.rope_type not in ROPE_TYPES:
      raise ConfigError(f"model.rope_type={self.rope_type!r}: expected one of {ROPE_TYPES}")
    if self.kv_heads and self.num_heads % self.kv_heads:
      raise ConfigError(f"model.num_heads={self.num_heads} is not a multiple of "
                        f"model.num_kv_heads={self.kv_heads}")
    if self.layer_types and (len(self.layer_types) != self.num_layers
                             or set(self.layer_types) - set(LAYER_TYPES)):
      raise ConfigError("model.layer_types must name 'full' or 'sliding' for each of the "
                        f"{self.num_layers} layers", found=repr(self.layer_types))
    if "sliding" in self.layer_types and self.sliding_window <= 0:
      raise ConfigError("model.layer_types has sliding layers but model.sliding_window is "
                        f"{self.sliding_window}", expected="a window of at least 1 token")

  @property
  def sliding_layers(self) -> tuple[bool, ...]:
    """Per layer: whether it attends within ``sliding_window`` only."""
    return tuple(t == "sliding" for t in self.layer_types) or (False,) * self.num_layers

  @property
  def attention_scale(self) -> float:
    """The factor on q.k (before any per-layer ``scale_by_layer`` division)."""
    if self.query_scale:
      return self.query_scale
    return self.head_dim ** -0.5 if self.scaled_attention else 1.0

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def lora_scale(self) -> float:
    """The adapters' output factor, ``lora_alpha / lora_rank`` (0 without LoRA)."""
    return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

  @property
  def compute_dtype(self) -> Any:
    """The jnp dtype computation runs in."""
    return jnp.bfloat16 if self.dtype == "bfloat16" else jnp.float32

  @property
  def frozen_dtype(self) -> Any:
    """The jnp dtype a LoRA run's frozen base is stored in."""
    return jnp.bfloat16 if self.param_dtype == "bfloat16" else jnp.float32

  def replace(self, **kw: Any) -> "ModelConfig":
    return dataclasses.replace(self, **kw)


def _t5(d_model, d_ff, heads, layers, head_dim=64, **kw) -> ModelConfig:
  return ModelConfig(kind="encdec", layout="v1_1", vocab_size=32128, d_model=d_model,
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
    "gpt2-tiny": ModelConfig(kind="decoder", layout="gpt2", vocab_size=50257, d_model=64,
                             d_ff=256, num_heads=4, head_dim=16, num_layers=2,
                             layer_norm_eps=1e-5, tie_word_embeddings=True,
                             eos_id=50256, pad_id=0),
    "gpt2-mini": ModelConfig(kind="decoder", layout="gpt2", vocab_size=50257, d_model=128,
                             d_ff=512, num_heads=4, head_dim=32, num_layers=4,
                             layer_norm_eps=1e-5, tie_word_embeddings=True,
                             eos_id=50256, pad_id=0),
    "gpt2": ModelConfig(kind="decoder", layout="gpt2", vocab_size=50257, d_model=768,
                        d_ff=3072, num_heads=12, head_dim=64, num_layers=12,
                        layer_norm_eps=1e-5, tie_word_embeddings=True, eos_id=50256),
    "llama-tiny": ModelConfig(kind="decoder", layout="llama", vocab_size=32000, d_model=64,
                              d_ff=172, num_heads=4, num_kv_heads=2, head_dim=16,
                              num_layers=2, layer_norm_eps=1e-5, eos_id=2),
    "llama-1b": ModelConfig(kind="decoder", layout="llama", vocab_size=32000, d_model=2048,
                            d_ff=5632, num_heads=32, num_kv_heads=4, head_dim=64,
                            num_layers=22, layer_norm_eps=1e-5, eos_id=2),  # TinyLlama-1.1B
    "llama-3b": ModelConfig(kind="decoder", layout="llama", vocab_size=32000, d_model=3200,
                            d_ff=8640, num_heads=32, num_kv_heads=32, head_dim=100,
                            num_layers=26, layer_norm_eps=1e-6, eos_id=2),
}


def _family(layout: str, vocab: int, d: int, ff: int, layers: int, heads: int, kv: int,
            head_dim: int, **kw: Any) -> ModelConfig:
  return ModelConfig(kind="decoder", layout=layout, vocab_size=vocab, d_model=d, d_ff=ff,
                     num_layers=layers, num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
                     **kw)


_LLAMA3 = dict(rope_theta=500000.0, rope_type="llama3", rope_low_freq_factor=1.0,
               rope_high_freq_factor=4.0, rope_original_max=8192,
               max_position_embeddings=131072, layer_norm_eps=1e-5, eos_id=128001, pad_id=0)
_QWEN = dict(rope_theta=1e6, layer_norm_eps=1e-6, eos_id=151643, pad_id=0)
_GEMMA2 = dict(query_scale=256 ** -0.5, attn_softcap=50.0, final_softcap=30.0,
               sliding_window=4096, tie_word_embeddings=True, max_position_embeddings=8192,
               eos_id=1, pad_id=0)
_GEMMA3 = dict(query_scale=256 ** -0.5, rope_theta=1e6, rope_local_theta=1e4,
               tie_word_embeddings=True, eos_id=1, pad_id=0)


def _alternating(layers: int, every: int) -> tuple[str, ...]:
  """Gemma 2 (every 2) / Gemma 3 (every 6): the every-th layer is global, the rest slide."""
  return tuple("full" if (i + 1) % every == 0 else "sliding" for i in range(layers))


# The released checkpoints' sizes (their config.json is what loads them; these plan runs).
PRESETS.update({
    "llama-3.2-1b": _family("llama", 128256, 2048, 8192, 16, 32, 8, 64, rope_factor=32.0,
                            tie_word_embeddings=True, **_LLAMA3),
    "llama-3.2-3b": _family("llama", 128256, 3072, 8192, 28, 24, 8, 128, rope_factor=32.0,
                            tie_word_embeddings=True, **_LLAMA3),
    "llama-3.1-8b": _family("llama", 128256, 4096, 14336, 32, 32, 8, 128, rope_factor=8.0,
                            **_LLAMA3),
    "qwen2.5-0.5b": _family("qwen2", 151936, 896, 4864, 24, 14, 2, 64,
                            tie_word_embeddings=True, max_position_embeddings=32768, **_QWEN),
    "qwen2.5-1.5b": _family("qwen2", 151936, 1536, 8960, 28, 12, 2, 128,
                            tie_word_embeddings=True, max_position_embeddings=32768, **_QWEN),
    "qwen2.5-7b": _family("qwen2", 152064, 3584, 18944, 28, 28, 4, 128,
                          max_position_embeddings=32768, **_QWEN),
    "qwen3-0.6b": _family("qwen3", 151936, 1024, 3072, 28, 16, 8, 128,
                          tie_word_embeddings=True, max_position_embeddings=40960, **_QWEN),
    "qwen3-4b": _family("qwen3", 151936, 2560, 9728, 36, 32, 8, 128, tie_word_embeddings=True,
                        max_position_embeddings=40960, **_QWEN),
    "qwen3-8b": _family("qwen3", 151936, 4096, 12288, 36, 32, 8, 128,
                        max_position_embeddings=40960, **_QWEN),
    "mistral-7b": _family("mistral", 32768, 4096, 14336, 32, 32, 8, 128, rope_theta=1e6,
                          layer_norm_eps=1e-5, max_position_embeddings=32768, eos_id=2),
    "gemma-2-2b": _family("gemma2", 256000, 2304, 9216, 26, 8, 4, 256,
                          layer_types=_alternating(26, 2), **_GEMMA2),
    "gemma-2-9b": _family("gemma2", 256000, 3584, 14336, 42, 16, 8, 256,
                          layer_types=_alternating(42, 2), **_GEMMA2),
    "gemma-3-1b": _family("gemma3", 262144, 1152, 6912, 26, 4, 1, 256, sliding_window=512,
                          layer_types=_alternating(26, 6), max_position_embeddings=32768,
                          **_GEMMA3),
    "gemma-3-4b": _family("gemma3", 262208, 2560, 10240, 34, 8, 4, 256, sliding_window=1024,
                          layer_types=_alternating(34, 6), max_position_embeddings=131072,
                          rope_type="linear", rope_factor=8.0, **_GEMMA3),
    "mt5-base": ModelConfig(kind="encdec", layout="mt5", vocab_size=250112, d_model=768,
                            d_ff=2048, num_heads=12, head_dim=64, num_layers=12,
                            num_encoder_layers=12),
    "mt5-xl": ModelConfig(kind="encdec", layout="mt5", vocab_size=250112, d_model=2048,
                          d_ff=5120, num_heads=32, head_dim=64, num_layers=24,
                          num_encoder_layers=24),
})


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
