"""seqio preprocessors: text formatting, TSV parsing, and tokenisation with rewards and action weights.

`tokenize_and_label` is the last preprocessor of every irl_lm task. It turns text
examples into the task features the feature converters read:

* ``inputs``: int32 prompt tokens (+ EOS);
* ``targets``: int32 response tokens (+ EOS), all turns after the prompt for multi-turn rows;
* ``weights``: int32, 1 on action tokens (the whole response of a single-turn row,
  including its EOS), 0 on environment turns;
* ``rewards``: float32, aligned with ``targets``: a turn's reward sits on its last
  token, so a sequence reward sits on the response's EOS.
"""
import re
from collections.abc import Mapping, Sequence

import seqio
import tensorflow as tf

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


def _encode(vocabulary: seqio.Vocabulary, text: tf.Tensor) -> tf.Tensor:
  return tf.cast(vocabulary.encode_tf(text), tf.int32)


def _trim(tokens: tf.Tensor, max_len: int | None, eos: int | None) -> tf.Tensor:
  if max_len is not None:
    tokens = tokens[:max_len - 1 if eos is not None else max_len]
  if eos is not None:
    tokens = tf.concat([tokens, [eos]], 0)
  return tokens


def _label(pieces: tf.RaggedTensor, is_action: tf.Tensor, turn_rewards: tf.Tensor,
           eos: int | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Flattens tokenised turns into (tokens, weights, rewards); EOS joins the last turn."""
  tokens = pieces.flat_values
  lengths = tf.cast(pieces.row_lengths(), tf.int32)
  if eos is not None:
    tokens = tf.concat([tokens, [eos]], 0)
    lengths += tf.one_hot(tf.size(lengths) - 1, tf.size(lengths), dtype=tf.int32)
  weights = tf.repeat(is_action, lengths)
  nonempty = lengths > 0
  ends = tf.boolean_mask(tf.cumsum(lengths) - 1, nonempty)
  rewards = tf.scatter_nd(ends[:, None], tf.boolean_mask(turn_rewards, nonempty),
                          tf.shape(tokens))
  return tokens, weights, rewards


def _truncate(tokens: tf.Tensor, weights: tf.Tensor, rewards: tf.Tensor, max_len: int,
              eos: int | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Cuts to `max_len` (keeping a final EOS); cut-off rewards move to the last kept action token."""
  keep = max_len - 1 if eos is not None else max_len

  def cut():
    kept_tokens = _trim(tokens, max_len, eos)
    kept_weights = weights[:max_len]
    kept_rewards = tf.concat([rewards[:keep], tf.zeros([max_len - keep])], 0)
    actions = tf.where(kept_weights > 0)[:, 0]
    tail = tf.reduce_sum(rewards[keep:])
    kept_rewards = tf.cond(
        tf.size(actions) > 0,
        lambda: tf.tensor_scatter_nd_add(kept_rewards, [[tf.reduce_max(actions)]], [tail]),
        lambda: kept_rewards)
    return kept_tokens, kept_weights, kept_rewards

  return tf.cond(tf.size(tokens) > max_len, cut, lambda: (tokens, weights, rewards))


def tokenize_and_label(dataset: tf.data.Dataset, output_features: Mapping[str, seqio.Feature],
                       sequence_length: Mapping[str, int] | None = None) -> tf.data.Dataset:
  """Tokenises "inputs" and the response into the task features (see the module docstring).

  Reads either "targets" (a string; optional float "reward", default 0) or the
  multi-turn columns "turn_texts", "turn_is_action", "turn_rewards" (from the
  JSONL source). Appends EOS where the output feature asks for it and truncates to
  `sequence_length` keeping the EOS. Keeps "inputs_pretokenized" and
  "targets_pretokenized" for evaluation.
  """
  inputs_feature, targets_feature = output_features["inputs"], output_features["targets"]
  lengths = sequence_length or {}
  inputs_eos = inputs_feature.vocabulary.eos_id if inputs_feature.add_eos else None
  targets_eos = targets_feature.vocabulary.eos_id if targets_feature.add_eos else None

  def fn(ex):
    ex = dict(ex)
    inputs_text = ex.pop("inputs")
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
    pieces = tf.map_fn(lambda t: _encode(targets_feature.vocabulary, t), texts,
                       fn_output_signature=tf.RaggedTensorSpec([None], tf.int32))
    targets, weights, rewards = _label(pieces, is_action, turn_rewards, targets_eos)
    if lengths.get("targets") is not None:
      targets, weights, rewards = _truncate(targets, weights, rewards, lengths["targets"],
                                            targets_eos)
    ex.update(
        inputs=_trim(_encode(inputs_feature.vocabulary, inputs_text), lengths.get("inputs"),
                     inputs_eos),
        targets=targets, weights=weights, rewards=rewards,
        inputs_pretokenized=inputs_text, targets_pretokenized=targets_text)
    return ex

  return dataset.map(fn, num_parallel_calls=AUTOTUNE)
