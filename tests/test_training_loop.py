"""The training loop keeps the device busy: it reads a step only after dispatching the next."""
import types

import pytest

from irl_lm.training import trainer
from training_utils import tiny_config


class Recorded:
  """A device scalar stand-in that records when the host reads it."""

  def __init__(self, events: list, name: str, step: int, value: int = 0):
    self.events, self.name, self.step, self.value = events, name, step, value

  def __int__(self) -> int:
    self.events.append(("read", self.name, self.step))
    return self.value

  __index__ = __int__


class FakeRun:
  """``train_step`` records its dispatch and returns recorders for everything it outputs."""

  def __init__(self, events: list, bad_from: int | None = None):
    self.events, self.bad_from = events, bad_from
    self.n = 0

  def shard_batch(self, batch):
    return batch

  def saved(self, state):
    return state.saved()

  def train_step(self, state, batch):
    self.n += 1
    self.events.append(("dispatch", self.n))
    streak = 0 if self.bad_from is None else max(0, self.n - self.bad_from + 1)
    new = types.SimpleNamespace(step=Recorded(self.events, "state.step", self.n, self.n),
                                nonfinite=Recorded(self.events, "state.nonfinite", self.n),
                                saved=dict)
    return new, {"loss": 1.0, "learning_rate": 0.1, "skipped_total": 0,
                 "nonfinite_streak": Recorded(self.events, "streak", self.n, streak)}


def run_loop(events, steps, log_every=100, bad_from=None, max_bad=3):
  c = tiny_config(steps=steps)
  c.train.log_every = log_every
  c.train.eval_every = c.train.checkpoint_every = 100
  c.train.max_nonfinite_steps = max_bad
  ckpt = types.SimpleNamespace(save=lambda *a, **k: events.append(("save",)), wait=lambda: None,
                               latest_step=lambda: None, directory="ckpt")
  log = types.SimpleNamespace(write=lambda *a: None, progress=lambda *a: None)
  perf = type("Perf", (), {"start": lambda self, s: None,
                           "__call__": lambda self, s: {"perf/tokens_per_s": 0.0,
                                                        "perf/mfu": 0.0}})()
  preemption = types.SimpleNamespace(reached=lambda step: False)
  batches = type("Batches", (), {"__next__": lambda self: {}, "state": lambda self: {}})()
  state = types.SimpleNamespace(step=0)
  return trainer._loop(c, state, FakeRun(events, bad_from), batches, lambda s: {}, ckpt, log,
                       perf, preemption)


def test_each_step_is_read_only_after_the_next_is_dispatched():
  events = []
  run_loop(events, steps=6)
  reads = [e for e in events if e[0] == "read"]
  assert all(e[1] == "streak" for e in reads)  # nothing of the state is read per step
  assert [e[2] for e in reads] == [1, 2, 3, 4, 5, 6]
  order = {e: i for i, e in enumerate(events)}
  for n in range(1, 6):
    assert order[("dispatch", n + 1)] < order[("read", "streak", n)]


def test_log_steps_read_their_own_step_before_logging():
  events = []
  run_loop(events, steps=4, log_every=2)
  order = {e: i for i, e in enumerate(events)}
  assert order[("read", "streak", 2)] < order[("dispatch", 3)]


def test_nonfinite_streak_stops_one_step_late_naming_the_step():
  events = []
  with pytest.raises(trainer.NonFiniteError, match=r"3 consecutive steps \(up to step 5\)"):
    run_loop(events, steps=20, bad_from=3)
  assert ("dispatch", 6) in events and ("dispatch", 7) not in events
