"""Each Hugging Face ``model_type``: the ``config.json`` keys it reads, the ones known to be
harmless, and the way back (``config.json`` written from a ``ModelConfig``).

A key that is read changes the numbers and is implemented; a harmless key does not change
a forward pass (dropout, metadata, cache settings); any other key is refused unless its
value is empty (None, false, 0), so an option is never silently ignored.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from irl_lm.errors import InputError
from irl_lm.models.config import ModelConfig

# Keys of every model_type that do not change a forward pass of irl_lm's models.
COMMON_HARMLESS = frozenset({
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "_name_or_path", "use_cache", "initializer_range", "initializer_factor", "bos_token_id",
    "sep_token_id", "output_attentions", "output_hidden_states", "return_dict",
    "use_return_dict", "tokenizer_class", "id2label", "label2id", "problem_type",
    "task_specific_params", "finetuning_task", "prefix", "pruned_heads",
    "chunk_size_feed_forward", "torchscript", "attention_dropout", "dropout_rate",
    "resid_pdrop", "embd_pdrop", "attn_pdrop", "classifier_dropout", "hidden_dropout",
    "cache_implementation", "max_length", "min_length", "num_beams", "do_sample",
    "temperature", "top_k", "top_p", "is_encoder_decoder", "is_decoder",
    "tie_word_embeddings", "pretraining_tp", "pad_token_id", "eos_token_id",
    "decoder_start_token_id", "max_position_embeddings", "layer_types",
})
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_new",
               "gelu_pytorch_tanh": "gelu_new", "silu": "silu", "swish": "silu"}


class Keys:
  """A ``config.json`` dict that records which keys were read, for ``check_rest``."""

  def __init__(self, hf: dict[str, Any], model_type: str, source: str):
    self.hf, self.mt, self.source = hf, model_type, source
    self.used: set[str] = set()

  def get(self, key: str, default: Any = None) -> Any:
    """The value of ``key``; ``default`` when absent or null."""
    self.used.add(key)
    value = self.hf.get(key)
    return default if value is None else value

  def req(self, key: str) -> Any:
    """A required key (KeyError, reported by the caller, when absent)."""
    self.used.add(key)
    if self.hf.get(key) is None:
      raise KeyError(key)
    return self.hf[key]

  def harmless(self, *keys: str) -> None:
    self.used.update(keys)

  def refuse(self, what: str) -> InputError:
    return InputError(f"{what} (model_type {self.mt!r})", where=self.source)

  def only(self, key: str, allowed: tuple[Any, ...], default: Any) -> Any:
    """``key``'s value, refused in one line unless it is one of ``allowed``."""
    value = self.get(key, default)
    if value not in allowed:
      raise self.refuse(f"{key}={value!r} is not supported (expected one of {allowed})")
    return value

  def check_rest(self, hints: dict[str, str] | None = None) -> None:
    """Refuses any key neither read nor harmless whose value is not empty."""
    for key in sorted(set(self.hf) - self.used - COMMON_HARMLESS):
      value = self.hf[key]
      if value in (None, False, 0, "", [], {}):
        continue
      hint = (hints or {}).get(key, "irl_lm does not implement it, and it may change the "
                                     "numbers")
      raise self.refuse(f"{key}={value!r} is not supported: {hint}")


def _activation(keys: Keys, key: str, default: str) -> str:
  name = keys.get(key, default)
  if name not in ACTIVATIONS:
    raise keys.refuse(f"{key}={name!r} is not supported (expected one of {sorted(ACTIVATIONS)})")
  return ACTIVATIONS[name]


def _eos(keys: Keys, default: int) -> int:
  eos = keys.get("eos_token_id", default)
  return int(eos[0] if isinstance(eos, list) else eos)


# ---------------------------------------------------------------- RoPE
_ROPE_KEYS = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor",
               "original_max_position_embeddings"),
    "yarn": ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
             "attention_factor", "mscale", "mscale_all_dim", "truncate"),
}


def _yarn_mscale(scale: float, m: float = 1.0) -> float:
  return 0.1 * m * math.log(scale) + 1.0 if scale > 1 else 1.0


