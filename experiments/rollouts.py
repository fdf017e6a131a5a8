"""Online rollouts of a trained policy with the KV-cache decoder.

`colour_returns` scores single-turn responses with the embedded colour task's
reward; `dialogue_returns` plays the twenty-questions environment turn by turn:
each agent turn is decoded (up to the end-of-turn token) after the whole
dialogue so far, then the environment's answer is appended.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import seqio

from irl_lm.data.embedded import ilql, twenty_questions as tq
from irl_lm.decoding import generate
from irl_lm.decoding.prompts import decode_row, encode_prompt, prompt_batch, task_prompt


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
  guidance ``ilql_beta`` (0: the LM head alone)."""

  method: str = "greedy"
  temperature: float = 1.0
  ilql_beta: float = 0.0
  seed: int = 0


def respond(policy: Policy, prompts: Sequence[Sequence[int]], decoding: Decoding, *,
            max_new_tokens: int, width: int, eos_id: int, batch_size: int = 128,
            call: int = 0) -> list[list[int]]:
  """Generated ids per framed prompt (`task_prompt`), cut after ``eos_id``."""
  kind = policy.model.cfg.kind
  out: list[list[int]] = []
  for i in range(0, len(prompts), batch_size):
    chunk = prompts[i:i + batch_size]
    batch = prompt_batch(chunk, kind, width, batch_size)
    res = generate(policy.model, policy.params, batch, max_new_tokens=max_new_tokens,
                   method=decoding.method, temperature=decoding.temperature,
                   ilql_beta=decoding.ilql_beta, target_heads=policy.target_q, eos_id=eos_id,
                   rng=jax.random.key(decoding.seed * 1_000_003 + call * 7919 + i))
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


def dialogue_returns(policy: Policy, hidden: Sequence[str], decoding: Decoding, *,
                     width: int, max_turn_tokens: int = 7) -> list[tq.Episode]:
  """Plays one twenty-questions episode per hidden object; returns the finished episodes.

  Decoder-only models only: the dialogue so far is the prompt of each turn.
  ``width`` is the prompt width (one compilation for every turn).
  """
  if policy.model.cfg.kind != "decoder":
    raise ValueError("dialogue rollouts need a decoder-only model")
  vocab = policy.vocab
  end = vocab.encode(tq.END_OF_TURN)[0]
  start = encode_prompt(vocab, tq.PROMPT, "decoder")
  episodes = [tq.Episode(h) for h in hidden]
  history = [list(start) for _ in hidden]
  for turn in range(tq.MAX_TURNS):
    live = [i for i, ep in enumerate(episodes) if not ep.done]
    if not live:
      break
    got = respond(policy, [history[i] for i in live], decoding, max_new_tokens=max_turn_tokens,
                  width=width, eos_id=end, call=turn)
    for i, ids in zip(live, got):
      if vocab.eos_id in ids:
        ids = ids[:ids.index(vocab.eos_id)]
      reply = episodes[i].step(vocab.decode(ids))
      history[i] += ids + list(vocab.encode(reply))
  return episodes
