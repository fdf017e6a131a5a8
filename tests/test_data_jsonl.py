"""Reward-labelled JSONL: exact reward/weight arrays in both batch layouts, and line-numbered errors."""
import json

import numpy as np
import pytest

from irl_lm.data import BatchIterator, JsonlFormatError, make_vocabulary, register_jsonl_reward_task
from irl_lm.losses import next_state

VOCAB = make_vocabulary("embedded")
SINGLE = {"prompt": "what color is each : sky ?", "response": "sky is blue .", "reward": 0.5}
MULTI = {"turns": [
    {"text": "what color is each : sky ?", "is_action": False},
    {"text": "sky is blue .", "is_action": True, "reward": 0.25},
    {"text": "and snow ?", "is_action": False, "reward": 0.5},  # credited to the action before
    {"text": "snow is white .", "is_action": True, "reward": 1.0},
]}
EOS = VOCAB.eos_id


def ids(text):
  return list(VOCAB.encode(text))


def write_jsonl(path, rows):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return str(path)


@pytest.fixture
def task(tmp_path):
  path = write_jsonl(tmp_path / "rows.jsonl", [SINGLE, MULTI])
  return register_jsonl_reward_task("test_jsonl_rewards", {"train": path}, VOCAB)


def batch(task, model_kind, lengths, pack=False, rows=2):
  return next(BatchIterator(task, "train", model_kind, lengths, rows, shuffle=False, pack=pack,
                            repeat=False))


# Expected task features, by hand.
PROMPT = ids("what color is each : sky ?") + [EOS]
SINGLE_TARGETS = ids("sky is blue .") + [EOS]
SINGLE_WEIGHTS = [1, 1, 1, 1, 1]
SINGLE_REWARDS = [0, 0, 0, 0, 0.5]
MULTI_TARGETS = ids("sky is blue .") + ids("and snow ?") + ids("snow is white .") + [EOS]
MULTI_WEIGHTS = [1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1]
MULTI_REWARDS = [0, 0, 0, 0.75, 0, 0, 0, 0, 0, 0, 0, 1.0]


def padded(values, length, dtype=np.int32):
  return np.array(list(values) + [0] * (length - len(values)), dtype)


def test_encdec_layout_exact(task):
  b = batch(task, "encdec", {"inputs": 10, "targets": 14})
  assert sorted(b) == ["decoder_input_tokens", "decoder_loss_weights", "decoder_rewards",
                       "decoder_target_tokens", "decoder_truncated", "encoder_input_tokens"]
  np.testing.assert_array_equal(b["decoder_truncated"], 0)
  for row, (targets, weights, rewards) in enumerate([
      (SINGLE_TARGETS, SINGLE_WEIGHTS, SINGLE_REWARDS),
      (MULTI_TARGETS, MULTI_WEIGHTS, MULTI_REWARDS)]):
    np.testing.assert_array_equal(b["encoder_input_tokens"][row], padded(PROMPT, 10))
    np.testing.assert_array_equal(b["decoder_target_tokens"][row], padded(targets, 14))
    np.testing.assert_array_equal(b["decoder_input_tokens"][row], padded([0] + targets[:-1], 14))
    np.testing.assert_array_equal(b["decoder_loss_weights"][row], padded(weights, 14))
    np.testing.assert_array_equal(b["decoder_rewards"][row], padded(rewards, 14, np.float32))
  assert b["decoder_rewards"].dtype == np.float32


def test_decoder_layout_exact(task):
  b = batch(task, "decoder", {"inputs": 10, "targets": 14})
  n = len(PROMPT)
  for row, (targets, weights, rewards) in enumerate([
      (SINGLE_TARGETS, SINGLE_WEIGHTS, SINGLE_REWARDS),
      (MULTI_TARGETS, MULTI_WEIGHTS, MULTI_REWARDS)]):
    full = PROMPT + targets
    np.testing.assert_array_equal(b["decoder_target_tokens"][row], padded(full, 24))
    np.testing.assert_array_equal(b["decoder_input_tokens"][row], padded([0] + full[:-1], 24))
    np.testing.assert_array_equal(b["decoder_loss_weights"][row], padded([0] * n + weights, 24))
    np.testing.assert_array_equal(b["decoder_rewards"][row],
                                  padded([0] * n + rewards, 24, np.float32))
    np.testing.assert_array_equal(b["decoder_segment_ids"][row], padded([1] * len(full), 24))
    np.testing.assert_array_equal(b["decoder_positions"][row], padded(range(len(full)), 24))
  np.testing.assert_array_equal(b["decoder_truncated"], 0)