def rope_fields(keys: Keys, spec: dict[str, Any], theta: float, max_pos: int,
                what: str = "rope_parameters") -> dict[str, Any]:
  """``ModelConfig`` RoPE fields from one rope_parameters / rope_scaling dict."""
  kind = spec.get("rope_type", spec.get("type", "default"))
  if kind not in _ROPE_KEYS:
    raise keys.refuse(f"{what} rope_type={kind!r} is not supported "
                      f"(expected one of {sorted(_ROPE_KEYS)})")
  extra = sorted(set(spec) - {"rope_type", "type", "rope_theta", "partial_rotary_factor"}
                 - set(_ROPE_KEYS[kind]))
  if extra:
    raise keys.refuse(f"{what} key {extra[0]!r} is not used by rope_type {kind!r}")
  if spec.get("partial_rotary_factor", 1.0) != 1.0:
    raise keys.refuse(f"{what} partial_rotary_factor={spec['partial_rotary_factor']!r} is "
                      "not supported (only 1.0)")
  out: dict[str, Any] = dict(rope_type=kind, rope_theta=float(spec.get("rope_theta", theta)))
  orig = keys.get("original_max_position_embeddings") or spec.get(
      "original_max_position_embeddings") or max_pos
  if kind in ("linear", "dynamic", "llama3"):
    out["rope_factor"] = float(spec["factor"])
  if kind == "llama3":
    out.update(rope_low_freq_factor=float(spec["low_freq_factor"]),
               rope_high_freq_factor=float(spec["high_freq_factor"]),
               rope_original_max=int(orig))
  if kind == "yarn":
    factor = float(spec.get("factor") or max_pos / orig)
    att = spec.get("attention_factor")
    if att is None:
      m, m_all = spec.get("mscale"), spec.get("mscale_all_dim")
      att = (_yarn_mscale(factor, m) / _yarn_mscale(factor, m_all) if m and m_all
             else _yarn_mscale(factor))
    out.update(rope_factor=factor, rope_original_max=int(orig),
               rope_beta_fast=float(spec.get("beta_fast") or 32.0),
               rope_beta_slow=float(spec.get("beta_slow") or 1.0),
               rope_truncate=bool(spec.get("truncate", True)),
               rope_attention_factor=float(att))
  return out


def _rope(keys: Keys, max_pos: int, theta_default: float = 10000.0) -> dict[str, Any]:
  # transformers >= 5 folds the legacy rope_scaling (and rope_theta) into rope_parameters
  params = dict(keys.get("rope_parameters") or {}, **(keys.get("rope_scaling") or {}))
  theta = keys.get("rope_theta", theta_default)
  what = "rope_scaling" if keys.hf.get("rope_scaling") else "rope_parameters"
  return rope_fields(keys, params, theta, max_pos, what)


def _gemma3_rope(keys: Keys, max_pos: int) -> dict[str, Any]:
  """Global (full-attention) RoPE, scaled; sliding layers: their own theta, unscaled."""
  params = keys.get("rope_parameters") or {}
  if "full_attention" in params or "sliding_attention" in params:
    full, local = params.get("full_attention", {}), params.get("sliding_attention", {})
  else:  # legacy keys: rope_theta + rope_scaling global, rope_local_base_freq local
    full = dict(keys.get("rope_scaling") or {}, rope_theta=keys.get("rope_theta", 1e6))
    local = {"rope_theta": keys.get("rope_local_base_freq", 10000.0)}
  if local.get("rope_type", local.get("type", "default")) != "default":
    raise keys.refuse("a scaled RoPE on the sliding layers is not supported")
  out = rope_fields(keys, full, 1e6, max_pos, "rope_parameters.full_attention")
  out["rope_local_theta"] = float(local.get("rope_theta", 10000.0))
  return out


