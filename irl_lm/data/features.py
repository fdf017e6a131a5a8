"""The model batch: one table of its features, read by the feature converters, the run's
abstract batch (ahead-of-time compilation) and online IQLearn's policy rows.

Each feature has a dtype and a length: ``inputs`` (T5's encoder), ``targets`` (T5's
decoder) or ``row`` (a decoder-only row: inputs + targets). ``packed`` features exist
only when examples are packed (decoder-only rows always carry theirs); ``policy``
features are those a sampled policy row has (no rewards: the policy's are unknown).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Feature:
  name: str
  dtype: type
  length: str  # "inputs" | "targets" | "row"
  packed: bool = False
  policy: bool = True


ENCDEC = (
    Feature("encoder_input_tokens", np.int32, "inputs"),
    Feature("decoder_input_tokens", np.int32, "targets"),
    Feature("decoder_target_tokens", np.int32, "targets"),
    Feature("decoder_loss_weights", np.int32, "targets"),
    Feature("decoder_rewards", np.float32, "targets", policy=False),
    Feature("decoder_truncated", np.int32, "targets"),
    Feature("encoder_segment_ids", np.int32, "inputs", packed=True, policy=False),
    Feature("encoder_positions", np.int32, "inputs", packed=True, policy=False),
    Feature("decoder_segment_ids", np.int32, "targets", packed=True, policy=False),
    Feature("decoder_positions", np.int32, "targets", packed=True, policy=False),
)
DECODER = (
    Feature("decoder_input_tokens", np.int32, "row"),
    Feature("decoder_target_tokens", np.int32, "row"),
    Feature("decoder_loss_weights", np.int32, "row"),
    Feature("decoder_rewards", np.float32, "row", policy=False),
    Feature("decoder_truncated", np.int32, "row"),
    Feature("decoder_segment_ids", np.int32, "row"),
    Feature("decoder_positions", np.int32, "row"),
)
TABLES = {"encdec": ENCDEC, "decoder": DECODER}
# The features of a sampled policy row (online IQLearn), of either kind.
POLICY_FEATURES = frozenset(f.name for table in TABLES.values() for f in table if f.policy)


def batch_features(kind: str, pack: bool) -> tuple[Feature, ...]:
  """The features of a ``kind`` ("encdec" or "decoder") batch, packed or not."""
  return tuple(f for f in TABLES[kind] if pack or not f.packed)


def feature_lengths(kind: str, pack: bool, lengths: Mapping[str, int]) -> dict[str, int]:
  """``{feature: length}`` from the task lengths ``{"inputs": N, "targets": M}``."""
  sizes = {"inputs": lengths["inputs"], "targets": lengths["targets"],
           "row": lengths["inputs"] + lengths["targets"]}
  return {f.name: sizes[f.length] for f in batch_features(kind, pack)}
