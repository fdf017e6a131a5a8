"""Padding and greedy packing that carry any dtype (float rewards, token id 0 as a real token).

seqio's own packer infers lengths from non-zero values and casts to int32, which
would drop float rewards and byte-level BPE token 0, so this module packs by true
sequence length instead. Features come in groups that share a length and a
segmentation: a group is ``leader -> (member features...)``; each output row has
the members padded to the group length plus ``<leader>_segment_ids`` (1, 2, ... per
packed example, 0 on padding) and ``<leader>_positions``.
"""
from collections.abc import Mapping, Sequence

import tensorflow as tf

Groups = Mapping[str, Sequence[str]]
AUTOTUNE = tf.data.AUTOTUNE
_FLUSH = "_flush"


def _pad_to(x: tf.Tensor, length: int) -> tf.Tensor:
  x = tf.pad(x, [[0, length - tf.size(x)]])
  x.set_shape([length])
  return x


def _trimmed(ds: tf.data.Dataset, groups: Groups, lengths: Mapping[str, int]) -> tf.data.Dataset:
  return ds.map(lambda ex: {m: ex[m][:lengths[lead]] for lead, ms in groups.items() for m in ms},
                num_parallel_calls=AUTOTUNE)


def pad_dataset(ds: tf.data.Dataset, groups: Groups, lengths: Mapping[str, int]) -> tf.data.Dataset:
  """One example per row: trims/pads each group to its length and adds segment ids and positions."""
  def pad(ex):
    out = {}
    for lead, members in groups.items():
      n = tf.size(ex[lead])
      for m in members:
        out[m] = _pad_to(ex[m], lengths[lead])
      out[f"{lead}_segment_ids"] = _pad_to(tf.ones([n], tf.int32), lengths[lead])
      out[f"{lead}_positions"] = _pad_to(tf.range(n, dtype=tf.int32), lengths[lead])
    return out
  return _trimmed(ds, groups, lengths).map(pad, num_parallel_calls=AUTOTUNE)


def pack_dataset(ds: tf.data.Dataset, groups: Groups, lengths: Mapping[str, int]) -> tf.data.Dataset:
  """Greedy in-order packing: examples join the current row while every group still fits."""
  ds = _trimmed(ds, groups, lengths)
  spec = ds.element_spec
  empty = {m: tf.zeros([0], spec[m].dtype) for ms in groups.values() for m in ms}
  for lead in groups:
    empty[f"{lead}_segment_ids"] = tf.zeros([0], tf.int32)
    empty[f"{lead}_positions"] = tf.zeros([0], tf.int32)
  initial = dict(empty, _count=tf.constant(0))
  sentinel = tf.data.Dataset.from_tensors(dict(empty, **{_FLUSH: True})).map(
      lambda ex: {k: v for k, v in ex.items() if k in spec or k == _FLUSH})
  ds = ds.map(lambda ex: dict(ex, **{_FLUSH: False})).concatenate(sentinel)

  def padded(state):
    return {k: _pad_to(v, lengths[_group_of(k, groups)]) for k, v in state.items() if k != "_count"}

  def step(state, ex):
    fits = tf.reduce_all([tf.size(state[lead]) + tf.size(ex[lead]) <= lengths[lead]
                          for lead in groups])
    emit = tf.logical_and(state["_count"] > 0, tf.logical_or(ex[_FLUSH], tf.logical_not(fits)))
    base = tf.cond(emit, lambda: initial, lambda: state)
    segment = base["_count"] + 1
    new = {"_count": segment}
    for lead, members in groups.items():
      n = tf.size(ex[lead])
      for m in members:
        new[m] = tf.concat([base[m], ex[m]], 0)
      new[f"{lead}_segment_ids"] = tf.concat([base[f"{lead}_segment_ids"], tf.fill([n], segment)], 0)
      new[f"{lead}_positions"] = tf.concat(
          [base[f"{lead}_positions"], tf.range(n, dtype=tf.int32)], 0)
    return new, (emit, padded(state))

  return (ds.scan(initial, step)
          .filter(lambda emit, row: emit)
          .map(lambda emit, row: row, num_parallel_calls=AUTOTUNE))


def _group_of(key: str, groups: Groups) -> str:
  for lead, members in groups.items():
    if key in members or key in (f"{lead}_segment_ids", f"{lead}_positions"):
      return lead
  raise KeyError(key)