def _rope_out(cfg: ModelConfig) -> dict[str, Any]:
  p: dict[str, Any] = {"rope_type": cfg.rope_type, "rope_theta": cfg.rope_theta}
  if cfg.rope_type in ("linear", "dynamic", "llama3", "yarn"):
    p["factor"] = cfg.rope_factor
  if cfg.rope_type == "llama3":
    p.update(low_freq_factor=cfg.rope_low_freq_factor,
             high_freq_factor=cfg.rope_high_freq_factor,
             original_max_position_embeddings=cfg.rope_original_max)
  if cfg.rope_type == "yarn":  # options at their defaults are left out, as they came in
    p["original_max_position_embeddings"] = cfg.rope_original_max
    for key, value, default in (("beta_fast", cfg.rope_beta_fast, 32.0),
                                ("beta_slow", cfg.rope_beta_slow, 1.0),
                                ("truncate", cfg.rope_truncate, True),
                                ("attention_factor", cfg.rope_attention_factor,
                                 _yarn_mscale(cfg.rope_factor))):
      if value != default:
        p[key] = value
  return p


# ---------------------------------------------------------------- decoders (Llama skeleton)
def _layer_types(keys: Keys, n: int, window: int, is_sliding: Callable[[int], bool]
                 ) -> tuple[str, ...]:
  """Per-layer "full" / "sliding": an explicit ``layer_types`` list wins."""
  explicit = keys.get("layer_types")
  if window <= 0:
    return ()
  if explicit is not None:
    if not isinstance(explicit, list) or len(explicit) != n or set(explicit) - {
        "full_attention", "sliding_attention"}:
      raise keys.refuse(f"layer_types must list 'full_attention' or 'sliding_attention' for "
                        f"each of the {n} layers")
    return tuple("sliding" if t == "sliding_attention" else "full" for t in explicit)
  return tuple("sliding" if is_sliding(i) else "full" for i in range(n))


def _decoder_base(keys: Keys, layout: str, head_dim_key: bool = True) -> dict[str, Any]:
  h, d = keys.req("num_attention_heads"), keys.req("hidden_size")
  head_dim = keys.get("head_dim") if head_dim_key else None
  return dict(
      kind="decoder", layout=layout, vocab_size=keys.req("vocab_size"), d_model=d,
      num_heads=h, num_kv_heads=keys.get("num_key_value_heads", h),
      head_dim=head_dim or d // h, d_ff=keys.req("intermediate_size"),
      num_layers=keys.req("num_hidden_layers"), layer_norm_eps=keys.get("rms_norm_eps", 1e-6),
      tie_word_embeddings=bool(keys.get("tie_word_embeddings", False)),
      max_position_embeddings=int(keys.get("max_position_embeddings", 2048)),
      pad_id=0)  # irl_lm pads decoder rows with 0 and masks them by segment ids


_LLAMA_HINTS = {"sliding_window": "transformers' Llama has no sliding window (it ignores this "
                                  "key); for a Mistral checkpoint set model_type 'mistral'",
                "quantization_config": "load unquantised weights"}


def _llama(keys: Keys) -> dict[str, Any]:
  cfg = _decoder_base(keys, "llama")
  attn_bias = bool(keys.get("attention_bias", False))
  cfg.update(_rope(keys, cfg["max_position_embeddings"]), eos_id=_eos(keys, 2),
             activation=_activation(keys, "hidden_act", "silu"), qkv_bias=attn_bias,
             out_bias=attn_bias, mlp_bias=bool(keys.get("mlp_bias", False)))
  return cfg


def _mistral(keys: Keys) -> dict[str, Any]:
  cfg = _decoder_base(keys, "mistral")
  window = int(keys.get("sliding_window", 0))
  keys.harmless("layer_types")  # transformers' Mistral only warns about it
  cfg.update(_rope(keys, cfg["max_position_embeddings"]), eos_id=_eos(keys, 2),
             activation=_activation(keys, "hidden_act", "silu"), sliding_window=window,
             layer_types=("sliding",) * cfg["num_layers"] if window else ())
  return cfg


