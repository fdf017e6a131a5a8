"""The imitation benchmark's known expert: a teacher language model over token ids.

Any Hugging Face causal-LM directory (GPT-2 or Llama layout: ``config.json`` +
safetensors) can be the teacher; no tokenizer is read. Its context starts with
``start_id`` (the directory's ``bos_token_id``, else its ``eos_token_id``). The
default teacher is trained here (`train_default_teacher`): a ``gpt2-mini``
language model of the embedded summarisation task's documents, whose context
starts with 0 as irl_lm's decoder-only training rows do.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from irl_lm.errors import ConfigError
from irl_lm.models import from_pretrained

TEACHER_FILE = "teacher.json"  # what the benchmark records about the teacher it used


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A loaded teacher: model, parameters, the id its context starts with, its EOS id."""

  model: Any
  params: Any
  start_id: int
  eos_id: int
  path: str

  @property
  def vocab_size(self) -> int:
    return self.model.cfg.vocab_size


def load_teacher(path: str, start_id: int | None = None) -> Teacher:
  """A Hugging Face causal LM directory as a teacher (ConfigError for an encoder-decoder)."""
  model, params = from_pretrained(path)
  if model.cfg.kind != "decoder":
    raise ConfigError("the teacher must be a causal (decoder-only) language model",
                      f"--teacher={path}", expected="a GPT-2 or Llama layout",
                      found=f"{model.cfg.layout} ({model.cfg.kind})")
  if start_id is None:
    with open(os.path.join(path, "config.json")) as f:
      hf = json.load(f)
    start = hf.get("bos_token_id", hf.get("eos_token_id"))
    start_id = int(start[0] if isinstance(start, list) else (start or 0))
  return Teacher(model, params, start_id, model.cfg.eos_id, path)


@functools.partial(jax.jit, static_argnums=(0,))
def _log_probs(model: Any, params: Any, tokens: jax.Array, temperature: jax.Array) -> jax.Array:
  logits = model.apply({"params": params}, {"decoder_input_tokens": tokens}).logits
  return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def token_log_likelihood(teacher: Teacher, prompts: np.ndarray, continuations: np.ndarray,
                         temperature: float, batch_size: int = 256) -> np.ndarray:
  """log p_teacher(c_j | start, prompt, c_<j) at ``temperature``: [n, L] for [n, P], [n, L]."""
  n, p = prompts.shape
  length = continuations.shape[1]
  out = []
  for i in range(0, n, batch_size):
    rows = np.concatenate([np.full((len(prompts[i:i + batch_size]), 1), teacher.start_id),
                           prompts[i:i + batch_size], continuations[i:i + batch_size]], 1)
    pad = batch_size - len(rows)
    tokens = np.pad(rows, ((0, pad), (0, 0))).astype(np.int32)
    lp = _log_probs(teacher.model, teacher.params, jnp.asarray(tokens[:, :-1]),
                    jnp.float32(temperature))
    picked = jnp.take_along_axis(lp[:, p:], jnp.asarray(tokens[:, p + 1:, None]), -1)[..., 0]
    out.append(np.asarray(picked)[:len(rows)])
  return np.concatenate(out).reshape(n, length)


def sample(teacher: Teacher, prompts: np.ndarray, length: int, temperature: float, seed: int,
           batch_size: int = 256) -> np.ndarray:
  """``length`` teacher tokens after each prompt row ([n, P], P may be 0): [n, length]."""
  from irl_lm.decoding import generate
  n = len(prompts)
  rows = np.concatenate([np.full((n, 1), teacher.start_id), prompts], 1).astype(np.int32)
  out = []
  for i in range(0, n, batch_size):
    chunk = rows[i:i + batch_size]
    pad = batch_size - len(chunk)
    batch = {"decoder_input_tokens": np.pad(chunk, ((0, pad), (0, 0))),
             "prompt_lengths": np.full((batch_size,), rows.shape[1], np.int32)}
    res = generate(teacher.model, teacher.params, batch, max_new_tokens=length,
                   method="sample", temperature=temperature, eos_id=-1,
                   rng=jax.random.key(seed * 65_537 + i))
    out.append(np.asarray(res.tokens[:, 0])[:len(chunk)])
  return np.concatenate(out)


def train_default_teacher(workdir: str, steps: int, seed: int = 0) -> dict[str, Any]:
  """Trains the default teacher (``gpt2-mini`` on the embedded documents); exports it.

  Returns ``{"path": HF_DIR, "start_id": 0, ...}`` for `load_teacher`.
  """
  from irl_lm import data
  from irl_lm.models import save_pretrained
  from irl_lm.workdir import restore_params
  from experiments.run_config import single_run_config
  from irl_lm.training.trainer import train_and_evaluate
  vocab = data.make_vocabulary("embedded")
  docs = {split: [list(vocab.encode(ex["inputs"])) for ex in
                  data.embedded.generate("embedded_summarize", split)]
          for split in ("train", "validation")}
  width = max(len(d) for ds in docs.values() for d in ds)
  data.register_id_task("imitation_teacher_corpus",
                        {s: ([[] for _ in d], d) for s, d in docs.items()},
                        data.IdVocabulary(vocab.vocab_size, vocab.eos_id))
  c = single_run_config(task="imitation_teacher_corpus", loss="mle", model="gpt2-mini",
                        lengths=(1, width), steps=steps, learning_rate=2e-3, seed=seed,
                        log_points=10, max_warmup=200)
  last = train_and_evaluate(c, os.path.join(workdir, "run"))
  model, params, _, _ = restore_params(os.path.join(workdir, "run"))
  path = os.path.join(workdir, "hf")
  save_pretrained(model, params, path)
  return {"path": path, "start_id": 0, "train_loss": last.get("train/loss"),
          "eval_loss": last.get("eval/loss"), "steps": steps}
