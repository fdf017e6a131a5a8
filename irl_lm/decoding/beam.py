"""Beam search ranking sequences by their summed token log-probabilities (no length penalty)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from irl_lm.decoding.sampling import Settings, Values, log_probs, token_scores
from irl_lm.decoding.session import Session

Array = jax.Array


def _take(x: Array, idx: Array) -> Array:
  """``x[b, idx[b, j], ...]`` for x [b, n, ...] and idx [b, m]."""
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def beam_search(session: Session, s: Settings, params: Any, inputs: Mapping[str, Array],
                guide: Callable[[Array], Values] | None, beta: Array) -> tuple[Array, Array, Array]:
  """Keeps ``s.num_beams`` live prefixes and the best ``s.num_beams`` finished sequences.

  A sequence finishes at EOS or at ``max_new_tokens`` tokens. The search stops
  early once no live prefix can beat the worst finished sequence (scores only
  decrease as tokens are added).

  Returns:
    ``(tokens [b * k, n], scores [b * k], lengths [b * k])``, beams of an input
    adjacent and best first; tokens after EOS are 0.
  """
  k, n = s.num_beams, s.max_new_tokens
  out, carry = session.start(params, inputs)
  b, vocab = out.logits.shape[0] // k, out.logits.shape[-1]
  neg = jnp.full((b, k), -jnp.inf)
  alive = (jnp.zeros((b, k, n), jnp.int32), neg.at[:, 0].set(0.0))
  finished = (jnp.zeros((b, k, n), jnp.int32), neg, jnp.zeros((b, k), jnp.int32))

  def expand(out, i, alive, finished):
    values = guide(out.hidden) if guide is not None else None
    logp = log_probs(token_scores(out.logits, beta, s, values), s).reshape(b, k, vocab)
    cand = (alive[1][..., None] + logp).reshape(b, k * vocab)
    score, idx = lax.top_k(cand, 2 * k)  # at most k of these end in EOS
    parent, tok = idx // vocab, (idx % vocab).astype(jnp.int32)
    seqs = lax.dynamic_update_slice(_take(alive[0], parent), tok[..., None], (0, 0, i))
    eos = tok == s.eos_id
    a_score, a_idx = lax.top_k(jnp.where(eos, -jnp.inf, score), k)
    alive = (_take(seqs, a_idx), a_score)
    finished = _best(finished, (seqs, jnp.where(eos, score, -jnp.inf),
                                jnp.full((b, 2 * k), i + 1, jnp.int32)), k)
    return alive, finished, _take(parent, a_idx), _take(tok, a_idx)

  def cond(loop):
    i, _, _, _, alive, finished = loop
    hopeless = jnp.max(alive[1], axis=1) < jnp.min(finished[1], axis=1)
    return (i < n) & ~jnp.all(hopeless)

  def body(loop):
    i, carry, parent, tok, alive, finished = loop
    rows = (jnp.arange(b)[:, None] * k + parent).reshape(-1)
    out, carry = session.step(params, session.reorder(carry, rows, inputs), tok.reshape(-1))
    alive, finished, parent, tok = expand(out, i, alive, finished)
    return i + 1, carry, parent, tok, alive, finished

  alive, finished, parent, tok = expand(out, 0, alive, finished)
  loop = lax.while_loop(cond, body, (1, carry, parent, tok, alive, finished))
  alive, finished = loop[4], loop[5]
  seqs, score, length = _best(finished, (*alive, jnp.full((b, k), n, jnp.int32)), k)
  return seqs.reshape(b * k, n), score.reshape(-1), length.reshape(-1)


def _best(a: tuple[Array, Array, Array], c: tuple[Array, Array, Array], k: int
          ) -> tuple[Array, Array, Array]:
  """The ``k`` highest-scoring of two (sequences, scores, lengths) sets."""
  seqs, score, length = (jnp.concatenate([x, y], axis=1) for x, y in zip(a, c))
  top, idx = lax.top_k(score, k)
  return _take(seqs, idx), top, _take(length, idx)
