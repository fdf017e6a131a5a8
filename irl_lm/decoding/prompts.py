"""Text in and out of ``generate``: the one prompt framing and the one row decoder.

Evaluation during training, the experiments and ``irl_lm.generate`` (from a run or an
export) all frame prompts with ``task_prompt`` / ``encode_prompt``, the framing the
training rows use (``irl_lm.data.framing``), build batches with ``prompt_batch`` and
read generated rows back with ``decode_row``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seqio

from irl_lm.data.framing import framing_for


def task_prompt(vocabulary: seqio.Vocabulary, inputs: Sequence[int], kind: str) -> list[int]:
  """The prompt a model generates from for a task's ``inputs`` (token ids ending in EOS):
  T5 encodes them as they are; decoder-only models get them framed as in training
  (`irl_lm.data.framing`)."""
  if kind == "encdec":
    return [int(i) for i in inputs]
  return framing_for(vocabulary).prompt(inputs)


def encode_prompt(vocabulary: seqio.Vocabulary, text: str, kind: str) -> list[int]:
  """Token ids of one prompt text, framed exactly as training frames a task's inputs
  (the same ids whether the model comes from a run or from its export)."""
  return task_prompt(vocabulary, list(vocabulary.encode(text)) + [vocabulary.eos_id], kind)


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