def _qwen(keys: Keys, layout: str) -> dict[str, Any]:
  cfg = _decoder_base(keys, layout, head_dim_key=layout == "qwen3")
  if layout == "qwen3":
    cfg["head_dim"] = keys.get("head_dim", 128)
    bias = bool(keys.get("attention_bias", False))
    cfg.update(qkv_bias=bias, out_bias=bias)
  window = int(keys.get("sliding_window", 0)) if keys.get("use_sliding_window", False) else 0
  keys.harmless("sliding_window")
  first = int(keys.get("max_window_layers", 28))
  cfg.update(_rope(keys, cfg["max_position_embeddings"]), eos_id=_eos(keys, 2),
             activation=_activation(keys, "hidden_act", "silu"), sliding_window=window,
             layer_types=_layer_types(keys, cfg["num_layers"], window, lambda i: i >= first))
  return cfg


def _gemma(keys: Keys, layout: str) -> dict[str, Any]:
  cfg = _decoder_base(keys, layout)
  cfg["head_dim"] = keys.get("head_dim", 256)
  cfg["tie_word_embeddings"] = bool(keys.get("tie_word_embeddings", True))
  if keys.get("attention_bias", False):
    cfg.update(qkv_bias=True, out_bias=True)
  if keys.get("use_bidirectional_attention"):
    raise keys.refuse("use_bidirectional_attention=true (an embedding model) is not supported")
  act_key = "hidden_act" if layout == "gemma" else "hidden_activation"
  act = keys.get(act_key, "gelu_pytorch_tanh")
  if layout == "gemma" and act == "gelu":  # transformers reads Gemma's legacy 'gelu' as tanh
    act = "gelu_pytorch_tanh"
  if act != "gelu_pytorch_tanh":
    raise keys.refuse(f"{act_key}={act!r} is not supported (expected 'gelu_pytorch_tanh')")
  cfg.update(activation="gelu_new", eos_id=_eos(keys, 1))
  n = cfg["num_layers"]
  if layout == "gemma":
    cfg.update(_rope(keys, cfg["max_position_embeddings"]))
    return cfg
  window = int(keys.get("sliding_window", 4096))
  cfg.update(sliding_window=window, query_scale=float(keys.get("query_pre_attn_scalar", 256))
             ** -0.5, final_softcap=float(keys.get("final_logit_softcapping", 0.0) or 0.0))
  if layout == "gemma2":
    cfg.update(_rope(keys, cfg["max_position_embeddings"]),
               attn_softcap=float(keys.get("attn_logit_softcapping", 0.0) or 0.0),
               layer_types=_layer_types(keys, n, window, lambda i: (i + 1) % 2 != 0))
    return cfg
  keys.harmless("attn_logit_softcapping")  # stored by transformers' Gemma 3, never applied
  pattern = int(keys.get("sliding_window_pattern", keys.get("_sliding_window_pattern", 6)))
  cfg.update(_gemma3_rope(keys, cfg["max_position_embeddings"]),
             layer_types=_layer_types(keys, n, window, lambda i: (i + 1) % pattern != 0))
  keys.harmless("rope_local_base_freq", "rope_theta", "rope_scaling")
  return cfg


def _gpt2(keys: Keys) -> dict[str, Any]:
  d, h = keys.req("n_embd"), keys.req("n_head")
  if keys.get("add_cross_attention"):
    raise keys.refuse("add_cross_attention=true is not supported")
  keys.harmless("reorder_and_upcast_attn", "n_ctx", "summary_type", "summary_use_proj",
                "summary_activation", "summary_proj_to_labels", "summary_first_dropout")
  return dict(
      kind="decoder", layout="gpt2", vocab_size=keys.req("vocab_size"), d_model=d,
      num_heads=h, head_dim=d // h, d_ff=keys.get("n_inner") or 4 * d,
      num_layers=keys.req("n_layer"), max_position_embeddings=keys.req("n_positions"),
      layer_norm_eps=keys.get("layer_norm_epsilon", 1e-5), tie_word_embeddings=True,
      activation=_activation(keys, "activation_function", "gelu_new"),
      scaled_attention=bool(keys.get("scale_attn_weights", True)),
      scale_by_layer=bool(keys.get("scale_attn_by_inverse_layer_idx", False)),
      eos_id=_eos(keys, 50256), pad_id=0)


