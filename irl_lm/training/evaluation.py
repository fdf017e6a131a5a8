"""Evaluation during training: the eval loss and the task's metrics on generated text."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import seqio

from irl_lm import data
from irl_lm import sharding as shd
from irl_lm.decoding import generate
from irl_lm.decoding.config import generate_kwargs


def prompt_batch(examples: Sequence[dict[str, Any]], kind: str, batch_size: int,
                 inputs_length: int) -> dict[str, np.ndarray]:
  """Prompts for ``generate``, right-padded; short batches get dummy rows.

  Decoder-only prompts are laid out as in training: a leading 0, then the
  inputs (ending in their EOS separator); ``prompt_lengths`` marks their ends.
  """
  lead = 0 if kind == "encdec" else 1
  rows = np.zeros((batch_size, inputs_length + lead), np.int32)
  lengths = np.ones((batch_size,), np.int32)
  for i, ex in enumerate(examples):
    toks = np.asarray(ex["inputs"], np.int32)[:inputs_length]
    rows[i, lead:lead + len(toks)] = toks
    lengths[i] = lead + len(toks)
  if kind == "encdec":
    return {"encoder_input_tokens": rows}
  return {"decoder_input_tokens": rows, "prompt_lengths": lengths}


def decode_text(vocab: seqio.Vocabulary, tokens: np.ndarray, eos_id: int) -> str:
  """Text of one generated row, up to (not including) its EOS."""
  ids = [int(t) for t in tokens]
  if eos_id in ids:
    ids = ids[:ids.index(eos_id)]
  return vocab.decode([i for i in ids if i != 0])


class Evaluator:
  """Computes ``eval/loss`` (and the loss terms) and the task's metrics."""

  def __init__(self, model: Any, config: ml_collections.ConfigDict, task: seqio.Task, kind: str,
               mesh: jax.sharding.Mesh, rules: shd.Rules, shard: tuple[int, int],
               eval_fn: Callable[..., dict[str, jax.Array]]):
    self.model, self.config, self.task, self.kind = model, config, task, kind
    self.mesh, self.rules, self.shard, self.eval_fn = mesh, rules, shard, eval_fn
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
      with shd.activate(self.mesh, self.rules):
        sums = jax.device_get(self.eval_fn(state, shd.shard_batch(batch, self.mesh, self.rules)))
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
    bs = cfg.eval.batch_size
    for i in range(0, len(self._examples), bs):
      chunk = self._examples[i:i + bs]
      batch = prompt_batch(chunk, self.kind, bs, cfg.data.inputs_length)
      out = generate(self.model, state.params, batch, target_q_params=state.target_q,
                     mesh=self.mesh, **kw)
      tokens = np.asarray(jax.device_get(out.tokens))
      preds += [decode_text(vocab, tokens[j, 0], eos) for j in range(len(chunk))]
    metrics = data.compute_metrics(self.task, self._examples, preds)
    return {f"eval/{k}": float(v) for k, v in metrics.items()}

  def __call__(self, state: Any) -> dict[str, float]:
    out = self.loss(state)
    if self.config.eval.generate:
      out.update(self.generate_metrics(state))
    return out
