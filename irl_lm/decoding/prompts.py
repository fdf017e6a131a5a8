"""Text in and out of ``generate``: the one prompt layout and the one row decoder.

Evaluation during training, the experiments and ``irl_lm.generate`` all build
their prompt batches with ``prompt_batch`` and read generated rows back with
``decode_row``, with any ``seqio.Vocabulary`` (``data.make_vocabulary``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seqio

from irl_lm.data.vocabularies import HfTokenizerVocabulary


def run_prompt(ids: Sequence[int], kind: str) -> list[int]:
  """A prompt laid out as irl_lm's data lays out training inputs.

  ``ids`` are the input tokens, ending in their EOS separator; decoder-only
  rows start with a 0 (the shifted-in position of the first token).
  """
  return ([] if kind == "encdec" else [0]) + [int(i) for i in ids]


def encode_prompt(vocabulary: seqio.Vocabulary, text: str, kind: str, eos_id: int,
                  run_layout: bool) -> list[int]:
  """Token ids of one prompt.

  ``run_layout``: for models trained by irl_lm (``run_prompt`` of the text and
  the vocabulary's EOS). Otherwise as the checkpoint's own tokenizer expects:
  a ``tokenizer.json`` applies its special-token template (e.g. EOS after T5
  inputs, BOS before Llama prompts); other vocabularies get ``eos_id`` after
  T5 inputs.
  """
  if run_layout:
    return run_prompt(list(vocabulary.encode(text)) + [vocabulary.eos_id], kind)
  if isinstance(vocabulary, HfTokenizerVocabulary):
    return vocabulary.encode_with_template(text)
  ids = [int(i) for i in vocabulary.encode(text)]
  return ids + [eos_id] if kind == "encdec" else ids


def prompt_batch(rows: Sequence[Sequence[int]], kind: str, width: int,
                 batch_size: int | None = None, pad_id: int = 0) -> dict[str, np.ndarray]:
  """Right-padded prompts for ``generate``; rows past ``width`` are cut.

  ``batch_size`` pads the batch with dummy one-token rows (one shape, one
  compilation). Decoder-only batches carry ``prompt_lengths``.
  """
  n = len(rows) if batch_size is None else batch_size
  tokens = np.full((n, width), pad_id, np.int32)
  lengths = np.ones((n,), np.int32)
  for i, row in enumerate(rows):
    row = list(row)[:width]
    tokens[i, :len(row)] = row
    lengths[i] = max(len(row), 1)
  if kind == "encdec":
    return {"encoder_input_tokens": tokens}
  return {"decoder_input_tokens": tokens, "prompt_lengths": lengths}


def decode_row(vocabulary: seqio.Vocabulary, tokens: np.ndarray, eos_id: int,
               length: int | None = None) -> str:
  """Text of one generated row: its first ``length`` tokens, up to (not including) EOS."""
  ids = [int(t) for t in (tokens if length is None else tokens[:length])]
  if eos_id in ids:
    ids = ids[:ids.index(eos_id)]
  return vocabulary.decode(ids)
