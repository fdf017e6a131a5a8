"""The benchmark harness: cases take turns in rounds, ratios are per round, targets are judged."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import harness  # noqa: E402
import run_all  # noqa: E402


def test_cases_take_turns_within_each_round_after_their_warmup():
  calls = []
  cases = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
  times = harness.interleave(cases, rounds=2, calls=2, warmup=1, progress=False)
  assert calls == ["a", "b", "c"] + ["a", "a", "b", "b", "c", "c"] * 2
  assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2, "c": 2}


def test_ratio_is_taken_per_round_then_summarised():
  r = harness.ratio([2.0, 3.0, 8.0], [1.0, 2.0, 2.0])
  assert r == {"median": 2.0, "min": 1.5, "max": 4.0, "rounds": [2.0, 1.5, 4.0]}
  assert harness.fmt(r) == "2.00x (1.50-4.00)"
  with pytest.raises(ValueError):
    harness.ratio([1.0, 2.0], [1.0])


def test_targets_are_judged_on_the_median():
  s = harness.spread([0.9, 1.6, 1.7])
  assert harness.target("x", s, ">=", 1.5, "m")["met"]
  assert not harness.target("x", s, "<=", 1.5, "m")["met"]
  assert harness.target("x", s, "<=", 1.6, "m") == {"name": "x", "target": "<= 1.6",
                                                    "measured": "m", "met": True}


def test_machine_names_the_cpu_and_cores():
  info = harness.machine(peak_flops=2e11)
  assert info["cpu"] and info["cores"] == os.cpu_count()
  line = harness.describe(info)
  assert line.startswith(f"{info['cpu']}, {os.cpu_count()} cores, jax ")
  assert line.endswith("matmul peak 200 GFLOP/s")


def test_run_all_table_shows_every_target_and_flags_misses(tmp_path):
  info = harness.machine()
  for name, met in (("one", True), ("two", False)):
    with open(tmp_path / f"{name}.json", "w") as f:
      json.dump({"machine": info, "targets": [
          {"name": f"{name} speed", "target": ">= 3", "measured": "2.00x (1.90-2.10)",
           "met": met}]}, f)
  lines = run_all.table(["one", "two"], results=str(tmp_path)).splitlines()
  assert lines[0] == harness.describe(info).split(", load")[0]
  assert "| one speed | >= 3 | 2.00x (1.90-2.10) | yes |" in lines
  assert "| two speed | >= 3 | 2.00x (1.90-2.10) | **no** |" in lines
