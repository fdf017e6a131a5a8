"""Vocabularies: embedded words, the SentencePiece fixture and the byte-level BPE fixture."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from irl_lm.data import BatchIterator, embedded, make_vocabulary, register_jsonl_reward_task

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
SPIECE = os.path.join(FIXTURES, "spiece.model")
TOKENIZER_JSON = os.path.join(FIXTURES, "tokenizer.json")


def test_embedded_vocabulary_layout():
  vocab = make_vocabulary("embedded")
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  assert vocab.vocab_size < 512
  assert vocab.encode("sky is zebra") == [vocab.tokens.index("sky"), vocab.tokens.index("is"), 2]


@pytest.mark.parametrize("task", sorted(embedded.GENERATORS))
def test_embedded_tasks_round_trip_without_unknown_words(task):
  vocab = make_vocabulary("embedded")
  for ex in embedded.generate(task, "train"):
    for text in (ex["inputs"], ex["targets"]):
      ids = vocab.encode(text)
      assert vocab.unk_id not in ids, text
      assert vocab.decode(ids) == text


def test_embedded_tf_encode_and_decode_match_python():
  vocab = make_vocabulary("embedded")
  texts = ["Anna has 125 apples . #### 125", "what's 3+4=7?", "é ### sky\tblue,", ""]
  ragged = vocab.encode_tf(tf.constant(texts))
  for text, row in zip(texts, ragged.to_list()):
    assert row == vocab.encode(text)
    assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == vocab.encode(text)
  rows = [vocab.encode("anna has 1234567 apples .") + [1, 5], vocab.encode("12 + 3")]
  ids = [r + [0] * (16 - len(r)) for r in rows]
  decoded = vocab.decode_tf(tf.constant(ids)).numpy()
  assert [d.decode() for d in decoded] == ["anna has 1234567 apples .", "12 + 3"]


def test_sentencepiece_fixture():
  vocab = make_vocabulary("sentencepiece", SPIECE)
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  text = "summarize: anna sold 3 apples in york."
  ids = vocab.encode(text)
  assert vocab.decode(ids + [1, 0, 0]) == text
  assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == ids


def test_hf_tokenizer_fixture():
  vocab = make_vocabulary("hf_tokenizer", TOKENIZER_JSON)
  assert vocab.eos_id == 400 and vocab.vocab_size == 401
  assert vocab.encode("!") == [0]  # a real token, as in GPT-2
  text = "Hello! world, 12 apples."
  ids = vocab.encode(text)
  assert vocab.decode(ids) == text
  assert vocab.decode(ids + [vocab.eos_id] + [5, 6]) == text
  assert vocab.decode(ids + [vocab.eos_id, 0, 0]) == text
  assert vocab.decode(vocab.encode("sky!")) == "sky!"  # id 0 at the end is text, not padding
  assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == ids
  both = vocab.encode_tf(tf.constant([text, "sky!"])).to_list()
  assert both == [ids, vocab.encode("sky!")]
  rows = [ids + [400, 7], vocab.encode("sky!") + [400]]
  decoded = vocab.decode_tf(tf.constant([r + [0] * (20 - len(r)) for r in rows]))
  assert [d.decode() for d in decoded.numpy()] == [text, "sky!"]
  assert make_vocabulary("hf_tokenizer", FIXTURES) == vocab  # a directory works too


def test_token_zero_is_not_padding_in_decoder_batches(tmp_path):
  vocab = make_vocabulary("hf_tokenizer", TOKENIZER_JSON)
  path = tmp_path / "bang.jsonl"
  path.write_text(json.dumps({"prompt": "!", "response": "!!", "reward": 2.0}) + "\n")
  task = register_jsonl_reward_task("test_bang", str(path), vocab)
  for pack in (False, True):
    b = next(BatchIterator(task, "train", "decoder", {"inputs": 4, "targets": 6}, 1,
                           shuffle=False, repeat=False, pack=pack))
    # This tokenizer adds no BOS: the row is "!" "!!" EOS, read from its first token.
    row = vocab.encode("!") + vocab.encode("!!") + [400]
    n = len(row) - 1
    np.testing.assert_array_equal(b["decoder_input_tokens"][0][:n], row[:-1])
    np.testing.assert_array_equal(b["decoder_target_tokens"][0][:n], row[1:])
    np.testing.assert_array_equal(b["decoder_segment_ids"][0], [1] * n + [0] * (10 - n))
    np.testing.assert_array_equal(b["decoder_loss_weights"][0][:n],
                                  [0] * (len(vocab.encode("!")) - 1) + [1] * (n + 1 - len(
                                      vocab.encode("!"))))
    assert b["decoder_rewards"][0][n - 1] == 2.0 and b["decoder_rewards"].sum() == 2.0


def test_make_vocabulary_errors(tmp_path):
  with pytest.raises(ValueError, match="Unknown vocabulary kind 'bpe'"):
    make_vocabulary("bpe", "x")
  with pytest.raises(ValueError, match="needs a local file path"):
    make_vocabulary("sentencepiece")
  with pytest.raises(FileNotFoundError, match="SentencePiece model not found"):
    make_vocabulary("sentencepiece", str(tmp_path / "missing.model"))
  with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
    make_vocabulary("hf_tokenizer", str(tmp_path))
  with pytest.raises(ValueError, match="takes no path"):
    make_vocabulary("embedded", "x")


@pytest.mark.parametrize("kind,path", [
    ("embedded", None), ("sentencepiece", os.path.join(FIXTURES, "spiece.model")),
    ("hf_tokenizer", os.path.join(FIXTURES, "tokenizer.json")), ("ids", None)])
def test_turns_encode_in_one_call_as_one_by_one(kind, path):
  from irl_lm.data import IdVocabulary
  from irl_lm.data.preprocessors import _ENCODES_VECTORS, _encode, _encode_turns
  vocab = IdVocabulary(300, 1) if kind == "ids" else make_vocabulary(kind, path)
  assert isinstance(vocab, _ENCODES_VECTORS)
  texts = (["12 7 299", "", "0 4"] if kind == "ids" else
           ["is it an animal ?", " yes .", "", " Is it a frog? 42"])
  together = _encode_turns(vocab, tf.constant(texts))
  assert together.to_list() == [_encode(vocab, tf.constant(t)).numpy().tolist() for t in texts]


@pytest.mark.parametrize("finished", [True, False])
def test_id_task_rows_end_finished_or_in_a_bootstrap_slot(finished):
  from irl_lm.data import IdVocabulary, register_id_task
  task = register_id_task(f"test_ids_{finished}", {"train": ([[5, 6]], [[7, 8, 9]])},
                          IdVocabulary(16, 1), finished=finished)
  b = next(BatchIterator(task, "train", "decoder", {"inputs": 2, "targets": 4}, 1,
                         shuffle=False, repeat=False))
  n = 5 if finished else 6  # no EOS; a cut continuation gets a weight-0 slot after it
  np.testing.assert_array_equal(b["decoder_target_tokens"][0][:5], [5, 6, 7, 8, 9])
  np.testing.assert_array_equal(b["decoder_loss_weights"][0], [0, 0, 1, 1, 1, 0])
  np.testing.assert_array_equal(b["decoder_segment_ids"][0], [1] * n + [0] * (6 - n))
  np.testing.assert_array_equal(b["decoder_truncated"][0], [0, 0] + [1 - finished] * 4)
