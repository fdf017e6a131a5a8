"""Per-token scores: behaviour-policy filters and ILQL perturbation, then temperature,
top-k and top-p."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from irl_lm.models import ModelConfig, apply_heads, apply_q_heads

Array = jax.Array
METHODS = ("greedy", "sample", "beam")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Static (compile-time) decoding settings; see ``irl_lm.decoding.generate``."""

  method: str
  max_new_tokens: int
  eos_id: int
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  num_beams: int = 1
  num_samples: int = 1
  ilql: bool = False
  use_target_heads: bool = True
  behaviour_top_k: int = 0
  behaviour_top_p: float = 1.0
  value_trunk: bool = False  # ILQL values from a separate value trunk
  scores: bool = True  # sum each chosen token's log-probability (beam search always does)

  @property
  def rows_per_input(self) -> int:
    return self.num_beams if self.method == "beam" else self.num_samples


Values = tuple[Array, Array, Array]  # (Q1 [rows, vocab], Q2 [rows, vocab], V [rows])


def token_scores(logits: Array, beta: Array, s: Settings, values: Values | None = None) -> Array:
  """Per-token scores [rows, vocab] before temperature / top-k / top-p.

  The behaviour policy's log-probabilities, with the tokens outside its
  ``behaviour_top_k`` / ``behaviour_top_p`` set (Snell's rule) at -inf; with
  ILQL (``s.ilql``; ``values`` from ``ilql_values``) plus trlx's
  perturbation ``beta * (min(Q1, Q2) - V)``. Without ILQL the logits stand for
  the log-probabilities (a per-row constant the decoding distribution does not see).
  """
  scores = jax.nn.log_softmax(logits, axis=-1) if s.ilql else logits
  if s.behaviour_top_k:
    scores = top_k_filter(scores, s.behaviour_top_k)
  if s.behaviour_top_p < 1.0:
    scores = top_p_filter(scores, s.behaviour_top_p)
  if not s.ilql:
    return scores
  q1, q2, v = values
  return scores + beta * (jnp.minimum(q1, q2) - v[..., None])


def ilql_values(cfg: ModelConfig, params: Any, target: Any, s: Settings
                ) -> Callable[[Array], Values]:
  """``hidden [rows, d] -> (Q1, Q2, V)`` from the value heads in ``params``; the Qs
  come from the target heads ``target`` when ``s.use_target_heads``."""
  def values(h: Array) -> Values:
    h = h[:, None]
    q1, q2, v = apply_heads(cfg, params, h)
    if s.use_target_heads:
      q1, q2 = apply_q_heads(cfg, target, h)
    return q1[:, 0], q2[:, 0], v[:, 0]
  return values


def top_k_filter(scores: Array, k: int) -> Array:
  """Scores outside the ``k`` largest of each row set to -inf."""
  kth = lax.top_k(scores, k)[0][..., -1:]
  return jnp.where(scores < kth, -jnp.inf, scores)


def top_p_filter(scores: Array, p: float) -> Array:
  """Keeps the smallest set of highest-probability tokens whose mass reaches ``p``."""
  desc = -jnp.sort(-scores, axis=-1)
  probs = jax.nn.softmax(desc, axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better tokens
  count = jnp.sum(before < p, axis=-1, keepdims=True)
  cutoff = jnp.take_along_axis(desc, count - 1, axis=-1)
  return jnp.where(scores < cutoff, -jnp.inf, scores)


def filtered(scores: Array, s: Settings) -> Array:
  """top_p(top_k(scores / temperature)): the decoding distribution's unnormalised logits."""
  if s.temperature != 1.0:
    scores = scores / s.temperature
  if s.top_k:
    scores = top_k_filter(scores, s.top_k)
  if s.top_p < 1.0:
    scores = top_p_filter(scores, s.top_p)
  return scores


def log_probs(scores: Array, s: Settings) -> Array:
  """Log-probabilities of the decoding distribution: log_softmax(filtered(scores))."""
  return jax.nn.log_softmax(filtered(scores, s), axis=-1)


def _first_max(x: Array, best: Array) -> Array:
  # Two plain reductions: XLA:CPU runs jnp.argmax's variadic reduce several times
  # slower on vocabulary-sized rows.
  idx = lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  return jnp.min(jnp.where(x == best, idx, x.shape[-1]), axis=-1)


def choose(scores: Array, s: Settings, key: Array | None = None
           ) -> tuple[Array, Array | None]:
  """One token per row and, if ``s.scores``, its log-probability under the decoding
  distribution (else None).

  Greedy (``key`` None): the first most likely token, from the row maximum; the
  log-sum-exp that its score needs is computed only when the score is asked for.
  Sampling: inverse-CDF, one uniform number per row against the running sum of
  ``exp(x - max)``, whose last entry also gives the score's normaliser. It draws from the
  same distribution as Gumbel-max, which needs a random number per vocabulary entry and
  costs several times more on CPU (``bench/decode.py``). Returns int32 [rows] and
  float32 [rows] or None.
  """
  x = filtered(scores, s)
  best = jnp.max(x, axis=-1, keepdims=True)
  if key is None:
    tok = _first_max(x, best)
    if not s.scores:
      return tok, None
    total = jnp.sum(jnp.exp(x - best), axis=-1)
  else:
    cdf = jnp.cumsum(jnp.exp(x - best), axis=-1)
    total = cdf[..., -1]
    u = (1.0 - jax.random.uniform(key, total.shape, cdf.dtype)) * total  # in (0, total]
    tok = jnp.minimum(jnp.sum(cdf < u[..., None], axis=-1), x.shape[-1] - 1).astype(jnp.int32)
    if not s.scores:
      return tok, None
  picked = jnp.take_along_axis(x, tok[..., None], axis=-1)[..., 0]
  return tok, picked - best[..., 0] - jnp.log(total)
