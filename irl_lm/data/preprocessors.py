"""seqio preprocessors: text formatting, TSV parsing, and tokenisation with rewards and action weights.

`tokenize_and_label` is the last preprocessor of every irl_lm task. It turns text
examples into the task features the feature converters read:

* ``inputs``: int32 prompt tokens (+ EOS);
* ``targets``: int32 response tokens (+ EOS), all turns after the prompt for multi-turn rows;
* ``weights``: int32, 1 on action tokens (the whole response of a single-turn row,
  including its EOS), 0 on environment turns;
* ``rewards``: float32, aligned with ``targets``: a turn's reward sits on its last
  token, so a sequence reward sits on the response's EOS;
* ``truncated``: int32, aligned with ``targets``: 1 on every position of an episode that
  did not end (``done`` false, or cut to the targets length), else 0. Such an episode
  has no EOS and ends in a weight-0 slot, the state after its last action, which the
  losses bootstrap from.
"""
import re
from collections.abc import Mapping, Sequence

import seqio
import tensorflow as tf

from irl_lm.data.vocabularies import EmbeddedVocabulary, HfTokenizerVocabulary, IdVocabulary

_FIELD = re.compile(r"\{(\w+)\}")
AUTOTUNE = tf.data.AUTOTUNE


def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  """The standard `output_features` of an irl_lm task: inputs and targets with EOS."""
  return {"inputs": seqio.Feature(vocabulary, add_eos=True),
          "targets": seqio.Feature(vocabulary, add_eos=True)}


def _render(template: str, ex: Mapping[str, tf.Tensor]) -> tf.Tensor:
  parts = []
  for i, piece in enumerate(_FIELD.split(template)):
    if i % 2:
      parts.append(ex[piece])
    elif piece:
      parts.append(tf.constant(piece))
  return tf.strings.join(parts) if parts else tf.constant("")


def format_text(dataset: tf.data.Dataset, inputs: str, targets: str) -> tf.data.Dataset:
  """Builds "inputs"/"targets" strings from `{field}` templates, e.g. ``"summarize: {document}"``."""
  return dataset.map(lambda ex: {"inputs": _render(inputs, ex), "targets": _render(targets, ex)},
                     num_parallel_calls=AUTOTUNE)


def parse_tsv(dataset: tf.data.Dataset, field_names: Sequence[str],
              field_delim: str = "\t") -> tf.data.Dataset:
  """Splits each text line into named string fields (no quoting)."""
  def parse(line):
    values = tf.io.decode_csv(line, record_defaults=[""] * len(field_names),
                              field_delim=field_delim, use_quote_delim=False)
    return dict(zip(field_names, values))
  return dataset.map(parse, num_parallel_calls=AUTOTUNE)


# Vocabularies whose encode_tf takes a vector of strings and returns a RaggedTensor: all
# turns of a row are encoded in one call (a tf.map_fn over turns was the input pipeline's
# bottleneck on multi-turn data).
_ENCODES_VECTORS = (EmbeddedVocabulary, HfTokenizerVocabulary, IdVocabulary,
                    seqio.SentencePieceVocabulary)


def _encode_turns(vocabulary: seqio.Vocabulary, texts: tf.Tensor) -> tf.RaggedTensor:
  """int32 token ids of each turn of ``texts`` [turns], as a RaggedTensor [turns, None]."""
  if isinstance(vocabulary, _ENCODES_VECTORS):
    return tf.cast(vocabulary.encode_tf(texts), tf.int32)
  return tf.map_fn(lambda t: _encode(vocabulary, t), texts,
                   fn_output_signature=tf.RaggedTensorSpec([None], tf.int32))


def _encode(vocabulary: seqio.Vocabulary, text: tf.Tensor) -> tf.Tensor:
  return tf.cast(vocabulary.encode_tf(text), tf.int32)


def _trim(tokens: tf.Tensor, max_len: int | None, eos: int | None) -> tf.Tensor:
  if max_len is not None:
    tokens = tokens[:max_len - 1 if eos is not None else max_len]
  if eos is not None:
    tokens = tf.concat([tokens, [eos]], 0)
  return tokens


Labelled = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]


