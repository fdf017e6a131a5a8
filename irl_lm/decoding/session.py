"""Incremental decoding with a key/value cache for T5 and decoder-only models.

A session turns a prompt batch into the model outputs for the first new token
(``start``) and then feeds one token per row at a time (``step``). Its carry
holds the cache and each row's next position (used by decoder-only models).
``ValueTrunkSession`` runs ILQL's policy and value trunks in lockstep.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from irl_lm.models import VALUE_TRUNK, ModelOutput, trunk_params

Array = jax.Array
Carry = dict[str, Any]


def _last(out: ModelOutput) -> ModelOutput:
  """Outputs at the last position: [rows, vocab] (``v``: [rows])."""
  return jax.tree.map(lambda x: x[:, -1], out)


def _zeros(shapes: Any) -> Any:
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class Session(abc.ABC):
  """Base class: cache construction and reordering shared by both model kinds.

  Args:
    model: the ``T5`` or ``Decoder`` module.
    num_new: tokens to generate; the self-attention cache holds the prompt (T5:
      the start token) and ``num_new - 1`` generated tokens.
    repeat: decoding rows per input row (samples or beams), adjacent in the batch.
  """

  def __init__(self, model: nn.Module, num_new: int, repeat: int):
    self.model, self.cfg, self.num_new, self.repeat = model, model.cfg, num_new, repeat

  @abc.abstractmethod
  def _cache_shapes(self, rows: int, inputs: Mapping[str, Array]) -> Any:
    """Abstract cache for ``rows`` decoding rows."""

  @abc.abstractmethod
  def start(self, params: Any, inputs: Mapping[str, Array]
            ) -> tuple[ModelOutput, Carry]:
    """Encodes/prefills the prompts: outputs for the first new token and the carry."""

  @abc.abstractmethod
  def step(self, params: Any, carry: Carry, tokens: Array
           ) -> tuple[ModelOutput, Carry]:
    """Feeds one token per row: outputs for the next token and the new carry."""

  def _apply(self, params: Any, cache: Any, batch: Mapping[str, Array], *args: Any,
             **kw: Any) -> tuple[ModelOutput, Any]:
    out, variables = self.model.apply({"params": params, "cache": cache}, batch, *args,
                                      decode=True, mutable=["cache"], **kw)
    return out, variables["cache"]

  def reorder(self, carry: Carry, rows: Array, inputs: Mapping[str, Array]) -> Carry:
    """The carry with decoding row ``i`` taken from row ``rows[i]`` (beam search)."""
    n = rows.shape[0]
    a = jax.tree.leaves(self._cache_shapes(n, inputs))
    b = jax.tree.leaves(self._cache_shapes(n + 1, inputs))
    axes = [next((d for d, (x, y) in enumerate(zip(s.shape, t.shape)) if x != y), None)
            for s, t in zip(a, b)]
    leaves, tree = jax.tree.flatten(carry["cache"])
    cache = [x if ax is None else jnp.take(x, rows, axis=ax) for x, ax in zip(leaves, axes)]
    return {"cache": jax.tree.unflatten(tree, cache), "pos": carry["pos"][rows]}


class DecoderSession(Session):
  """Decoder-only models. ``inputs``: ``decoder_input_tokens`` [b, p] right-padded
  prompts and ``prompt_lengths`` [b] (each >= 1); prompts are left-padded here."""

  def _cache_shapes(self, rows: int, inputs: Mapping[str, Array]) -> Any:
    length = inputs["decoder_input_tokens"].shape[1] + self.num_new - 1
    z = jax.ShapeDtypeStruct((rows, length), jnp.int32)
    fn = lambda b: self.model.init(jax.random.key(0), b, decode=True)["cache"]
    return jax.eval_shape(fn, {"decoder_input_tokens": z, "decoder_positions": z})

  def start(self, params: Any, inputs: Mapping[str, Array]
            ) -> tuple[ModelOutput, Carry]:
    tokens = jnp.repeat(inputs["decoder_input_tokens"].astype(jnp.int32), self.repeat, 0)
    lengths = jnp.repeat(inputs["prompt_lengths"].astype(jnp.int32), self.repeat, 0)
    rows, p = tokens.shape
    idx = jnp.arange(p)[None] - (p - lengths)[:, None]  # source index; < 0 on left pads
    left = jnp.where(idx >= 0, jnp.take_along_axis(tokens, jnp.maximum(idx, 0), 1),
                     self.cfg.pad_id)
    batch = {"decoder_input_tokens": left, "decoder_positions": jnp.maximum(idx, 0),
             "decoder_segment_ids": (idx >= 0).astype(jnp.int32)}
    cache = _zeros(self._cache_shapes(rows, inputs))
    if p > 1:  # all but the last token: only the cache is kept, so no logits are computed
      _, cache = self._apply(params, cache, jax.tree.map(lambda x: x[:, :-1], batch))
    out, cache = self._apply(params, cache, jax.tree.map(lambda x: x[:, -1:], batch))
    return _last(out), {"cache": cache, "pos": lengths}

  def step(self, params: Any, carry: Carry, tokens: Array
           ) -> tuple[ModelOutput, Carry]:
    pos = carry["pos"]
    batch = {"decoder_input_tokens": tokens[:, None], "decoder_positions": pos[:, None]}
    out, cache = self._apply(params, carry["cache"], batch)
    return _last(out), {"cache": cache, "pos": pos + 1}


class T5Session(Session):
  """T5. ``inputs``: ``encoder_input_tokens`` [b, t] right-padded with 0. The
  encoder runs once per input row; its keys/values are cached by the first step."""

  def _cache_shapes(self, rows: int, inputs: Mapping[str, Array]) -> Any:
    t = inputs["encoder_input_tokens"].shape[1]
    enc = jax.ShapeDtypeStruct((rows, t), jnp.int32)
    dec = jax.ShapeDtypeStruct((rows, self.num_new), jnp.int32)
    h = jax.ShapeDtypeStruct((rows, t, self.cfg.d_model), jnp.float32)
    fn = lambda b, e: self.model.init(jax.random.key(0), b, e, decode=True,
                                      method="decode")["cache"]
    return jax.eval_shape(fn, {"decoder_input_tokens": dec, "encoder_input_tokens": enc}, h)

  def start(self, params: Any, inputs: Mapping[str, Array]
            ) -> tuple[ModelOutput, Carry]:
    enc_tokens = inputs["encoder_input_tokens"].astype(jnp.int32)
    encoded = self.model.apply({"params": params}, {"encoder_input_tokens": enc_tokens},
                               method="encode")
    enc_tokens = jnp.repeat(enc_tokens, self.repeat, 0)
    encoded = jnp.repeat(encoded, self.repeat, 0)
    rows = enc_tokens.shape[0]
    cache = _zeros(self._cache_shapes(rows, inputs))
    first = jnp.full((rows, 1), self.cfg.decoder_start_id, jnp.int32)
    out, cache = self._apply(params, cache, {"decoder_input_tokens": first,
                                             "encoder_input_tokens": enc_tokens},
                             encoded, method="decode")
    return _last(out), {"cache": cache, "pos": jnp.zeros((rows,), jnp.int32)}

  def step(self, params: Any, carry: Carry, tokens: Array
           ) -> tuple[ModelOutput, Carry]:
    out, cache = self._apply(params, carry["cache"], {"decoder_input_tokens": tokens[:, None]},
                             None, method="decode")
    return _last(out), {"cache": cache, "pos": carry["pos"] + 1}


class ValueTrunkSession(Session):
  """The policy trunk and ILQL's separate value trunk in lockstep, a cache each.

  ``params`` are the full parameters (``trunk_params`` and
  ``params['value_trunk']``); the outputs are the policy's logits and the value
  trunk's hidden states (what the value heads read).
  """

  def __init__(self, inner: Session):
    super().__init__(inner.model, inner.num_new, inner.repeat)
    self.inner = inner

  def _cache_shapes(self, rows: int, inputs: Mapping[str, Array]) -> Any:
    shapes = self.inner._cache_shapes(rows, inputs)  # pylint: disable=protected-access
    return {"policy": shapes, "value": shapes}

  def start(self, params: Any, inputs: Mapping[str, Array]
            ) -> tuple[ModelOutput, Carry]:
    out, policy = self.inner.start(trunk_params(params), inputs)
    value_out, value = self.inner.start(params[VALUE_TRUNK], inputs)
    return ModelOutput(out.logits, value_out.hidden), {"policy": policy, "value": value}

  def step(self, params: Any, carry: Carry, tokens: Array
           ) -> tuple[ModelOutput, Carry]:
    out, policy = self.inner.step(trunk_params(params), carry["policy"], tokens)
    value_out, value = self.inner.step(params[VALUE_TRUNK], carry["value"], tokens)
    return ModelOutput(out.logits, value_out.hidden), {"policy": policy, "value": value}

  def reorder(self, carry: Carry, rows: Array, inputs: Mapping[str, Array]) -> Carry:
    return {k: self.inner.reorder(c, rows, inputs) for k, c in carry.items()}


def session_for(model: nn.Module, num_new: int, repeat: int, value_trunk: bool = False
                ) -> Session:
  """The session class matching the model's kind; ``value_trunk`` pairs it with
  ILQL's separate value trunk (``ValueTrunkSession``)."""
  cls = T5Session if model.cfg.kind == "encdec" else DecoderSession
  session = cls(model, num_new, repeat)
  return ValueTrunkSession(session) if value_trunk else session
