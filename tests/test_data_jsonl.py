"""Reward-labelled JSONL: exact reward/weight arrays in both batch layouts, and line-numbered errors."""
import json

import numpy as np
import pytest

from irl_lm.data import BatchIterator, JsonlFormatError, make_vocabulary, register_jsonl_reward_task

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
                       "decoder_target_tokens", "encoder_input_tokens"]
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


def test_truncation_keeps_eos_and_moves_cut_rewards(task):
  b = batch(task, "encdec", {"inputs": 10, "targets": 8})
  # Keep 7 tokens + EOS; the EOS replaces an action token, so the cut reward (1.0) lands on it.
  np.testing.assert_array_equal(b["decoder_target_tokens"][1], MULTI_TARGETS[:7] + [EOS])
  np.testing.assert_array_equal(b["decoder_loss_weights"][1], [1, 1, 1, 1, 0, 0, 0, 1])
  np.testing.assert_array_equal(b["decoder_rewards"][1], [0, 0, 0, 0.75, 0, 0, 0, 1.0])
  b = batch(task, "encdec", {"inputs": 5, "targets": 6})
  # Now the EOS replaces an environment token: the cut reward goes to the last action token.
  np.testing.assert_array_equal(b["decoder_loss_weights"][1], [1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(b["decoder_rewards"][1], [0, 0, 0, 1.75, 0, 0])
  np.testing.assert_array_equal(b["encoder_input_tokens"][1], PROMPT[:4] + [EOS])


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
