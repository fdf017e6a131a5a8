"""Evaluation during training: the eval loss and the task's metrics on generated text."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from irl_lm import data
from irl_lm.decoding import generate
from irl_lm.decoding.config import generate_kwargs
from irl_lm.decoding.prompts import decode_row, prompt_batch, task_prompt


class Evaluator:
  """Computes ``eval/loss`` (and the loss terms) and the task's metrics."""

  def __init__(self, run: Any, shard: tuple[int, int]):
    """``run``: a ``builders.Run``; ``shard``: this process's (index, count) of the data."""
    self.run, self.config, self.task, self.kind = run, run.config, run.task, run.kind
    self.shard = shard
    config = self.config
    self.lengths = {"inputs": config.data.inputs_length, "targets": config.data.targets_length}
    self._examples: list[dict[str, Any]] | None = None

  def loss(self, state: Any) -> dict[str, float]:
    cfg = self.config
    it = data.BatchIterator(self.task, cfg.data.eval_split, self.kind, self.lengths,
                            cfg.eval.batch_size, shuffle=False, pack=False, repeat=False,
                            shard_index=self.shard[0], num_shards=self.shard[1])
    n_batches = -(-cfg.eval.num_examples // cfg.eval.batch_size)
    totals: dict[str, float] = {}
    for _, batch in zip(range(n_batches), it):
      sums = jax.device_get(self.run.eval_step(state, self.run.shard_batch(batch)))
      for k, v in sums.items():
        totals[k] = totals.get(k, 0.0) + float(v)
    w = max(totals.pop("weight_sum", 0.0), 1.0)
    return {f"eval/{k[:-4]}": v / w for k, v in totals.items()}

  def generate_metrics(self, state: Any) -> dict[str, float]:
    cfg = self.config
    if self._examples is None:
      self._examples = data.eval_examples(self.task, cfg.data.eval_split,
                                          max_examples=cfg.eval.num_examples,
                                          sequence_lengths=self.lengths)
    vocab = self.task.output_features["targets"].vocabulary
    kw = generate_kwargs(cfg.decoding)
    kw["max_new_tokens"] = kw["max_new_tokens"] or cfg.data.targets_length
    eos = vocab.eos_id if kw["eos_id"] is None else kw["eos_id"]
    preds: list[str] = []
    bs, width = cfg.eval.batch_size, cfg.data.inputs_length + (self.kind == "decoder")
    for i in range(0, len(self._examples), bs):
      chunk = self._examples[i:i + bs]
      rows = [task_prompt(vocab, ex["inputs"][:cfg.data.inputs_length], self.kind)
              for ex in chunk]
      out = generate(self.run.model, state.params, prompt_batch(rows, self.kind, width, bs),
                     mesh=self.run.mesh, rules=self.run.rules, with_scores=False,
                     **self.run.algorithm.decode_kwargs(state.extra), **kw)
      tokens = np.asarray(jax.device_get(out.tokens))
      preds += [decode_row(vocab, tokens[j, 0], eos) for j in range(len(chunk))]
    metrics = data.compute_metrics(self.task, self._examples, preds)
    return {f"eval/{k}": float(v) for k, v in metrics.items()}

  def __call__(self, state: Any) -> dict[str, float]:
    out = self.loss(state)
    if self.config.eval.generate:
      out.update(self.generate_metrics(state))
    return out
