"""Helpers for the decoding tests: tiny models and full-recompute references."""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from irl_lm.models import (HEADS, VALUE_TRUNK, apply_heads, apply_q_heads, build_model,
                           init_params, preset, trunk_params)
from irl_lm.models.hf_io import _stack_layers

EOS = 5


@functools.lru_cache(maxsize=None)
def tiny(name: str, vocab: int = 64, seed: int = 0, scan_layers: bool = False,
         value_heads: bool = False, **kw):
  """(model, params) of a tiny preset with ``vocab`` tokens and EOS = 5 (cached).

  With ``scan_layers`` the parameters are the unrolled ones stacked;
  ``value_heads`` adds the ILQL heads to the parameters.
  """
  cfg = preset(name, vocab_size=vocab, eos_id=EOS, **kw)
  params = tiny(name, vocab, seed, value_heads=value_heads, **kw)[1] if scan_layers else \
      init_params(cfg, jax.random.key(seed), heads=value_heads)
  if scan_layers:
    flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, params))
    params = jax.tree.map(jnp.asarray, traverse_util.unflatten_dict(_stack_layers(flat)))
  return build_model(cfg.replace(scan_layers=scan_layers)), params


def prompts(cfg, lengths, seed=0) -> np.ndarray:
  """Right-padded prompts [len(lengths), max(lengths)] of tokens in [1, vocab)."""
  rng = np.random.default_rng(seed)
  out = np.zeros((len(lengths), max(lengths)), np.int32)
  for i, n in enumerate(lengths):
    out[i, :n] = rng.integers(1, cfg.vocab_size, n)
  return out


def as_batch(cfg, tokens: np.ndarray) -> dict[str, np.ndarray]:
  key = "encoder_input_tokens" if cfg.kind == "encdec" else "decoder_input_tokens"
  return {key: tokens}


class Outputs(dict):
  """Full-forward outputs: ``logits`` and, with value heads, ``q1``, ``q2``, ``v``
  (and ``target_q1``, ``target_q2`` from given target heads), as attributes. The
  heads read a separate value trunk's hidden states when ``params`` has one."""
  __getattr__ = dict.__getitem__


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, batch, tq):
  out = model.apply({"params": trunk_params(params)}, batch)
  res = {"logits": out.logits}
  hidden = out.hidden
  if VALUE_TRUNK in params:
    hidden = model.apply({"params": params[VALUE_TRUNK]}, batch).hidden
  if HEADS in params:
    res["q1"], res["q2"], res["v"] = apply_heads(model.cfg, params, hidden)
    if tq is not None:
      res["target_q1"], res["target_q2"] = apply_q_heads(model.cfg, tq, hidden)
  return res


def next_outputs(model, params, prompt: np.ndarray, seqs: np.ndarray, tq=None, width: int = 8):
  """Full forward pass (no cache): outputs predicting each of seqs' tokens and the one after.

  ``prompt`` [p <= width] unpadded, ``seqs`` [b, t]; fields are [b, t + 1, ...]. The
  prompt is right-padded to ``width`` (T5: encoder padding; decoder: an ignored
  tail) so that every prompt length shares one compilation.
  """
  cfg = model.cfg
  b, t = seqs.shape
  pad = np.zeros((b, width - len(prompt)), np.int32)
  if cfg.kind == "encdec":
    dec = np.concatenate([np.full((b, 1), cfg.decoder_start_id), seqs], 1)
    batch = {"encoder_input_tokens": np.concatenate([np.tile(prompt, (b, 1)), pad], 1),
             "decoder_input_tokens": dec}
    return Outputs(_forward(model, params, jax.tree.map(jnp.asarray, batch), tq))
  toks = np.concatenate([np.tile(prompt, (b, 1)), seqs, pad], 1)
  out = _forward(model, params, {"decoder_input_tokens": jnp.asarray(toks)}, tq)
  return Outputs(jax.tree.map(lambda x: x[:, len(prompt) - 1:len(prompt) + t], out))


def ilql_scores(out, beta: float = 0.0, target: bool = True):
  """trlx's ILQL scores from full-forward outputs (beta 0: log-probabilities)."""
  s = jax.nn.log_softmax(out.logits, -1)
  if beta:
    q1, q2 = (out.target_q1, out.target_q2) if target else (out.q1, out.q2)
    s = s + beta * (jnp.minimum(q1, q2) - out.v[..., None])
  return np.asarray(s)


def reference_greedy(model, params, prompt, n, eos=EOS, beta=0.0, tq=None, target=True):
  """Greedy decoding by a full forward pass at every step: (tokens [n], score).

  The sequence buffer has a fixed length (causal attention ignores the unfilled
  tail), so the forward pass compiles once.
  """
  seq, score = np.zeros((1, n), np.int32), 0.0
  for i in range(n):
    s = ilql_scores(next_outputs(model, params, prompt, seq[:, :-1], tq), beta, target)[0, i]
    seq[0, i] = np.argmax(s)
    score += float(jax.nn.log_softmax(s)[seq[0, i]])
    if seq[0, i] == eos:
      break
  return seq[0], score


def exhaustive(model, params, prompt, length, eos=EOS):
  """Every distinct continuation (ending at EOS or at ``length``) and its log-probability,
  best first."""
  vocab = model.cfg.vocab_size
  seqs = np.array(list(itertools.product(range(vocab), repeat=length)), np.int32)
  logp = ilql_scores(next_outputs(model, params, prompt, seqs[:, :-1]))
  tok_lp = np.take_along_axis(logp, seqs[..., None], -1)[..., 0]
  found = {}
  for seq, lp in zip(seqs, tok_lp):
    stop = int(np.argmax(seq == eos)) + 1 if (seq == eos).any() else length
    key = tuple(seq[:stop]) + (0,) * (length - stop)
    found[key] = float(lp[:stop].sum())
  return sorted(found.items(), key=lambda kv: -kv[1])
