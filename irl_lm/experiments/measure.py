"""Measurements on a trained model: task metric, diversity, ILQL reward, implied-reward correlation."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import seqio

from irl_lm import data, losses, metrics
from irl_lm.decoding import generate
from irl_lm.decoding.prompts import decode_row, prompt_batch, run_prompt


def sample_texts(model: Any, params: Any, task: seqio.Task, examples: Sequence[dict[str, Any]],
                 *, max_new_tokens: int, inputs_length: int, method: str = "greedy",
                 temperature: float = 1.0, num_samples: int = 1, ilql_beta: float = 0.0,
                 target_q: Any = None, seed: int = 0, batch_size: int = 128) -> list[list[str]]:
  """``num_samples`` decoded texts per example."""
  vocab = task.output_features["targets"].vocabulary
  out: list[list[str]] = []
  for i in range(0, len(examples), batch_size):
    chunk = examples[i:i + batch_size]
    kind = model.cfg.kind
    rows = [run_prompt(ex["inputs"][:inputs_length], kind) for ex in chunk]
    batch = prompt_batch(rows, kind, inputs_length + (kind == "decoder"), batch_size)
    res = generate(model, params, batch, max_new_tokens=max_new_tokens, method=method,
                   temperature=temperature, num_samples=num_samples, ilql_beta=ilql_beta,
                   target_heads=target_q, rng=jax.random.key(seed * 7919 + i))
    toks = np.asarray(res.tokens)
    out += [[decode_row(vocab, toks[j, k], vocab.eos_id) for k in range(toks.shape[1])]
            for j in range(len(chunk))]
  return out


def task_score(task: seqio.Task, examples: Sequence[dict[str, Any]], texts: Sequence[str]
               ) -> dict[str, float]:
  return data.compute_metrics(task, examples, list(texts))


def self_bleu(samples: Sequence[Sequence[str]]) -> float:
  """Self-BLEU (0-100) across the samples of each prompt; lower = more diverse."""
  return metrics.self_bleu(None, samples)["self_bleu"]


def _teacher_forced(task: seqio.Task, examples: Sequence[dict[str, Any]], texts: Sequence[str],
                    inputs_length: int, targets_length: int) -> dict[str, np.ndarray]:
  vocab = task.output_features["targets"].vocabulary
  n = len(texts)
  enc = np.zeros((n, inputs_length), np.int32)
  tgt = np.zeros((n, targets_length), np.int32)
  for i, (ex, text) in enumerate(zip(examples, texts)):
    inp = np.asarray(ex["inputs"], np.int32)[:inputs_length]
    enc[i, :len(inp)] = inp
    ids = (list(vocab.encode(text)) + [vocab.eos_id])[:targets_length]
    tgt[i, :len(ids)] = ids
  dec = np.concatenate([np.zeros((n, 1), np.int32), tgt[:, :-1]], 1)
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec,
          "decoder_target_tokens": tgt, "decoder_loss_weights": (tgt > 0).astype(np.int32)}


def implied_returns(model: Any, params: Any, task: seqio.Task,
                    examples: Sequence[dict[str, Any]], texts: Sequence[str], *, gamma: float,
                    inputs_length: int, targets_length: int, batch_size: int = 128) -> np.ndarray:
  """Per-sequence sum of IQLearn's implied rewards r_t for each (example, text)."""
  fn = jax.jit(lambda p, b: jnp.sum(losses.implied_rewards(
      model.apply({"params": p}, b).logits, b["decoder_target_tokens"],
      b["decoder_loss_weights"], gamma=gamma), axis=1))
  out = []
  for i in range(0, len(texts), batch_size):
    b = _teacher_forced(task, examples[i:i + batch_size], texts[i:i + batch_size],
                        inputs_length, targets_length)
    pad = batch_size - len(b["encoder_input_tokens"])
    b = {k: np.pad(v, ((0, pad), (0, 0))) for k, v in b.items()}
    out.append(np.asarray(fn(params, b))[:batch_size - pad])
  return np.concatenate(out)


def per_sample_quality(task: seqio.Task, examples: Sequence[dict[str, Any]],
                       texts: Sequence[str]) -> np.ndarray:
  """The task metric of each text on its own (ROUGE-L or exact accuracy)."""
  return np.array([next(iter(_primary(task_score(task, [ex], [t])).values()))
                   for ex, t in zip(examples, texts)])


def _primary(m: dict[str, float]) -> dict[str, float]:
  for key in ("rougeL", "accuracy", "reward", "bleu"):
    if key in m:
      return {key: m[key]}
  return m


def primary_metric(m: dict[str, float]) -> tuple[str, float]:
  """The headline metric of a task's metric dict."""
  (k, v), = _primary(m).items()
  return k, v


def correlations(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, float]:
  """Pearson and Spearman correlation overall, and Pearson within groups (centred per group)."""
  from scipy import stats
  xc, yc = x.astype(float).copy(), y.astype(float).copy()
  for g in np.unique(groups):
    m = groups == g
    xc[m] -= xc[m].mean()
    yc[m] -= yc[m].mean()
  safe = lambda f, a, b: float(f(a, b)[0]) if np.std(a) > 0 and np.std(b) > 0 else float("nan")
  return {"pearson": safe(stats.pearsonr, x, y), "spearman": safe(stats.spearmanr, x, y),
          "pearson_within_prompt": safe(stats.pearsonr, xc, yc)}
