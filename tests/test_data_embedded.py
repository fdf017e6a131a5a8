"""The embedded tasks: deterministic, large enough, within limits, correct, and scored as documented."""
import re

import numpy as np
import pytest

from irl_lm import metrics
from irl_lm.data import compute_metrics, embedded, eval_examples, get_task, make_vocabulary, score
from irl_lm.data.embedded import ilql

TASKS = sorted(embedded.GENERATORS)
SINGLE_TURN = [t for t in TASKS if t != "embedded_twenty_questions"]  # one prompt per dialogue


@pytest.mark.parametrize("task", TASKS)
def test_generation_is_deterministic_and_large(task):
  train = embedded.generate(task, "train")
  assert len(train) >= 20_000
  fresh = embedded.generate.__wrapped__(task, "validation", 0)
  assert fresh == embedded.generate(task, "validation")
  assert embedded.generate.__wrapped__(task, "validation", 1) != fresh
  distinct = {ex["inputs"] + ex["targets"] for ex in train}
  assert len(distinct) > (19_000 if task in SINGLE_TURN else 2_000)


@pytest.mark.parametrize("task", SINGLE_TURN)
def test_lengths_fit_the_limits(task):
  vocab = make_vocabulary("embedded")
  examples = embedded.generate(task, "train")
  assert max(len(vocab.encode(ex["inputs"])) for ex in examples) + 1 <= 64
  assert max(len(vocab.encode(ex["targets"])) for ex in examples) + 1 <= 32


def test_arithmetic_answers_are_correct():
  ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
         "/": lambda a, b: a / b}
  step_counts = set()
  for ex in embedded.generate("embedded_arithmetic", "train"):
    steps = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", ex["targets"])
    assert steps, ex
    step_counts.add(len(steps))
    for a, op, b, c in steps:
      assert ops[op](int(a), int(b)) == int(c), ex
    assert metrics.final_number(ex["targets"]) == int(steps[-1][3])
    assert int(steps[-1][3]) >= 0
  assert step_counts == {1, 2, 3}


def test_summaries_restate_the_main_event():
  templates = set()
  for ex in embedded.generate("embedded_summarize", "validation"):
    words = set(ex["inputs"].split())
    assert set(ex["targets"].split()) <= words | {"the", "in", "on", "."} | set(
        v[0] for v in embedded.summarize.VERBS), ex
    first = ex["targets"].split()[0]
    templates.add(first if first in ("the", "in") else "name")
  assert templates == {"the", "in", "name"}  # several valid summary shapes: room for diversity


def test_ilql_rewards_match_score_and_behaviour_is_suboptimal():
  examples = embedded.generate("embedded_ilql", "train")
  rewards = np.array([ex["reward"] for ex in examples])
  assert all(score(ex["inputs"], ex["targets"]) == ex["reward"] for ex in examples[:2000])
  assert rewards.mean() == pytest.approx(ilql.BEHAVIOUR_MEAN_REWARD, abs=0.01)
  # Stitching: each half is often right in some logged responses, both halves almost never.
  first = second = 0
  for ex in examples:
    objects = ilql.prompt_objects(ex["inputs"])
    clauses = [c.split() for c in re.split(r"[,.]", ex["targets"]) if c.strip()]
    ok = [c[2] in ilql.COLORS_OF[o] for o, c in zip(objects, clauses)]
    first += all(ok[:2])
    second += all(ok[2:])
  assert first / len(examples) > 0.3 and second / len(examples) > 0.3
  assert np.mean(rewards == 1.0) < 0.01
  assert all(score(ex["inputs"], ilql.optimal_response(ex["inputs"])) == 1.0
             for ex in examples[:200])


def test_score_is_defined_for_any_text():
  prompt = "what color is each : sky , coal , lemon , pig ?"
  assert score(prompt, "sky is blue , coal is black , lemon is yellow , pig is pink .") == 1.0
  assert score(prompt, "sky is blue , coal is red , lemon is yellow , pig is gray .") == 0.5
  assert score(prompt, "coal is black , sky is blue , lemon is yellow , pig is pink .") == 0.5
  extra = "sky is blue , coal is black , lemon is yellow , pig is pink , sky is blue ."
  assert score(prompt, extra) == 0.8
  assert score(prompt, "") == 0.0
  assert score(prompt, "!!! 42 ####") == 0.0
  assert score("no colour question", "sky is blue") == 0.0
  assert score("what color is each : apple ?", "apple is green .") == 1.0


def test_embedded_tasks_metrics_via_compute_metrics():
  for name, key in (("embedded_summarize", "rougeL"), ("embedded_arithmetic", "accuracy")):
    examples = eval_examples(name, "validation", max_examples=20)
    got = compute_metrics(name, examples, [ex["targets_pretokenized"] for ex in examples])
    assert got[key] == pytest.approx(100.0)
    assert compute_metrics(name, examples, ["x"] * 20)[key] == 0.0
  examples = eval_examples("embedded_ilql", "validation", max_examples=50)
  optimal = [ilql.optimal_response(ex["inputs_pretokenized"]) for ex in examples]
  assert compute_metrics("embedded_ilql", examples, optimal) == {"reward": 1.0}
  logged = compute_metrics("embedded_ilql", examples,
                           [ex["targets_pretokenized"] for ex in examples])["reward"]
  assert logged == pytest.approx(np.mean([ex["rewards"].sum() for ex in examples]))
  assert get_task("embedded_ilql").postprocess_fn("x", example=examples[0], is_target=True) == (
      examples[0]["inputs_pretokenized"])