def _label(pieces: tf.RaggedTensor, is_action: tf.Tensor, turn_rewards: tf.Tensor,
           eos: int | None, done: tf.Tensor) -> Labelled:
  """Flattens tokenised turns into (tokens, weights, rewards, truncated).

  A finished episode (``done``) gets EOS, which joins its last turn, unless its text
  already ends in EOS (a chat template that writes it); an unfinished one gets a
  weight-0 slot instead (token 0, reward 0): the state after its last token.
  """
  tokens = pieces.flat_values
  lengths = tf.cast(pieces.row_lengths(), tf.int32)
  ended = tf.cast(done, tf.int32)
  if eos is not None:
    has_eos = tf.cast(tf.reduce_any(tf.equal(tokens[-1:], eos)), tf.int32)
    add = ended * (1 - has_eos)
    tokens = tf.concat([tokens, tf.fill([add], eos)], 0)
    lengths += add * tf.one_hot(tf.size(lengths) - 1, tf.size(lengths), dtype=tf.int32)
  weights = tf.repeat(is_action, lengths)
  nonempty = lengths > 0
  ends = tf.boolean_mask(tf.cumsum(lengths) - 1, nonempty)
  rewards = tf.scatter_nd(ends[:, None], tf.boolean_mask(turn_rewards, nonempty),
                          tf.shape(tokens))
  slot = 1 - ended
  tokens = tf.concat([tokens, tf.zeros([slot], tf.int32)], 0)
  weights = tf.concat([weights, tf.zeros([slot], tf.int32)], 0)
  rewards = tf.concat([rewards, tf.zeros([slot])], 0)
  return tokens, weights, rewards, tf.fill(tf.shape(tokens), slot)


def _truncate(tokens: tf.Tensor, weights: tf.Tensor, rewards: tf.Tensor, truncated: tf.Tensor,
              max_len: int) -> Labelled:
  """Cuts a row longer than `max_len` into an unfinished episode.

  Keeps `max_len` tokens (no EOS); the last one becomes a weight-0 slot, the state after
  the last kept action, and the rewards from it on are dropped: the bootstrap from that
  state stands for them.
  """
  def cut():
    keep = max_len - 1
    return (tokens[:max_len], tf.concat([weights[:keep], [0]], 0),
            tf.concat([rewards[:keep], [0.0]], 0), tf.ones([max_len], tf.int32))

  return tf.cond(tf.size(tokens) > max_len, cut,
                 lambda: (tokens, weights, rewards, truncated))


def tokenize_and_label(dataset: tf.data.Dataset, output_features: Mapping[str, seqio.Feature],
                       sequence_length: Mapping[str, int] | None = None) -> tf.data.Dataset:
  """Tokenises "inputs" and the response into the task features (see the module docstring).

  Reads either "targets" (a string; optional float "reward", default 0) or the
  multi-turn columns "turn_texts", "turn_is_action", "turn_rewards" (from the
  JSONL source), and an optional "done" (default true). Appends EOS to finished
  episodes where the output feature asks for it, truncates the inputs to
  `sequence_length` keeping their EOS and cuts longer targets into unfinished
  episodes (see `_truncate`). Keeps "inputs_pretokenized" and "targets_pretokenized"
  for evaluation.
  """
  inputs_feature, targets_feature = output_features["inputs"], output_features["targets"]
  lengths = sequence_length or {}
  inputs_eos = inputs_feature.vocabulary.eos_id if inputs_feature.add_eos else None
  targets_eos = targets_feature.vocabulary.eos_id if targets_feature.add_eos else None

  def fn(ex):
    ex = dict(ex)
    inputs_text = ex.pop("inputs")
    done = tf.cast(ex.pop("done", True), tf.bool)
    if "turn_texts" in ex:
      texts = ex.pop("turn_texts")
      is_action = tf.cast(ex.pop("turn_is_action"), tf.int32)
      turn_rewards = tf.cast(ex.pop("turn_rewards"), tf.float32)
      targets_text = ex.pop("targets", None)
      if targets_text is None:
        targets_text = tf.strings.reduce_join(texts)
    else:
      targets_text = ex.pop("targets")
      texts = tf.reshape(targets_text, [1])
      is_action = tf.ones([1], tf.int32)
      turn_rewards = tf.reshape(tf.cast(ex.pop("reward", 0.0), tf.float32), [1])
    pieces = _encode_turns(targets_feature.vocabulary, texts)
    labelled = _label(pieces, is_action, turn_rewards, targets_eos, done)
    if lengths.get("targets") is not None:
      labelled = _truncate(*labelled, lengths["targets"])
    targets, weights, rewards, truncated = labelled
    ex.update(
        inputs=_trim(_encode(inputs_feature.vocabulary, inputs_text), lengths.get("inputs"),
                     inputs_eos),
        targets=targets, weights=weights, rewards=rewards, truncated=truncated,
        inputs_pretokenized=inputs_text, targets_pretokenized=targets_text)
    return ex

  return dataset.map(fn, num_parallel_calls=AUTOTUNE)
