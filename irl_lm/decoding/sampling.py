"""Per-token scores: ILQL perturbation, then temperature, top-k and top-p."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from irl_lm.models import ModelOutput

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

  @property
  def rows_per_input(self) -> int:
    return self.num_beams if self.method == "beam" else self.num_samples


def token_scores(out: ModelOutput, beta: Array, s: Settings) -> Array:
  """trlx's rule: log_softmax(logits) + beta * (min(Q1, Q2) - V), [rows, vocab].

  Without ILQL (``s.ilql`` False) this is the behaviour policy's log-probabilities.
  """
  scores = jax.nn.log_softmax(out.logits, axis=-1)
  if not s.ilql:
    return scores
  q1, q2 = (out.target_q1, out.target_q2) if s.use_target_heads else (out.q1, out.q2)
  return scores + beta * (jnp.minimum(q1, q2) - out.v[..., None])


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


def log_probs(scores: Array, s: Settings) -> Array:
  """Log-probabilities of the decoding distribution: softmax(top_p(top_k(scores / T)))."""
  if s.temperature != 1.0:
    scores = scores / s.temperature
  if s.top_k:
    scores = top_k_filter(scores, s.top_k)
  if s.top_p < 1.0:
    scores = top_p_filter(scores, s.top_p)
  return jax.nn.log_softmax(scores, axis=-1)
