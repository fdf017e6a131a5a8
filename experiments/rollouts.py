"""Online rollouts of a trained policy with the KV-cache decoder.

`colour_returns` scores single-turn responses with the embedded colour tasks'
reward.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import seqio

from irl_lm.data.embedded import ilql
from irl_lm.decoding import generate
from irl_lm.decoding.prompts import decode_row, prompt_batch, task_prompt


@dataclasses.dataclass(frozen=True)
class Policy:
  """A trained model with its parameters, ILQL target heads (or None) and vocabulary."""

  model: Any
  params: Any
  target_q: Any
  vocab: seqio.Vocabulary


@dataclasses.dataclass(frozen=True)
class Decoding:
  """How the policy acts: ``greedy`` or ``sample`` at ``temperature``, with ILQL
  guidance ``ilql_beta`` (0: the LM head alone); ``top_k`` / ``top_p`` filter the final
  scores (trlx's rule), ``behaviour_top_k`` / ``behaviour_top_p`` the LM head's before
  guidance (Snell et al.'s); 0 and 1 are off."""

  method: str = "greedy"
  temperature: float = 1.0
  ilql_beta: float = 0.0
  seed: int = 0
  top_k: int = 0
  top_p: float = 1.0
  behaviour_top_k: int = 0
  behaviour_top_p: float = 1.0


def respond(policy: Policy, prompts: Sequence[Sequence[int]], decoding: Decoding, *,
            max_new_tokens: int, width: int, eos_id: int, batch_size: int = 128
            ) -> list[list[int]]:
  """Generated ids per framed prompt (`task_prompt`), cut after ``eos_id``."""
  kind = policy.model.cfg.kind
  out: list[list[int]] = []
  for i in range(0, len(prompts), batch_size):
    chunk = prompts[i:i + batch_size]
    batch = prompt_batch(chunk, kind, width, batch_size)
    res = generate(policy.model, policy.params, batch, max_new_tokens=max_new_tokens,
                   method=decoding.method, temperature=decoding.temperature,
                   top_k=decoding.top_k, top_p=decoding.top_p,
                   behaviour_top_k=decoding.behaviour_top_k,
                   behaviour_top_p=decoding.behaviour_top_p, ilql_beta=decoding.ilql_beta,
                   target_heads=policy.target_q, eos_id=eos_id,
                   rng=jax.random.key(decoding.seed * 1_000_003 + i))
    tokens, lengths = np.asarray(res.tokens[:, 0]), np.asarray(res.lengths[:, 0])
    out += [[int(t) for t in tokens[j, :lengths[j]]] for j in range(len(chunk))]
  return out


def colour_returns(policy: Policy, examples: Sequence[dict[str, Any]], decoding: Decoding, *,
                   inputs_length: int, targets_length: int) -> np.ndarray:
  """The colour task's reward (`ilql.score`) of one response per example."""
  kind = policy.model.cfg.kind
  prompts = [task_prompt(policy.vocab, ex["inputs"][:inputs_length], kind) for ex in examples]
  eos = policy.vocab.eos_id
  got = respond(policy, prompts, decoding, max_new_tokens=targets_length,
                width=inputs_length + (kind == "decoder"), eos_id=eos)
  return np.array([ilql.score(ex["inputs_pretokenized"], decode_row(policy.vocab, g, eos))
                   for ex, g in zip(examples, got)])
