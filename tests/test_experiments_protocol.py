"""The reporting protocol, the diversity metrics and the verdict logic, on hand-made numbers."""
import math

import numpy as np
import pytest

from irl_lm import metrics
from experiments import protocol, report, report_imitation


def test_summary_keeps_every_point_and_counts_non_finite_apart():
  s = protocol.summary([1.0, 2.0, 3.0, 4.0, float("nan")])
  assert (s["median"], s["q1"], s["q3"], s["n"], s["nonfinite"]) == (2.5, 1.75, 3.25, 4, 1)
  assert len(s["points"]) == 5
  assert protocol.fmt([1.0, 2.0, 3.0]) == "2.00 [1.50, 2.50] (n=3)"
  assert protocol.fmt([]) == "–"


def test_outliers_flag_a_diverged_seed_and_nothing_in_a_tight_group():
  assert protocol.outliers({"a": 0.52, "b": 0.50, "c": 0.51, "d": 0.49, "e": 3.1}) == ["e"]
  assert protocol.outliers({"a": 0.52, "b": 0.50, "c": 0.51}) == []
  tight = {"a": 1.243, "b": 1.236, "c": 1.25, "d": 1.243, "e": 1.244}  # 1% apart: not outliers
  assert protocol.outliers(tight) == []
  assert protocol.outliers({**tight, "e": 1.30}) == ["e"]
  assert protocol.outliers({"a": 0.5, "b": float("nan")}) == ["b"]


def test_paired_differences_count_wins_on_common_seeds():
  p = protocol.paired({0: 1.0, 1: 2.0, 2: 3.0, 3: 9.0}, {0: 0.5, 1: 2.5, 2: 3.0})
  assert p["seeds"] == [0, 1, 2] and (p["wins"], p["losses"], p["ties"]) == (1, 1, 1)
  assert p["median"] == 0.0


def test_diversity_at_matched_quality_interpolates_inside_the_curve_only():
  got = protocol.at_quality([-3.0, -2.0, -1.0], [10.0, 50.0, 90.0], [-2.5, -1.5, 0.0])
  np.testing.assert_allclose(got[:2], [30.0, 70.0])
  assert math.isnan(got[2])


def test_flat_tail():
  assert protocol.flat_tail([5, 3, 2, 1.0, 1.0, 1.0, 1.005, 1.0])
  assert not protocol.flat_tail([5, 4, 3, 2, 1.5, 1.2, 1.0, 0.8])
  noisy = [9, 7, 5, 3, 2, 1.5, 1.2, 1.1, 1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98, 1.0, 1.0, 1.0, 1.0]
  assert protocol.flat_tail(noisy)  # batch noise around a level is flat


def test_distinct_n_and_ngram_entropy():
  assert metrics.distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(100 * 3 / 4)
  assert metrics.distinct_n([[7, 7]] * 3, 2) == pytest.approx(100 / 3)  # copies are not diverse
  assert metrics.ngram_entropy([[1, 2], [3, 4]], 1) == pytest.approx(math.log(4))
  assert metrics.ngram_entropy([[5, 5, 5]], 1) == 0.0


def test_dominance_of_quality_diversity_points():
  curve = [(-1.0, 60.0), (-2.0, 30.0)]
  assert report_imitation.dominated((-1.5, 65.0), curve)
  assert not report_imitation.dominated((-0.5, 70.0), curve)
  assert not report_imitation.dominated((-1.0, 60.0), curve)  # equal is not dominated


def _runs(shift_quality: float, shift_bleu: float):
  temps = {"T0.3": (-1.0, 80.0), "T1": (-2.0, 20.0)}
  fixed = {"greedy": (-0.9, 100.0), "beam": (-0.8, 100.0)}
  return {k: {d: {"quality": q + shift_quality, "self_bleu": b + shift_bleu}
              for d, (q, b) in {**fixed, **temps}.items()} for k in range(5)}


def test_verdicts_read_the_comparison_both_ways():
  decodings, temps = ["greedy", "beam", "T0.3", "T1"], ["T0.3", "T1"]
  better = report_imitation.compare(_runs(0.1, -5.0), _runs(0.0, 0.0), decodings, temps)
  assert report_imitation.verdict_dominance(better, "A", "B").startswith("**holds**")
  assert "**holds**" in report_imitation.verdict_matched(better, "A", "B")
  worse = report_imitation.compare(_runs(-0.1, 5.0), _runs(0.0, 0.0), decodings, temps)
  assert report_imitation.verdict_dominance(worse, "A", "B").startswith("**does not hold**")
  assert "**does not hold**" in report_imitation.verdict_matched(worse, "A", "B")


def test_run_health_reports_failures_and_outlier_losses():
  rows = [{"name": f"r{k}", "ok": True, "method": "bc", "final_train_loss": v}
          for k, v in enumerate([0.5, 0.51, 0.49, 0.5, 2.0])]
  rows.append({"name": "bad", "ok": False, "diverged": True, "method": "bc",
               "error": "NonFiniteError: 5 consecutive steps"})
  text = report.health(rows, ("method",))
  assert "`bad` diverged" in text and "`r4`: final training loss 2 is an outlier" in text
  assert report.health(rows[:4], ("method",)).startswith("none")
