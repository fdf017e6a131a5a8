"""How a decoder-only example becomes one token sequence: the one framing of training,
evaluation, generation and online sampling.

A decoder row is ``start + prompt + response`` where the response ends in EOS (an
unfinished episode ends in its weight-0 slot instead); the model reads the row
without its last token and predicts it without its first. Two framings:

* **the tokenizer's own** (a Hugging Face ``tokenizer.json``): ``start`` is what the
  tokenizer's template puts before a text (Llama's ``<s>``, Llama 3's
  ``<|begin_of_text|>``, Gemma's ``<bos>``; nothing for GPT-2 and Qwen), and the prompt
  runs straight into the response, as ``tokenizer(prompt + response)`` encodes it
  (when the response starts at a word boundary, e.g. with a space for byte-level BPE).
  A prompt that already starts with the BOS (a chat template that renders it) gets no
  second one. With no BOS and an empty prompt the row starts with EOS (GPT-2's
  ``<|endoftext|>`` convention), so there is always a first token to read.
* **irl_lm's own** (every other vocabulary: models trained here from scratch):
  ``start`` is id 0 and the prompt keeps its EOS as a separator.

Encoder-decoders (T5) have no framing: the prompt (with EOS) is the encoder's input and
the decoder starts from the model's decoder start id.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import seqio
import tensorflow as tf

from irl_lm.data.vocabularies import HfTokenizerVocabulary


@dataclasses.dataclass(frozen=True)
class Framing:
  """``start`` tokens, whether the prompt keeps its EOS, and the EOS id."""

  start: tuple[int, ...]
  prompt_eos: bool
  eos_id: int

  def prompt(self, inputs: Sequence[int]) -> list[int]:
    """The tokens a generation starts from, for a task's ``inputs`` (which end in EOS)."""
    ids = [int(i) for i in inputs]
    if not self.prompt_eos and ids and ids[-1] == self.eos_id:
      ids = ids[:-1]
    start = list(self.start)
    if not self.prompt_eos and start and ids[:len(start)] == start:
      start = []
    if not start and not ids:
      start = [self.eos_id]
    return start + ids

  def prompt_tf(self, inputs: tf.Tensor) -> tf.Tensor:
    """``prompt`` in a tf.data graph."""
    ids = tf.cast(inputs, tf.int32)
    k = len(self.start)
    start = tf.constant(self.start, tf.int32)
    if self.prompt_eos:
      return tf.concat([start, ids], 0)
    ids = tf.cond(tf.reduce_any(tf.equal(ids[-1:], self.eos_id)), lambda: ids[:-1], lambda: ids)
    if k:
      head = tf.pad(ids[:k], [[0, k - tf.size(ids[:k])]], constant_values=-1)
      has = tf.reduce_all(tf.equal(head, start))
      return tf.cond(has, lambda: ids, lambda: tf.concat([start, ids], 0))
    return tf.cond(tf.size(ids) > 0, lambda: ids,
                   lambda: tf.constant([self.eos_id], tf.int32))


def framing_for(vocabulary: seqio.Vocabulary) -> Framing:
  """The framing of decoder rows tokenised with ``vocabulary`` (see the module docstring)."""
  if isinstance(vocabulary, HfTokenizerVocabulary):
    return Framing(start=vocabulary.template_prefix, prompt_eos=False,
                   eos_id=vocabulary.eos_id)
  return Framing(start=(0,), prompt_eos=True, eos_id=vocabulary.eos_id)
