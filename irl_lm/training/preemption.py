"""Pre-emption: a SIGTERM (TPU VM maintenance, SLURM pre-emption) saves and stops the run.

A single process catches SIGTERM itself. A multi-process run asks JAX's
preemption sync manager (started by ``jax.distributed.initialize``), which
receives the notice on any process and names one step at which every process
stops, so all save the same step.
"""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import jax
from jax.experimental import multihost_utils

EXIT_PREEMPTED = 75  # sysexits EX_TEMPFAIL: "try again"; launch scripts relaunch on it


class Preempted(Exception):
  """The run saved a checkpoint at ``step`` after a pre-emption notice and stopped."""

  def __init__(self, step: int, directory: str):
    self.step, self.directory = step, directory
    super().__init__(f"pre-empted: saved step {step} in {directory}; rerun the same command "
                     "to resume")


class PreemptionWatch:
  """``reached(step)`` is True at the step where the run should save and stop."""

  def __init__(self):
    self._notice = threading.Event()
    self._previous = None
    self._multi = jax.process_count() > 1
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum: int, frame: FrameType | None) -> None:
    del frame
    logging.warning("received signal %d: saving a checkpoint after this step", signum)
    self._notice.set()

  def reached(self, step: int) -> bool:
    if self._multi:
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # the preemption service is disabled
        return False
    return self._notice.is_set()

  def close(self) -> None:
    """Puts back the SIGTERM handler that was there before."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
