"""BatchIterator: fixed streams per seed, exact resume, disjoint host shards, eval padding."""
import json

import jax
import numpy as np
import pytest
import seqio

from irl_lm.data import (BatchIterator, get_task, make_vocabulary, register_jsonl_reward_task,
                         shard_info_from_mesh)
from irl_lm.data.hosts import shard_info_from_rows

LENGTHS = {"inputs": 16, "targets": 8}


@pytest.fixture(scope="module")
def ten_rows(tmp_path_factory):
  path = tmp_path_factory.mktemp("pipeline") / "ten.jsonl"
  rows = [{"prompt": f"row {i}", "response": f"answer {i} .", "reward": float(i)} for i in range(10)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return register_jsonl_reward_task("test_pipeline_ten", {"train": str(path)},
                                    make_vocabulary("embedded"))


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def row_ids(batches):
  """The row number i of each real row ("row i" prompts), in order."""
  vocab = make_vocabulary("embedded")
  return [int(vocab.decode(r).split()[1]) for b in batches for r, w in
          zip(b["encoder_input_tokens"], b["decoder_loss_weights"]) if w.any()]


def test_same_seed_same_stream_other_seed_other_stream():
  def stream(seed):
    return take(BatchIterator("embedded_summarize", "train", "encdec", {"inputs": 64, "targets": 32},
                              8, seed=seed), 3)
  a, b, c = stream(7), stream(7), stream(8)
  assert_same_batches(a, b)
  assert not np.array_equal(a[0]["encoder_input_tokens"], c[0]["encoder_input_tokens"])


def test_epochs_repeat_with_a_new_order_and_drop_the_remainder(ten_rows):
  batches = take(BatchIterator(ten_rows, "train", "encdec", LENGTHS, 4, seed=3), 6)
  epochs = [row_ids(batches[i:i + 2]) for i in (0, 2, 4)]
  assert all(len(e) == len(set(e)) == 8 for e in epochs)  # 10 rows -> 2 full batches of 4
  assert len({tuple(e) for e in epochs}) == 3


@pytest.mark.parametrize("model_kind,pack", [("encdec", False), ("decoder", True)])
def test_resume_sees_the_same_batches(ten_rows, model_kind, pack):
  # Two batches per epoch either way: 10 rows of 4, or 4 packed rows (3+3+3+1 examples) of 2.
  def iterator():
    return BatchIterator(ten_rows, "train", model_kind, LENGTHS, 2 if pack else 4, seed=11,
                         pack=pack)
  uninterrupted = take(iterator(), 7)
  first = iterator()
  take(first, 3)
  state = json.loads(json.dumps(first.state()))
  assert state == {"epoch": 1, "batches_in_epoch": 1}
  resumed = iterator()
  resumed.restore(state)
  assert_same_batches(take(resumed, 4), uninterrupted[3:])


def test_host_shards_are_disjoint_and_cover_the_split(ten_rows):
  shards = [list(BatchIterator(ten_rows, "train", "encdec", LENGTHS, 4, shuffle=False, repeat=False,
                               shard_index=i, num_shards=2)) for i in range(2)]
  assert all(b["encoder_input_tokens"].shape == (2, 16) for s in shards for b in s)
  ids = [row_ids(s) for s in shards]
  assert not set(ids[0]) & set(ids[1])
  assert sorted(ids[0] + ids[1]) == list(range(10))


def test_shuffled_training_shards_are_disjoint():
  def inputs(index):
    it = BatchIterator("embedded_arithmetic", "train", "encdec", {"inputs": 64, "targets": 32}, 16,
                       seed=5, shard_index=index, num_shards=2)
    return {r.tobytes() for b in take(it, 20) for r in b["encoder_input_tokens"]}
  a, b = inputs(0), inputs(1)
  assert len(a) == len(b) == 160
  assert not a & b


def test_eval_pass_pads_the_last_batch(ten_rows):
  batches = list(BatchIterator(ten_rows, "train", "encdec", LENGTHS, 4, shuffle=False,
                               repeat=False))
  assert len(batches) == 3
  last = batches[-1]
  assert last["encoder_input_tokens"].shape == (4, 16)
  assert last["decoder_loss_weights"][2:].sum() == 0 and last["encoder_input_tokens"][2:].sum() == 0
  assert row_ids(batches) == list(range(10))


def test_bad_arguments(ten_rows):
  with pytest.raises(ValueError, match="not divisible"):
    BatchIterator(ten_rows, "train", "encdec", LENGTHS, 5, num_shards=2)
  with pytest.raises(ValueError, match="Unknown model kind"):
    BatchIterator(ten_rows, "train", "t5", LENGTHS, 4)
  with pytest.raises(ValueError, match="fewer examples than one local batch"):
    next(BatchIterator(ten_rows, "train", "encdec", LENGTHS, 16))
  with pytest.raises(KeyError, match="register_paper_tasks"):
    get_task("no_such_task")


def test_shard_info_from_mesh_layout():
  mesh = jax.make_mesh((4, 2), ("data", "tensor"))
  assert shard_info_from_mesh(mesh, ("data",)) == seqio.ShardInfo(0, 1)  # one process: all rows
  assert shard_info_from_rows([2, 3], 8) == seqio.ShardInfo(1, 4)
  assert shard_info_from_rows([5], 8) == seqio.ShardInfo(5, 8)
  with pytest.raises(ValueError, match="not one aligned contiguous block"):
    shard_info_from_rows([1, 2], 8)
  with pytest.raises(ValueError, match="not one aligned contiguous block"):
    shard_info_from_rows([0, 2], 8)