def _t5(keys: Keys, layout: str) -> dict[str, Any]:
  proj = keys.get("feed_forward_proj", "relu")
  parts = proj.split("-")
  gated = len(parts) == 2 and parts[0] == "gated"
  if len(parts) > 2 or (len(parts) == 2 and not gated) or parts[-1] not in ACTIVATIONS:
    raise keys.refuse(f"feed_forward_proj={proj!r} is not supported")
  act = "gelu_new" if proj == "gated-gelu" else ACTIVATIONS[parts[-1]]
  if keys.get("tie_encoder_decoder"):
    raise keys.refuse("tie_encoder_decoder=true is not supported")
  keys.harmless("dense_act_fn", "is_gated_act")
  if layout == "t5":
    layout = "v1_1" if gated else "original"
  # transformers >= 5 ties the T5 family's configs and keeps a file's own choice in
  # scale_decoder_outputs; mT5 never rescales. The head's tying follows the weights.
  rescale = keys.get("scale_decoder_outputs", keys.hf.get("tie_word_embeddings") is not False)
  return dict(
      kind="encdec", layout=layout, vocab_size=keys.req("vocab_size"),
      d_model=keys.req("d_model"), num_heads=keys.req("num_heads"), head_dim=keys.req("d_kv"),
      d_ff=keys.req("d_ff"), num_layers=keys.get("num_decoder_layers") or keys.req("num_layers"),
      num_encoder_layers=keys.req("num_layers"), activation=act, gated_mlp=gated,
      relative_attention_num_buckets=keys.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=keys.get("relative_attention_max_distance", 128),
      layer_norm_eps=keys.get("layer_norm_epsilon", 1e-6),
      tie_word_embeddings=keys.hf.get("tie_word_embeddings", True) is not False,
      head_rescale=False if layout == "mt5" else bool(rescale),
      pad_id=int(keys.get("pad_token_id", 0)), eos_id=_eos(keys, 1),
      decoder_start_id=int(keys.get("decoder_start_token_id", 0)))


READERS: dict[str, Callable[[Keys], dict[str, Any]]] = {
    "llama": _llama, "mistral": _mistral,
    "qwen2": lambda k: _qwen(k, "qwen2"), "qwen3": lambda k: _qwen(k, "qwen3"),
    "gemma": lambda k: _gemma(k, "gemma"), "gemma2": lambda k: _gemma(k, "gemma2"),
    "gemma3_text": lambda k: _gemma(k, "gemma3"),
    "gpt2": _gpt2,
    "t5": lambda k: _t5(k, "t5"), "mt5": lambda k: _t5(k, "mt5"),
    "umt5": lambda k: _t5(k, "umt5"),
}
HINTS: dict[str, dict[str, str]] = {"llama": _LLAMA_HINTS}


# ---------------------------------------------------------------- the way back
_MODEL_TYPE = {"v1_1": "t5", "original": "t5", "mt5": "mt5", "umt5": "umt5", "gpt2": "gpt2",
               "llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3",
               "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3_text"}
