"""The twenty-questions environment, its logged data, and the delayed-reward colour task."""
import random

import numpy as np
import pytest

from irl_lm import data
from irl_lm.data import embedded
from irl_lm.data.embedded import ilql, twenty_questions as tq


def test_environment_answers_and_rewards():
  ep = tq.Episode("frog")
  assert ep.step("is it an animal ?") == " yes ."
  assert ep.step("Is it  BIG ?") == " no ."  # case and spacing do not matter
  assert ep.step("what is it ?") == " no ."  # not understood: a wasted turn
  assert ep.step("is it a mouse ?") == " no ."
  assert not ep.done
  assert ep.step("is it a frog ?") == " yes ."
  assert ep.done and ep.total_reward == -4.0
  with pytest.raises(ValueError, match="over"):
    ep.step("is it a frog ?")
  turns = ep.as_turns()
  assert [t[1] for t in turns] == [True, False] * 5
  assert [t[2] for t in turns if t[1]] == [-1.0, -1.0, -1.0, -1.0, 0.0]


def test_episode_ends_after_max_turns():
  ep = tq.Episode("tree")
  for _ in range(tq.MAX_TURNS):
    ep.step("is it green ?")
  assert ep.done and ep.total_reward == -tq.MAX_TURNS


def test_objects_are_distinct_attribute_combinations():
  assert len(set(tq.OBJECTS.values())) == len(tq.OBJECTS) == 2 ** len(tq.ATTRIBUTES)


def test_optimum_by_dynamic_programming_beats_every_logging_policy():
  assert tq.optimal_return() == -2.5  # ask one question, then guess among the consistent four
  asker, guesser = tq.logging_return("asker"), tq.logging_return("guesser")
  assert asker == pytest.approx(-5.10, abs=0.05)
  assert guesser == pytest.approx(-3.5, abs=0.05)
  assert tq.logging_return() == pytest.approx((asker + guesser) / 2, abs=0.05)


def test_each_logging_policy_has_one_good_half():
  rng = random.Random(0)
  inconsistent = guesses = 0
  for _ in range(500):
    for name in ("asker", "guesser"):
      ep = tq.Episode(rng.choice(sorted(tq.OBJECTS)))
      tq.LOGGING_POLICIES[name](rng, ep)
      questions = [(tq.QUESTIONS[u], a == tq.YES) for u, a, _ in ep.turns if u in tq.QUESTIONS]
      asked = [q for q, _ in questions]
      consistent = {o for o, v in tq.OBJECTS.items()
                    if all(v[tq.ATTRIBUTES.index(q)] == yes for q, yes in questions)}
      picks = [tq.GUESSES[u] for u, _, _ in ep.turns if u in tq.GUESSES]
      if name == "asker":  # informative questions, then guesses that ignore the answers
        assert len(asked) in (2, 3) and len(set(asked)) == len(asked)
        inconsistent += sum(p not in consistent for p in picks)
        guesses += len(picks)
      else:  # one question asked twice, then only consistent guesses, never repeated
        assert len(asked) == 2 and asked[0] == asked[1]
        assert set(picks) <= consistent and len(set(picks)) == len(picks)
  assert inconsistent / guesses > 0.5


def test_logged_rows_put_rewards_on_agent_turns_and_weight_environment_tokens_zero():
  batch = next(data.BatchIterator("embedded_twenty_questions", "train", "decoder",
                                  {"inputs": 8, "targets": 44}, 8, seed=0))
  vocab = data.make_vocabulary("embedded")
  end, yes, no = (vocab.encode(w)[0] for w in ("?", "yes", "no"))
  for row in range(8):
    tokens = batch["decoder_target_tokens"][row]
    weights = batch["decoder_loss_weights"][row]
    rewards = batch["decoder_rewards"][row]
    assert set(tokens[weights > 0]) & {yes, no} == set()  # answers are the environment's
    assert np.all(np.isin(tokens[rewards != 0], [end]))  # rewards sit on the turn's "?"
    turns = int(np.sum((tokens == end) & (weights > 0)))
    assert rewards.sum() in (-turns, -turns + 1)  # -1 per turn, 0 for a right guess


def test_examples_fit_the_target_length_and_vocabulary():
  vocab = data.make_vocabulary("embedded")
  examples = embedded.generate("embedded_twenty_questions", "train")
  assert max(len(vocab.encode(ex["targets"])) for ex in examples) <= tq.MAX_TARGET_TOKENS
  assert all(vocab.unk_id not in vocab.encode(ex["targets"]) for ex in examples[:500])


def test_adding_a_task_keeps_the_first_tasks_token_ids():
  tokens = embedded.vocabulary_tokens()
  first = [t for t in tokens[:230]]
  assert first[-1] == "york" and tokens.index("sky") < 230
  assert set(tokens[230:]) == {"animal", "an", "crocodile", "it", "no", "tree", "yes"}


def test_delayed_colour_task_has_the_score_on_eos_only():
  batch = next(data.BatchIterator("embedded_ilql_delayed", "train", "decoder",
                                  {"inputs": 16, "targets": 20}, 16, seed=0))
  vocab = data.make_vocabulary("embedded")
  examples = {ex["inputs"]: ex for ex in embedded.generate("embedded_ilql", "train")}
  for row in range(16):
    tokens, rewards = batch["decoder_target_tokens"][row], batch["decoder_rewards"][row]
    nonzero = np.flatnonzero(rewards)
    assert all(tokens[i] == vocab.eos_id for i in nonzero)
    text = vocab.decode(tokens[:int(np.argmax(tokens == vocab.eos_id))].tolist())
    ex = examples[text]
    assert rewards.sum() == pytest.approx(ex["reward"]) == pytest.approx(
        ilql.score(ex["inputs"], ex["targets"]))


def test_top_fraction_keeps_the_best_episodes_with_seeded_ties():
  a = data.register_top_fraction("tq_top25_test", "embedded_twenty_questions", 0.25, seed=1)
  b = data.register_top_fraction("tq_top25_test_b", "embedded_twenty_questions", 0.25, seed=2)
  lengths = {"inputs": 8, "targets": 44}
  returns = lambda task: data.split_returns(task, "train", lengths, 20_000)
  full, kept = returns("embedded_twenty_questions"), returns("tq_top25_test")
  assert len(kept) == round(0.25 * len(full))
  assert kept.min() >= np.quantile(full, 0.75)
  np.testing.assert_array_equal(np.sort(kept), np.sort(returns("tq_top25_test_b")))
  assert not np.array_equal(a.source.columns("train")["targets"],
                            b.source.columns("train")["targets"])  # other ties kept
  assert len(a.source.columns("validation")["targets"]) == 1000
