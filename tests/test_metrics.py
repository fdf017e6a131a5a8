"""Metrics on hand-made predictions with known scores."""
import decimal
import math

import pytest

from irl_lm import metrics


def test_rouge_known_scores():
  # "the cat sat" vs "the cat ran": unigrams 2/3 match, bigrams 1/2, LCS 2.
  got = metrics.rouge(["the cat sat", "a b c d"], ["the cat ran", "a b c d"])
  assert got["rouge1"] == pytest.approx((200 / 3 + 100) / 2)
  assert got["rouge2"] == pytest.approx((50 + 100) / 2)
  assert got["rougeL"] == pytest.approx((200 / 3 + 100) / 2)


def test_rouge_disjoint_is_zero():
  assert metrics.rouge(["alpha beta"], ["gamma delta"]) == {"rouge1": 0.0, "rouge2": 0.0,
                                                            "rougeL": 0.0}


def test_bleu_known_scores():
  assert metrics.bleu(["the cat sat on the mat"], ["the cat sat on the mat"])["bleu"] == (
      pytest.approx(100.0))
  # All n-gram precisions are 1; only the brevity penalty exp(1 - 8/4) applies.
  got = metrics.bleu(["a b c d e f g h"], ["a b c d"])["bleu"]
  assert got == pytest.approx(100 * math.exp(-1), abs=1e-6)


def test_bleu_length_mismatch_raises():
  with pytest.raises(ValueError, match="2 targets but 1 predictions"):
    metrics.bleu(["a", "b"], ["a"])


def test_final_number_extraction():
  assert metrics.final_number("3 + 4 = 7 . #### 7") == decimal.Decimal(7)
  assert metrics.final_number("so #### 1,000 dollars") == decimal.Decimal(1000)
  assert metrics.final_number("#### 2 then #### -3.5") == decimal.Decimal("-3.5")
  assert metrics.final_number("the answer is 7") is None
  assert metrics.final_number("the answer is 7", require_marker=False) == 7
  assert metrics.final_number("####   ") is None


def test_final_number_accuracy():
  targets = ["3 * 4 = 12 . #### 12", "#### 1000", "42", "#### 5", "no number"]
  predictions = ["4 * 3 = 12 . #### 12.0", "thus #### 1,000", "#### 42", "5", "#### 0"]
  # correct: 12 == 12.0, 1,000 == 1000, bare target 42; wrong: no marker, target without number.
  assert metrics.final_number_accuracy(targets, predictions) == {"accuracy": 60.0}


def test_self_bleu_extremes_and_mixed():
  same = [["a b c d", "a b c d", "a b c d"]]
  assert metrics.self_bleu(None, same)["self_bleu"] == pytest.approx(100.0)
  # Two identical samples score 100 against each other; the third shares no word
  # with them, which sacrebleu scores 0 (smoothing only applies to higher n-grams).
  mixed = [["a b c d", "a b c d", "w x y z"]]
  assert metrics.self_bleu(None, mixed)["self_bleu"] == pytest.approx(200 / 3)


def test_self_bleu_averages_over_prompts_and_needs_two_samples():
  got = metrics.self_bleu(None, [["a b c d", "a b c d"], ["a b c d", "a b c d"]])
  assert got["self_bleu"] == pytest.approx(100.0)
  with pytest.raises(ValueError, match="at least 2 samples"):
    metrics.self_bleu(None, [["only one"]])


def test_metric_fns_have_seqio_signature():
  import seqio
  task = seqio.Task("metrics_signature_probe", source=seqio.FunctionDataSource(
      lambda split, shuffle_files: None, splits=["train"]), output_features={},
      metric_fns=[metrics.rouge, metrics.bleu, metrics.final_number_accuracy, metrics.self_bleu])
  assert len(task.predict_metric_fns) == 4