def test_packed_encdec_keeps_rewards_per_segment(task):
  b = batch(task, "encdec", {"inputs": 20, "targets": 20}, pack=True, rows=1)
  np.testing.assert_array_equal(b["encoder_input_tokens"][0], padded(PROMPT + PROMPT, 20))
  np.testing.assert_array_equal(b["encoder_segment_ids"][0], padded([1] * len(PROMPT) + [2] * len(PROMPT), 20))
  np.testing.assert_array_equal(b["decoder_target_tokens"][0],
                                padded(SINGLE_TARGETS + MULTI_TARGETS, 20))
  np.testing.assert_array_equal(b["decoder_input_tokens"][0], padded(
      [0] + SINGLE_TARGETS[:-1] + [0] + MULTI_TARGETS[:-1], 20))
  np.testing.assert_array_equal(b["decoder_loss_weights"][0],
                                padded(SINGLE_WEIGHTS + MULTI_WEIGHTS, 20))
  np.testing.assert_array_equal(b["decoder_rewards"][0],
                                padded(SINGLE_REWARDS + MULTI_REWARDS, 20, np.float32))
  np.testing.assert_array_equal(b["decoder_segment_ids"][0], padded([1] * 5 + [2] * 12, 20))
  np.testing.assert_array_equal(b["decoder_positions"][0],
                                padded(list(range(5)) + list(range(12)), 20))


def test_packed_decoder_splits_rows_when_full(task):
  b = batch(task, "decoder", {"inputs": 8, "targets": 14}, pack=True, rows=2)
  # 8 + 5 tokens fit in 22; the second example (8 + 12) does not fit beside them.
  np.testing.assert_array_equal(b["decoder_segment_ids"][0], padded([1] * 13, 22))
  np.testing.assert_array_equal(b["decoder_segment_ids"][1], padded([1] * 20, 22))
  np.testing.assert_array_equal(b["decoder_rewards"][1],
                                padded([0] * 8 + MULTI_REWARDS, 22, np.float32))


