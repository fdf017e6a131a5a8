"""seqio feature converters that carry per-token rewards and action weights into model batches.

Task features: "inputs", "targets" (int32), "rewards" (float32), "weights" and
"truncated" (int32), the last three aligned with "targets" (see
`preprocessors.tokenize_and_label`; tasks without them get rewards 0, weights 1 and
truncated 0 on every target token).

Encoder-decoder (`EncDecRewardFeatureConverter`): encoder_input_tokens,
decoder_input_tokens, decoder_target_tokens, decoder_loss_weights, decoder_rewards,
decoder_truncated, plus encoder/decoder segment ids and positions when packing.

Decoder-only (`DecoderRewardFeatureConverter`): each example is one framed sequence
``start + prompt + response`` (`irl_lm.data.framing`: the tokenizer's BOS and no
separator, or irl_lm's own ``0 + prompt + EOS + response``); decoder_input_tokens is
that sequence without its last token and decoder_target_tokens without its first, so
a packed row keeps each example's own start. decoder_loss_weights, decoder_rewards
and decoder_truncated are 0 on the prompt; decoder_segment_ids and decoder_positions
are always present (segment 0 marks padding).

Padding is id 0 / weight 0 / reward 0 everywhere.
"""
from collections.abc import Mapping

import seqio
import tensorflow as tf

from irl_lm.data.features import TABLES, feature_lengths
from irl_lm.data.framing import Framing
from irl_lm.data.packing import pack_dataset, pad_dataset
from irl_lm.errors import ConfigError

Spec = seqio.FeatureConverter.FeatureSpec
AUTOTUNE = tf.data.AUTOTUNE
_LABELS = ("targets", "rewards", "weights", "truncated")
_TASK_FEATURES = {"inputs": Spec(dtype=tf.int32), "targets": Spec(dtype=tf.int32),
                  "rewards": Spec(dtype=tf.float32), "weights": Spec(dtype=tf.int32),
                  "truncated": Spec(dtype=tf.int32)}


def _specs(kind: str, packed: bool) -> dict[str, Spec]:
  """seqio specs of the batch table's features (`features.py`): unpacked, or packing-only."""
  return {f.name: Spec(dtype=tf.as_dtype(f.dtype)) for f in TABLES[kind] if f.packed == packed}


def add_default_labels(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Adds rewards (0.0), weights (1) and truncated (0) per target token where missing."""
  spec = ds.element_spec
  if all(k in spec for k in _LABELS):
    return ds

  def add(ex):
    ex = dict(ex)
    ex.setdefault("rewards", tf.zeros(tf.shape(ex["targets"]), tf.float32))
    ex.setdefault("weights", tf.ones(tf.shape(ex["targets"]), tf.int32))
    ex.setdefault("truncated", tf.zeros(tf.shape(ex["targets"]), tf.int32))
    return ex
  return ds.map(add, num_parallel_calls=AUTOTUNE)


class _RewardFeatureConverter(seqio.FeatureConverter):
  """Shared `__call__`: accepts {"inputs": N, "targets": M} and fills in the label lengths."""

  TASK_FEATURES = _TASK_FEATURES

  def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    lengths = dict(task_feature_lengths)
    for label in _LABELS[1:]:
      lengths.setdefault(label, lengths["targets"])
    return super().__call__(add_default_labels(ds), lengths)

  def _rows(self, ds: tf.data.Dataset, groups, lengths) -> tf.data.Dataset:
    return (pack_dataset if self.pack else pad_dataset)(ds, groups, lengths)


class EncDecRewardFeatureConverter(_RewardFeatureConverter):
  """Encoder-decoder (T5) batches with decoder_rewards; see the module docstring."""

  MODEL_FEATURES = _specs("encdec", packed=False)
  PACKING_FEATURE_DTYPES = {k: v.dtype for k, v in _specs("encdec", packed=True).items()}

  def _convert_features(self, ds: tf.data.Dataset,
                        task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    groups = {"inputs": ("inputs",), "targets": _LABELS}
    ds = self._rows(ds, groups, {k: task_feature_lengths[k] for k in groups})

    def convert(ex):
      out = {
          "encoder_input_tokens": ex["inputs"],
          "decoder_target_tokens": ex["targets"],
          "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(
              ex["targets"], sequence_id=ex["targets_segment_ids"], bos_id=self.bos_id),
          "decoder_loss_weights": ex["weights"],
          "decoder_rewards": ex["rewards"],
          "decoder_truncated": ex["truncated"],
      }
      if self.pack:
        out.update(encoder_segment_ids=ex["inputs_segment_ids"],
                   encoder_positions=ex["inputs_positions"],
                   decoder_segment_ids=ex["targets_segment_ids"],
                   decoder_positions=ex["targets_positions"])
      return out

    return ds.map(convert, num_parallel_calls=AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    return feature_lengths("encdec", self.pack, task_feature_lengths)


class DecoderRewardFeatureConverter(_RewardFeatureConverter):
  """Decoder-only (GPT-2/Llama) batches of framed prompt ++ response; see the module docstring."""

  MODEL_FEATURES = _specs("decoder", packed=False)
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, framing: Framing, pack: bool = False):
    self.framing = framing
    super().__init__(pack=pack)

  def _convert_features(self, ds: tf.data.Dataset,
                        task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    def frame(ex):
      head = self.framing.prompt_tf(ex["inputs"])
      context = tf.size(head) - 1  # predictions before the first response token
      labels = lambda x, dtype: tf.concat([tf.zeros([context], dtype), x], 0)
      return {"targets": tf.concat([head[1:], ex["targets"]], 0),
              "inputs": tf.concat([head, ex["targets"][:-1]], 0),
              "rewards": labels(ex["rewards"], tf.float32),
              "weights": labels(ex["weights"], tf.int32),
              "truncated": labels(ex["truncated"], tf.int32)}

    length = task_feature_lengths["inputs"] + task_feature_lengths["targets"]
    ds = self._rows(ds.map(frame, num_parallel_calls=AUTOTUNE),
                    {"targets": ("inputs",) + _LABELS}, {"targets": length})

    def convert(ex):
      return {
          "decoder_target_tokens": ex["targets"],
          "decoder_input_tokens": ex["inputs"],
          "decoder_loss_weights": ex["weights"],
          "decoder_rewards": ex["rewards"],
          "decoder_truncated": ex["truncated"],
          "decoder_segment_ids": ex["targets_segment_ids"],
          "decoder_positions": ex["targets_positions"],
      }

    return ds.map(convert, num_parallel_calls=AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    return feature_lengths("decoder", self.pack, task_feature_lengths)


MODEL_KINDS = ("encdec", "decoder")


def get_feature_converter(model_kind: str, pack: bool = False,
                          framing: Framing | None = None) -> _RewardFeatureConverter:
  """The converter for "encdec" (T5) or "decoder" (GPT-2/Llama) models; decoders need the
  `framing` of their vocabulary (`framing.framing_for`)."""
  if model_kind == "encdec":
    return EncDecRewardFeatureConverter(pack=pack)
  if model_kind == "decoder":
    if framing is None:
      raise ValueError("decoder rows need a framing (irl_lm.data.framing_for(vocabulary))")
    return DecoderRewardFeatureConverter(framing, pack=pack)
  raise ConfigError(f"Unknown model kind {model_kind!r}; choose from {MODEL_KINDS}")
