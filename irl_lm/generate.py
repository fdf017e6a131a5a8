"""Generates continuations for a file of prompts (one per line) into JSON lines.

  python -m irl_lm.generate --hf_dir=DIR --input=prompts.txt --output=out.jsonl \\
      [--config.decoding.method=sample --config.decoding.num_samples=4 ...]
  python -m irl_lm.generate --workdir=RUN [--step=N] --input=... --output=...

Each output line is ``{"prompt", "samples": [...], "scores": [...]}`` with
``num_samples`` samples (``num_beams`` for beam search, best first).

Tokenisation: ``--hf_dir`` reads ``tokenizer.json`` from the directory (or
``--vocab``, a ``tokenizer.json`` or SentencePiece ``.model`` file); ``--workdir``
loads the run's latest (or ``--step``) checkpoint, its target Q heads and its
vocabulary. Either way a prompt is framed as training frames it
(``irl_lm.data.framing``: the tokenizer's BOS before decoder prompts, EOS after T5
inputs), so a run and its export generate the same text; decoding stops at the
tokenizer's EOS, which ``--hf_dir`` checks against the checkpoint's config first.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from irl_lm import cli

# TensorFlow (through seqio and irl_lm.data) prints its C++ start-up lines on import: take
# them before anything below imports it, as cli.run does for the other entry points.
cli.load_tensorflow_quietly(sys.argv)
# pylint: disable=wrong-import-position
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import seqio  # noqa: E402
import tqdm  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from irl_lm import data  # noqa: E402
from irl_lm import sharding as shd  # noqa: E402
from irl_lm.data.special_tokens import check_special_tokens  # noqa: E402
from irl_lm.decoding import default_config, generate, generate_kwargs  # noqa: E402
from irl_lm.decoding.prompts import decode_row, encode_prompt, prompt_batch  # noqa: E402
from irl_lm.errors import ConfigError, InputError, MissingError  # noqa: E402
from irl_lm.models import ModelConfig, from_pretrained  # noqa: E402
from irl_lm.models.hf_io import (VALUE_TRUNK_FILE, checkpoint_dir,  # noqa: E402
                                  tokenizer_home)

_HF_DIR = flags.DEFINE_string("hf_dir", None, "Hugging Face checkpoint directory.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step with --workdir (default latest).")
_VOCAB = flags.DEFINE_string("vocab", None, "tokenizer.json or SentencePiece .model file.")
_INPUT = flags.DEFINE_string("input", None, "Prompts, one per line.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Output JSON lines file.", required=True)
_BATCH = flags.DEFINE_integer("batch_size", 16, "Prompts per generate call.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
_DEFAULT = ml_collections.ConfigDict({"decoding": default_config()})
_CONFIG = config_flags.DEFINE_config_dict(
    "config", _DEFAULT, sys_argv=cli.known_overrides("config", _DEFAULT, sys.argv))


def load_vocabulary(path: str) -> seqio.Vocabulary:
  """A SentencePiece ``.model`` or a ``tokenizer.json`` file, as the data pipeline reads it."""
  kind = "sentencepiece" if path.endswith(".model") else "hf_tokenizer"
  return data.make_vocabulary(kind, path)


def load(hf_dir: str | None, workdir: str | None, step: int | None, vocab: str | None,
         value_heads: bool, mesh: jax.sharding.Mesh | None
         ) -> tuple[Any, Any, Any | None, seqio.Vocabulary]:
  """(model, params, target Q heads or None, vocabulary) from a HF dir or a run.

  With ``value_heads`` a HF dir's ``value_trunk.safetensors`` (an exported
  separate value trunk), if any, is loaded too.
  """
  if (hf_dir is None) == (workdir is None):
    raise ConfigError("give exactly one of --hf_dir and --workdir", "command line")
  if workdir is not None:
    from irl_lm.workdir import restore_params
    model, params, target, vocabulary = restore_params(workdir, step=step)
    return model, params, target, load_vocabulary(vocab) if vocab else vocabulary
  path = vocab or os.path.join(tokenizer_home(hf_dir), "tokenizer.json")
  if not os.path.exists(path):
    raise MissingError("no tokenizer (pass --vocab)", path)
  value_trunk = value_heads and os.path.exists(os.path.join(hf_dir, VALUE_TRUNK_FILE))
  model, params = from_pretrained(hf_dir, value_heads=value_heads, value_trunk=value_trunk,
                                  mesh=mesh)
  return model, params, None, load_vocabulary(path)


def read_prompts(path: str) -> list[str]:
  """The non-blank lines of a UTF-8 prompts file; errors name the file and line."""
  if not os.path.isfile(path):
    raise MissingError("no prompts file", f"--input={path}")
  texts = []
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise InputError("not UTF-8 text", f"{path}:{lineno}, byte {e.start}",
                         expected="UTF-8", found=repr(raw[e.start:e.start + 4])) from None
      if line.strip():
        texts.append(line.rstrip("\r\n"))
  if not texts:
    raise InputError("no prompts (every line is blank)", f"--input={path}")
  return texts


def check_vocabulary(vocabulary: seqio.Vocabulary, cfg: ModelConfig, where: str) -> None:
  """The tokenizer must not produce ids the model has no embedding for."""
  size = getattr(vocabulary, "vocab_size", None)
  if size is not None and size > cfg.vocab_size:
    raise ConfigError("tokenizer larger than the model's vocabulary", where,
                      expected=f"<= {cfg.vocab_size} tokens", found=size)


def run(config: ml_collections.ConfigDict, *, input_path: str, output_path: str,
        hf_dir: str | None = None, workdir: str | None = None, step: int | None = None,
        vocab: str | None = None, batch_size: int = 16, overwrite: bool = True) -> None:
  """Reads prompts, generates in batches of ``batch_size`` and writes JSON lines."""
  from irl_lm.training.config import base_config, validate
  dec = config.decoding
  full = base_config()
  full.decoding = dec
  validate(full)
  if batch_size < 1:
    raise ConfigError("value out of range", "--batch_size", expected="value >= 1",
                      found=batch_size)
  if os.path.exists(output_path) and not overwrite:
    raise ConfigError("the output file exists; pass --overwrite to replace it",
                      f"--output={output_path}")
  texts = read_prompts(input_path)
  mesh = shd.make_mesh() if jax.device_count() > 1 else None
  model, params, target, vocabulary = load(hf_dir, workdir, step, vocab, dec.ilql_beta != 0,
                                           mesh)
  cfg: ModelConfig = model.cfg
  where = f"--vocab={vocab}" if vocab else f"the tokenizer of {hf_dir or workdir}"
  check_vocabulary(vocabulary, cfg, where)
  if hf_dir is not None:
    check_special_tokens(vocabulary, checkpoint_dir(hf_dir), f"--hf_dir={hf_dir}, {where}")
  rows = [encode_prompt(vocabulary, t, cfg.kind) for t in texts]
  width = max(len(r) for r in rows)
  eos = vocabulary.eos_id if dec.eos_id is None else dec.eos_id
  kw = generate_kwargs(dec)
  rng = kw.pop("rng")
  with open(output_path, "w", encoding="utf-8") as out, \
       tqdm.tqdm(total=len(texts), unit="prompt", desc="generate") as bar:
    for start in range(0, len(texts), batch_size):
      chunk = texts[start:start + batch_size]
      batch = prompt_batch(rows[start:start + batch_size], cfg.kind, width, batch_size,
                           cfg.pad_id)
      res = generate(model, params, batch, rng=jax.random.fold_in(rng, start),
                     target_heads=target, mesh=mesh, **kw)
      tokens, scores, lengths = (np.asarray(x) for x in res)
      for i, text in enumerate(chunk):
        samples = [decode_row(vocabulary, tokens[i, j], eos, int(lengths[i, j]))
                   for j in range(tokens.shape[1])]
        out.write(json.dumps({"prompt": text, "samples": samples,
                              "scores": [float(s) for s in scores[i]]}) + "\n")
      bar.update(len(chunk))


def main(argv: Sequence[str]) -> None:
  cli.no_arguments(list(argv))
  run(_CONFIG.value, input_path=_INPUT.value, output_path=_OUTPUT.value, hf_dir=_HF_DIR.value,
      workdir=_WORKDIR.value, step=_STEP.value, vocab=_VOCAB.value, batch_size=_BATCH.value,
      overwrite=_OVERWRITE.value)


if __name__ == "__main__":
  cli.run(main)
