"""Whether an ILQL run's value function learned the colour tasks' delayed reward.

On held-out logged episodes (prompt, logged response, return):

* ``v0_return``: Pearson correlation of V at the first response state with the
  return. The return is mostly the logger's later coin flips, so even an exact V
  correlates weakly here; the spread of V(s0) is reported with it.
* ``q_eos_return``: correlation of min(Q1, Q2) of the target heads for the EOS
  action, at the state that ends the response, with the return. The return is
  fixed by then, so a value function that learned the reward correlates near 1.

On the optimal response of each prompt (teacher-forced):

* ``decisive``: the fraction of colour steps where min(Q1, Q2) ranks the right
  colour above the object's confusion, overall and by slot. In `embedded_stitch`
  the last slot after three right clauses is never logged: ranking it right is
  the credit that stitching needs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from irl_lm.data.embedded import ilql
from irl_lm.decoding.prompts import encode_prompt

WORDS_PER_CLAUSE = 4  # "<object> is <colour> ,": the colour is word 2 of each clause


def _forward(policy: Any, rows: list[list[int]], width: int, batch_size: int = 128
             ) -> tuple[np.ndarray, np.ndarray]:
  """min(Q1, Q2) of the target heads [n, width, vocab] and V [n, width] of right-padded rows."""
  import jax
  import jax.numpy as jnp
  from irl_lm.models.heads import apply_heads, apply_q_heads, trunk_params
  cfg = policy.model.cfg

  @jax.jit
  def run(params, target_q, tokens):
    h = policy.model.apply({"params": trunk_params(params)},
                           {"decoder_input_tokens": tokens}).hidden
    _, _, v = apply_heads(cfg, params, h)
    q1, q2 = apply_q_heads(cfg, target_q, h)
    return jnp.minimum(q1, q2), v

  qs, vs = [], []
  for i in range(0, len(rows), batch_size):
    tokens = np.zeros((batch_size, width), np.int32)
    chunk = rows[i:i + batch_size]
    for j, r in enumerate(chunk):
      tokens[j, :len(r)] = r
    q, v = run(policy.params, policy.target_q, tokens)
    qs.append(np.asarray(q)[:len(chunk)])
    vs.append(np.asarray(v)[:len(chunk)])
  return np.concatenate(qs), np.concatenate(vs)


def probe(policy: Any, generator: str, split: str, n: int) -> dict[str, Any]:
  """The value diagnostics of one ILQL policy on ``n`` episodes of an embedded colour
  generator's split (see the module docstring)."""
  from irl_lm.data import embedded
  vocab = policy.vocab
  examples = embedded.generate(generator, split)[:n]
  prompts = [encode_prompt(vocab, ex["inputs"], "decoder") for ex in examples]
  logged = [list(vocab.encode(ex["targets"])) + [vocab.eos_id] for ex in examples]
  best = [list(vocab.encode(ilql.optimal_response(ex["inputs"]))) + [vocab.eos_id]
          for ex in examples]
  width = max(len(p) + len(r) for p, r in zip(prompts, logged + best))
  returns = np.array([ex["reward"] for ex in examples], float)

  q, v = _forward(policy, [p + r for p, r in zip(prompts, logged)], width)
  start = np.array([len(p) - 1 for p in prompts])  # the state that chooses response token 0
  end = start + np.array([len(r) - 1 for r in logged])  # the state that chooses EOS
  rows = np.arange(len(examples))
  v0, q_eos = v[rows, start], q[rows, end, vocab.eos_id]

  q, _ = _forward(policy, [p + r for p, r in zip(prompts, best)], width)
  by_slot: list[list[bool]] = [[] for _ in range(ilql.NUM_SLOTS)]
  for i, ex in enumerate(examples):
    for slot, obj in enumerate(ilql.prompt_objects(ex["inputs"])):
      state = start[i] + WORDS_PER_CLAUSE * slot + 2
      right = vocab.encode(ilql.COLORS_OF[obj][0])[0]
      wrong = vocab.encode(ilql.CONFUSION[obj])[0]
      by_slot[slot].append(bool(q[i, state, right] > q[i, state, wrong]))
  corr = lambda a: float(np.corrcoef(a, returns)[0, 1]) if np.std(a) > 0 else float("nan")
  return {"v0_return": corr(v0), "v0_std": float(np.std(v0)),
          "q_eos_return": corr(q_eos), "q_eos_std": float(np.std(q_eos)),
          "decisive": float(np.mean(sum(by_slot, []))),
          "decisive_by_slot": [float(np.mean(s)) for s in by_slot]}