_ARCH = {"t5": "T5ForConditionalGeneration", "mt5": "MT5ForConditionalGeneration",
         "umt5": "UMT5ForConditionalGeneration", "gpt2": "GPT2LMHeadModel",
         "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
         "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "gemma": "GemmaForCausalLM",
         "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}
_HF_ACT = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_new", "silu": "silu"}


def model_type(cfg: ModelConfig) -> str:
  """The Hugging Face ``model_type`` of ``cfg``'s layout."""
  return _MODEL_TYPE[cfg.layout]


def _query_pre_attn_scalar(cfg: ModelConfig) -> int | float:
  if not cfg.query_scale:
    return cfg.head_dim
  value = round(cfg.query_scale ** -2, 6)
  return int(value) if value.is_integer() else value  # transformers wants an int


def _layer_types_out(cfg: ModelConfig) -> list[str]:
  return [f"{t}_attention" for t in (cfg.layer_types or ("full",) * cfg.num_layers)]


def to_hf_config(cfg: ModelConfig) -> dict[str, Any]:
  """A ``config.json`` dict that transformers loads into the same class with the same logits."""
  mt = model_type(cfg)
  out: dict[str, Any] = {"architectures": [_ARCH[mt]], "model_type": mt,
                         "vocab_size": cfg.vocab_size}
  if cfg.kind == "encdec":
    act = _HF_ACT[cfg.activation]
    proj = "gated-gelu" if cfg.gated_mlp and act == "gelu_new" else (
        f"gated-{act}" if cfg.gated_mlp else act)
    out.update(
        d_model=cfg.d_model, d_kv=cfg.head_dim, d_ff=cfg.d_ff, num_layers=cfg.num_encoder_layers,
        num_decoder_layers=cfg.num_layers, num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        dropout_rate=cfg.dropout_rate, layer_norm_epsilon=cfg.layer_norm_eps,
        feed_forward_proj=proj, tie_word_embeddings=cfg.tie_word_embeddings,
        is_encoder_decoder=True, pad_token_id=cfg.pad_id, eos_token_id=cfg.eos_id,
        decoder_start_token_id=cfg.decoder_start_id, use_cache=True)
    if mt != "mt5":
      out["scale_decoder_outputs"] = cfg.head_rescale
    return out
  if mt == "gpt2":
    out.update(
        n_embd=cfg.d_model, n_head=cfg.num_heads, n_layer=cfg.num_layers, n_inner=cfg.d_ff,
        n_positions=cfg.max_position_embeddings, layer_norm_epsilon=cfg.layer_norm_eps,
        activation_function=_HF_ACT[cfg.activation], resid_pdrop=cfg.dropout_rate,
        embd_pdrop=cfg.dropout_rate, attn_pdrop=cfg.dropout_rate,
        scale_attn_weights=cfg.scaled_attention,
        scale_attn_by_inverse_layer_idx=cfg.scale_by_layer, bos_token_id=cfg.eos_id,
        eos_token_id=cfg.eos_id, tie_word_embeddings=True)
    return out
  out.update(
      hidden_size=cfg.d_model, intermediate_size=cfg.d_ff, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads,
      rms_norm_eps=cfg.layer_norm_eps,
      max_position_embeddings=cfg.max_position_embeddings,
      tie_word_embeddings=cfg.tie_word_embeddings, eos_token_id=cfg.eos_id,
      pad_token_id=cfg.pad_id, rope_parameters=_rope_out(cfg))
  if mt != "qwen2":  # Qwen2 derives it: hidden_size / num_attention_heads
    out["head_dim"] = cfg.head_dim
  if mt in ("llama", "mistral", "qwen2", "qwen3", "gemma"):
    out["hidden_act"] = "gelu_pytorch_tanh" if mt == "gemma" else _HF_ACT[cfg.activation]
  if mt in ("llama", "qwen3", "gemma", "gemma2", "gemma3_text"):
    out["attention_bias"] = cfg.qkv_bias
  if mt == "llama":
    out["mlp_bias"] = cfg.mlp_bias
  if mt == "mistral":
    out["sliding_window"] = cfg.sliding_window or None
  if mt in ("qwen2", "qwen3"):
    out.update(use_sliding_window=bool(cfg.sliding_window),
               sliding_window=cfg.sliding_window or None, max_window_layers=cfg.num_layers,
               layer_types=_layer_types_out(cfg))
  if mt in ("gemma2", "gemma3_text"):
    out.update(hidden_activation="gelu_pytorch_tanh", sliding_window=cfg.sliding_window,
               query_pre_attn_scalar=_query_pre_attn_scalar(cfg),
               final_logit_softcapping=cfg.final_softcap or None,
               layer_types=_layer_types_out(cfg))
  if mt == "gemma2":
    out["attn_logit_softcapping"] = cfg.attn_softcap or None
  if mt == "gemma3_text":
    out["rope_parameters"] = {
        "full_attention": _rope_out(cfg),
        "sliding_attention": {"rope_type": "default",
                              "rope_theta": cfg.rope_local_theta or cfg.rope_theta}}
  return out