def test_cut_row_is_an_unfinished_episode_ending_in_a_slot(task):
  b = batch(task, "encdec", {"inputs": 10, "targets": 8})
  # 8 of 12 tokens kept, no EOS; position 7 (an action) becomes the weight-0 next-state slot,
  # and the rewards from it on (1.0) are dropped: the bootstrap from position 7 stands for them.
  np.testing.assert_array_equal(b["decoder_target_tokens"][1], MULTI_TARGETS[:8])
  np.testing.assert_array_equal(b["decoder_loss_weights"][1], [1, 1, 1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(b["decoder_rewards"][1], [0, 0, 0, 0.75, 0, 0, 0, 0])
  np.testing.assert_array_equal(b["decoder_truncated"], [[0] * 5 + [0] * 3, [1] * 8])
  index, done = next_state(b["decoder_loss_weights"], truncated=b["decoder_truncated"])
  assert (int(index[1, 3]), float(done[1, 3])) == (4, 0.0)  # bootstraps from V(position 4)
  assert (int(index[0, 4]), float(done[0, 4])) == (4, 1.0)  # the finished row ends
  b = batch(task, "encdec", {"inputs": 5, "targets": 6})
  # Cut inside the environment turn: the inputs keep their EOS, the targets do not.
  np.testing.assert_array_equal(b["decoder_target_tokens"][1], MULTI_TARGETS[:6])
  np.testing.assert_array_equal(b["decoder_loss_weights"][1], [1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(b["decoder_rewards"][1], [0, 0, 0, 0.75, 0, 0])
  np.testing.assert_array_equal(b["decoder_truncated"][1], [1] * 6)
  np.testing.assert_array_equal(b["encoder_input_tokens"][1], PROMPT[:4] + [EOS])


UNFINISHED_SINGLE = dict(SINGLE, done=False)
UNFINISHED_MULTI = dict(MULTI, done=False)
# No EOS; one weight-0 slot (token 0, reward 0) after the text: the state after the last action.
OPEN_SINGLE_TARGETS = ids("sky is blue .") + [0]
OPEN_SINGLE_WEIGHTS = [1, 1, 1, 1, 0]
OPEN_SINGLE_REWARDS = [0, 0, 0, 0.5, 0]
OPEN_MULTI_TARGETS = MULTI_TARGETS[:-1] + [0]
OPEN_MULTI_WEIGHTS = MULTI_WEIGHTS[:-1] + [0]
OPEN_MULTI_REWARDS = [0, 0, 0, 0.75, 0, 0, 0, 0, 0, 0, 1.0, 0]


@pytest.fixture
def unfinished(tmp_path):
  path = write_jsonl(tmp_path / "open.jsonl", [UNFINISHED_SINGLE, UNFINISHED_MULTI,
                                               dict(SINGLE, done=True)])
  return register_jsonl_reward_task("test_jsonl_unfinished", {"train": path}, VOCAB)


def test_done_false_rows_end_in_a_slot_without_eos(unfinished):
  b = batch(unfinished, "encdec", {"inputs": 10, "targets": 14}, rows=3)
  for row, (targets, weights, rewards, truncated) in enumerate([
      (OPEN_SINGLE_TARGETS, OPEN_SINGLE_WEIGHTS, OPEN_SINGLE_REWARDS, 1),
      (OPEN_MULTI_TARGETS, OPEN_MULTI_WEIGHTS, OPEN_MULTI_REWARDS, 1),
      (SINGLE_TARGETS, SINGLE_WEIGHTS, SINGLE_REWARDS, 0)]):
    np.testing.assert_array_equal(b["decoder_target_tokens"][row], padded(targets, 14))
    np.testing.assert_array_equal(b["decoder_loss_weights"][row], padded(weights, 14))
    np.testing.assert_array_equal(b["decoder_rewards"][row], padded(rewards, 14, np.float32))
    np.testing.assert_array_equal(b["decoder_truncated"][row],
                                  padded([truncated] * len(targets), 14))
  b = batch(unfinished, "decoder", {"inputs": 10, "targets": 14}, rows=3)
  n = len(PROMPT)
  np.testing.assert_array_equal(b["decoder_target_tokens"][0],
                                padded(PROMPT + OPEN_SINGLE_TARGETS, 24))
  np.testing.assert_array_equal(b["decoder_truncated"][0], padded([0] * n + [1] * 5, 24))
  np.testing.assert_array_equal(b["decoder_truncated"][2], 0)


@pytest.mark.parametrize("model_kind", ["encdec", "decoder"])
def test_packing_keeps_an_unfinished_episode_in_its_segment(unfinished, model_kind):
  # Row 0 packs the unfinished single-turn row (segment 1) and the unfinished multi-turn row
  # (segment 2); each last action bootstraps from its own slot, never from the next segment.
  b = batch(unfinished, model_kind, {"inputs": 20, "targets": 20}, pack=True, rows=2)
  offset = 0 if model_kind == "encdec" else len(PROMPT)
  first, second = offset + 3, 2 * offset + 5 + 10  # the two last actions
  np.testing.assert_array_equal(
      b["decoder_segment_ids"][0][:2 * offset + 17],
      [1] * (offset + 5) + [2] * (offset + 12))
  np.testing.assert_array_equal(b["decoder_truncated"][0][:2 * offset + 17],
                                [0] * offset + [1] * 5 + [0] * offset + [1] * 12)
  index, done = next_state(b["decoder_loss_weights"], b["decoder_segment_ids"],
                           b["decoder_truncated"])
  assert (int(index[0, first]), float(done[0, first])) == (first + 1, 0.0)
  assert (int(index[0, second]), float(done[0, second])) == (second + 1, 0.0)
  assert b["decoder_loss_weights"][0][first + 1] == b["decoder_loss_weights"][0][second + 1] == 0
  # The finished row (row 1) stays terminal.
  last = offset + 4
  assert (int(index[1, last]), float(done[1, last])) == (last, 1.0)


BAD_LINES = [
    ('{"prompt": "a", "response": "b", "reward": 1', "invalid JSON"),
    ('["prompt"]', "expected a JSON object"),
    ('{"prompt": "a", "response": "b"}', "missing field 'reward'"),
    ('{"response": "b", "reward": 1}', "missing field 'prompt'"),
    ('{"prompt": "a", "response": "b", "reward": "high"}', "field 'reward' must be a number"),
    ('{"prompt": "a", "response": "b", "reward": true}', "field 'reward' must be a number"),
    ('{"prompt": "a", "response": "b", "reward": NaN}', "must be finite"),
    ('{"prompt": "a", "response": "  ", "reward": 1}', "empty 'response'"),
    ('{"turns": []}', "non-empty list"),
    ('{"turns": [{"text": "a", "is_action": false}]}', "no turn has is_action true"),
    ('{"turns": [{"text": "a"}]}', "missing field turns[0].'is_action'"),
    ('{"turns": [{"text": "", "is_action": true}]}', "empty action text in turns[0]"),
    ('{"turns": [{"text": "a", "is_action": true, "reward": "x"}]}',
     "field turns[0].'reward' must be a number"),
    ('{"turns": [{"text": "a", "is_action": false, "reward": 1}, {"text": "b", "is_action": true}]}',
     "before the first action"),
    ('{"prompt": "a", "response": "b", "reward": 1, "done": "no"}',
     "field 'done' must be true or false, got 'no'"),
    ('{"turns": [{"text": "a", "is_action": true}], "done": 0}',
     "field 'done' must be true or false, got 0"),
]


@pytest.mark.parametrize("line,message", BAD_LINES)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
  path = write_jsonl(tmp_path / "bad.jsonl", [SINGLE, "", line])
  task = register_jsonl_reward_task("test_jsonl_bad", path, VOCAB)
  with pytest.raises(JsonlFormatError) as err:
    next(BatchIterator(task, "train", "encdec", {"inputs": 8, "targets": 8}, 1))
  assert str(err.value).startswith(f"{path}:3: ")
  assert message in str(err.value)


def test_skip_invalid_counts_and_keeps_good_rows(tmp_path):
  path = write_jsonl(tmp_path / "mixed.jsonl", [SINGLE, BAD_LINES[0][0], MULTI, BAD_LINES[7][0]])
  task = register_jsonl_reward_task("test_jsonl_skip", path, VOCAB, skip_invalid=True)
  assert task.source.num_skipped("train") == 2
  assert task.source.skipped["train"][0].startswith(f"{path}:2: invalid JSON")
  assert task.source.skipped["train"][1].startswith(f"{path}:4: empty 'response'")
  b = batch(task, "encdec", {"inputs": 10, "targets": 14})
  np.testing.assert_array_equal(b["decoder_rewards"][1], padded(MULTI_REWARDS, 14, np.float32))
