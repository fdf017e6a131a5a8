"""Greedy decoding and sampling: one jitted ``lax.while_loop`` that stops when every row is done."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from irl_lm.decoding.sampling import Settings, Values, choose, token_scores
from irl_lm.decoding.session import Session

Array = jax.Array


def sample_or_greedy(session: Session, s: Settings, params: Any, inputs: Mapping[str, Array],
                     guide: Callable[[Array], Values] | None, beta: Array, rng: Array) -> tuple[Array, Array, Array]:
  """Decodes ``s.num_samples`` rows per input (greedy: argmax).

  Returns:
    ``(tokens [rows, max_new_tokens], scores [rows] or None, lengths [rows])``:
    tokens after a row's EOS are 0; scores (None unless ``s.scores``) sum each chosen
    token's log-probability under the decoding distribution; lengths count tokens up
    to and including EOS.
  """
  n = s.max_new_tokens

  def pick(out, i, done):
    key = None if s.method == "greedy" else jax.random.fold_in(rng, i)
    values = guide(out.hidden) if guide is not None else None
    tok, lp = choose(token_scores(out.logits, beta, s, values), s, key)
    return jnp.where(done, 0, tok), None if lp is None else jnp.where(done, 0.0, lp)

  def record(state, i, tok, lp):
    tokens, score, length, done = state
    tokens = lax.dynamic_update_slice(tokens, tok[:, None], (0, i))
    score = None if lp is None else score + lp
    return tokens, score, length + (~done).astype(jnp.int32), done | (tok == s.eos_id)

  out, carry = session.start(params, inputs)
  rows = out.logits.shape[0]
  score = jnp.zeros((rows,), jnp.float32) if s.scores else None
  state = (jnp.zeros((rows, n), jnp.int32), score, jnp.zeros((rows,), jnp.int32),
           jnp.zeros((rows,), bool))
  tok, lp = pick(out, 0, state[3])
  state = record(state, 0, tok, lp)

  def cond(loop):
    i, _, _, state = loop
    return (i < n) & ~jnp.all(state[3])

  def body(loop):
    i, carry, tok, state = loop
    out, carry = session.step(params, carry, tok)
    tok, lp = pick(out, i, state[3])
    state = record(state, i, tok, lp)
    return i + 1, carry, tok, state

  _, _, _, (tokens, score, length, _) = lax.while_loop(cond, body, (1, carry, tok, state))
  return tokens, score, length
