"""Vocabularies: SentencePiece (T5), a Hugging Face tokenizer.json (GPT-2/Llama), embedded words,
and token ids written as text (`IdVocabulary`, for data that needs no tokenizer).

All follow seqio's convention that id 0 is padding. For byte-level BPE files id 0
is a real token (GPT-2's "!"): the pipeline never infers padding from token
values, and decoding stops at EOS (every row the pipeline makes ends its text with
EOS), so decode up to EOS rather than stripping 0s.
"""
import functools
import json
import os

import numpy as np
import seqio
import sentencepiece
import tensorflow as tf
import tokenizers

from irl_lm.data import embedded
from irl_lm.data.chat import special_tokens
from irl_lm.data.embedded.tokens import TOKEN_RE, join_tokens, split_tokens
from irl_lm.errors import ConfigError, InputError, MissingError

VOCABULARY_KINDS = ("sentencepiece", "hf_tokenizer", "embedded")
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")
_TF_TOKEN_RE = r"(####|[0-9]|[^\sa-z0-9#]|#)"  # RE2 twin of embedded.tokens.TOKEN_RE
_MAX_DIGIT_MERGES = 5  # joins numbers of up to 32 digits when decoding in TF
_LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"


def _read_vocabulary_file(path: str, what: str) -> bytes:
  """The bytes of a vocabulary file; MissingError / InputError naming it."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise MissingError(f"{what} not found", where=path) from None
  except OSError as e:
    raise InputError(f"cannot read {what}: {e.strerror or e}", where=path) from None
  if data.startswith(_LFS_POINTER_PREFIX):
    raise InputError(f"{os.path.basename(path)} is a Git LFS pointer, not the {what}; "
                     "run `git lfs pull`", where=path)
  if not data:
    raise InputError(f"empty {what}", where=path)
  return data


class EmbeddedVocabulary(seqio.Vocabulary):
  """Word-level vocabulary of the embedded tasks: pad 0, eos 1, unk 2, then digits, punctuation, words."""

  def __init__(self):
    super().__init__(extra_ids=0)
    self.tokens = embedded.vocabulary_tokens()
    self._ids = {t: i for i, t in enumerate(self.tokens)}
    self._table = None

  @property
  def eos_id(self) -> int:
    return 1

  @property
  def unk_id(self) -> int:
    return 2

  @property
  def bos_id(self) -> None:
    return None

  @property
  def _base_vocab_size(self) -> int:
    return len(self.tokens)

  def _encode(self, s: str) -> list[int]:
    return [self._ids.get(t, self.unk_id) for t in split_tokens(s)]

  def _decode(self, ids) -> str:
    words = [self.tokens[i] for i in ids if i not in (self.pad_id, self.eos_id)]
    return join_tokens(words)

  # Not converted by autograph: converting this method while tf.data traces preprocessors
  # in parallel failed intermittently ("takes 1 positional argument but 2 were given").
  @tf.autograph.experimental.do_not_convert
  def _lookup_table(self) -> tf.lookup.StaticHashTable:
    if self._table is None:
      with tf.init_scope():  # created eagerly even when first used inside a tf.function
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.tokens), tf.range(len(self.tokens), dtype=tf.int32))
        self._table = tf.lookup.StaticHashTable(init, default_value=self.unk_id)
    return self._table

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor | tf.RaggedTensor:
    spaced = tf.strings.regex_replace(tf.strings.lower(s, encoding="utf-8"), _TF_TOKEN_RE, r" \1 ")
    pieces = tf.strings.split(spaced)
    table = self._lookup_table()
    if isinstance(pieces, tf.RaggedTensor):
      return tf.ragged.map_flat_values(table.lookup, pieces)
    return table.lookup(pieces)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.convert_to_tensor(ids)
    keep = tf.logical_and(tf.not_equal(ids, self.pad_id), tf.not_equal(ids, self.eos_id))
    words = tf.gather(tf.constant(self.tokens), tf.ragged.boolean_mask(ids, keep))
    text = tf.strings.reduce_join(words, axis=-1, separator=" ")
    for _ in range(_MAX_DIGIT_MERGES):
      text = tf.strings.regex_replace(text, r"([0-9]) ([0-9])", r"\1\2")
    return text

  def hf_tokenizer(self) -> tokenizers.Tokenizer:
    """The same vocabulary as a Hugging Face tokenizer (``tokenizer.json``): lower-cased,
    split by the same rule, decoded with one space between tokens but none between digits,
    padding and EOS dropped as special tokens; ``save_tokenizer`` writes it with its config."""
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {t: i for i, t in enumerate(self.tokens)}, unk_token=self.tokens[self.unk_id]))
    tok.normalizer = tokenizers.normalizers.Lowercase()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
        tokenizers.pre_tokenizers.WhitespaceSplit(),
        tokenizers.pre_tokenizers.Split(tokenizers.Regex(TOKEN_RE.pattern), "isolated")])
    tok.decoder = tokenizers.decoders.Sequence([
        tokenizers.decoders.WordPiece(prefix="\ue000", cleanup=False),  # joins with spaces
        tokenizers.decoders.Fuse(),
        tokenizers.decoders.Replace(tokenizers.Regex("(?<=[0-9]) (?=[0-9])"), "")])
    tok.add_special_tokens([self.tokens[self.pad_id], self.tokens[self.eos_id]])
    return tok

  def save_tokenizer(self, directory: str) -> list[str]:
    """Writes ``tokenizer.json`` and ``tokenizer_config.json`` (transformers' fast tokenizer)
    into ``directory``; returns the file names."""
    self.hf_tokenizer().save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
      json.dump({"tokenizer_class": "PreTrainedTokenizerFast",
                 "pad_token": self.tokens[self.pad_id], "eos_token": self.tokens[self.eos_id],
                 "clean_up_tokenization_spaces": False,  # no unk_token: decoding keeps <unk>
                 "model_max_length": 1 << 20}, f, indent=2)
    return ["tokenizer.json", "tokenizer_config.json"]

  def __eq__(self, other) -> bool:
    return isinstance(other, EmbeddedVocabulary) and self.tokens == other.tokens

  def __hash__(self) -> int:
    return hash(self.tokens)


class HfTokenizerVocabulary(seqio.Vocabulary):
  """A seqio.Vocabulary around a local Hugging Face `tokenizer.json` (no special tokens added).

  `eos_token` defaults to the ``eos_token`` of a ``tokenizer_config.json`` beside the
  file, else the first of <|endoftext|>, </s>, <|end_of_text|>, <eos> that the file
  defines. `template_prefix` holds the ids the tokenizer's template puts before a
  text (its BOS, if it adds one); `bos_id` is that BOS or None.
  """

  def __init__(self, path: str, eos_token: str | None = None):
    super().__init__(extra_ids=0)
    data = _read_vocabulary_file(path, "Hugging Face tokenizer file")
    self.path = path
    try:
      self._tokenizer = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    except UnicodeDecodeError as e:
      raise InputError(f"malformed tokenizer.json: invalid UTF-8 at byte offset {e.start}",
                       where=path) from None
    except Exception as e:  # tokenizers raises a bare Exception ("expected value at line 1 ...")
      raise InputError(f"malformed tokenizer.json: {e}", where=path) from None
    self.special_tokens = special_tokens(os.path.dirname(path) or ".")
    eos_token = eos_token or self.special_tokens.get("eos_token")
    candidates = (eos_token,) if eos_token else _EOS_CANDIDATES
    ids = [self._tokenizer.token_to_id(t) for t in candidates]
    found = [i for i in ids if i is not None]
    if not found:
      raise InputError(f"no EOS token among {candidates}; pass eos_token=", where=path)
    self._eos_id = found[0]
    self._unk_id = self._tokenizer.token_to_id("<unk>")
    self.template_prefix = self._template_prefix()

  def _template_prefix(self) -> tuple[int, ...]:
    plain = self._tokenizer.encode("a", add_special_tokens=False).ids
    framed = self._tokenizer.encode("a", add_special_tokens=True).ids
    for i in range(len(framed) - len(plain) + 1):
      if framed[i:i + len(plain)] == plain:
        return tuple(framed[:i])
    return ()

  def token_id(self, token: str) -> int | None:
    """The id of a token string, or None if the tokenizer has no such token."""
    return self._tokenizer.token_to_id(token)

  @property
  def eos_id(self) -> int:
    return self._eos_id

  @property
  def unk_id(self) -> int | None:
    return self._unk_id

  @property
  def bos_id(self) -> int | None:
    return self.template_prefix[-1] if self.template_prefix else None

  @property
  def _base_vocab_size(self) -> int:
    return self._tokenizer.get_vocab_size(with_added_tokens=True)

  def _encode(self, s: str) -> list[int]:
    return self._tokenizer.encode(s, add_special_tokens=False).ids

  def encode_with_template(self, s: str) -> list[int]:
    """Ids with the file's special-token template applied (e.g. Llama's BOS, T5's EOS)."""
    return self._tokenizer.encode(s, add_special_tokens=True).ids

  def _decode(self, ids) -> str:
    return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor | tf.RaggedTensor:
    s = tf.convert_to_tensor(s)

    def encode_batch(texts):
      encoded = self._tokenizer.encode_batch(
          [t.decode("utf-8") for t in texts.numpy()], add_special_tokens=False)
      flat = np.array([i for e in encoded for i in e.ids], dtype=np.int32)
      return flat, np.array([len(e.ids) for e in encoded], dtype=np.int64)

    flat, lengths = tf.py_function(encode_batch, [tf.reshape(s, [-1])], [tf.int32, tf.int64])
    flat.set_shape([None])
    lengths.set_shape([None])
    if s.shape.rank == 0:
      return flat
    return tf.RaggedTensor.from_row_lengths(flat, lengths)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.convert_to_tensor(ids)

    def decode_batch(batch):
      rows = batch.numpy().reshape(-1, batch.shape[-1])
      return np.array([self.decode(r) for r in rows], dtype=object)

    text = tf.py_function(decode_batch, [ids], tf.string)
    return tf.reshape(text, tf.shape(ids)[:-1])

  def __eq__(self, other) -> bool:
    return isinstance(other, HfTokenizerVocabulary) and (self.path, self.eos_id) == (
        other.path, other.eos_id)

  def __hash__(self) -> int:
    return hash((self.path, self.eos_id))


class IdVocabulary(seqio.Vocabulary):
  """Token ids as text: ``"17 4 250"`` <-> ``[17, 4, 250]``, for any model's vocabulary.

  Lets token-id data (e.g. a teacher model's samples) go through the seqio
  pipeline with no tokenizer. Every id in ``[0, size)`` is a token; ``eos_id``
  is the model's.
  """

  def __init__(self, size: int, eos_id: int):
    super().__init__(extra_ids=0)
    self._size, self._eos_id = int(size), int(eos_id)

  @property
  def eos_id(self) -> int:
    return self._eos_id

  @property
  def unk_id(self) -> None:
    return None

  @property
  def _base_vocab_size(self) -> int:
    return self._size

  def _encode(self, s: str) -> list[int]:
    return [int(t) for t in s.split()]

  def _decode(self, ids) -> str:
    return " ".join(str(int(i)) for i in ids)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    return tf.strings.to_number(tf.strings.split(s), tf.int32)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    return tf.strings.reduce_join(tf.strings.as_string(ids), axis=-1, separator=" ")

  def __eq__(self, other) -> bool:
    return isinstance(other, IdVocabulary) and (self._size, self._eos_id) == (
        other._size, other._eos_id)

  def __hash__(self) -> int:
    return hash((self._size, self._eos_id))


@functools.lru_cache(maxsize=None)
def make_vocabulary(kind: str, path: str | None = None) -> seqio.Vocabulary:
  """A vocabulary of `kind` ("sentencepiece", "hf_tokenizer" or "embedded").

  `path` is a local SentencePiece `.model` file or a Hugging Face `tokenizer.json`
  (or a directory holding one); "embedded" takes no path. Nothing is downloaded.
  """
  if kind == "embedded":
    if path:
      raise ConfigError("The embedded vocabulary is built in; it takes no path",
                        where=f"path={path!r}")
    return EmbeddedVocabulary()
  if kind not in VOCABULARY_KINDS:
    raise ConfigError(f"Unknown vocabulary kind {kind!r}; choose from {VOCABULARY_KINDS}")
  if not path:
    raise ConfigError(f"Vocabulary kind {kind!r} needs a local file path")
  if kind == "hf_tokenizer":
    if os.path.isdir(path):
      path = os.path.join(path, "tokenizer.json")
    return HfTokenizerVocabulary(path)
  _check_sentencepiece(path)
  return seqio.SentencePieceVocabulary(path)


def _check_sentencepiece(path: str) -> None:
  """Loads a SentencePiece model once now, so a bad file is named here, not at first use."""
  data = _read_vocabulary_file(path, "SentencePiece model")
  try:
    sentencepiece.SentencePieceProcessor(model_proto=data)
  except Exception as e:  # RuntimeError with a C++ location; its text is of no use
    raise InputError("malformed SentencePiece model (not a serialized ModelProto)",
                     where=path) from e
