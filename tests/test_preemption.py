"""SIGTERM to a real training process saves the current step; resuming equals never stopping."""
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

from irl_lm.training.preemption import EXIT_PREEMPTED
from training_utils import assert_trees_equal, trained_params

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "configs" / "tiny.py"
STEPS = 80


def _command(workdir: Path) -> list[str]:
  return [sys.executable, "-m", "irl_lm.main", f"--config={TINY}", f"--workdir={workdir}",
          f"--config.train.steps={STEPS}", "--config.train.log_every=1",
          "--config.train.checkpoint_every=1000"]  # no periodic checkpoint before the end


ENV = {**os.environ, "JAX_NUM_CPU_DEVICES": "1", "JAX_PLATFORMS": "cpu"}


def test_sigterm_saves_and_resumed_run_equals_uninterrupted(tmp_path):
  target = random.Random().randint(3, 25)  # the step after which the signal is sent
  proc = subprocess.Popen(_command(tmp_path / "stopped"), cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  seen = []
  for line in proc.stderr:
    seen.append(line)
    m = re.search(r"step (\d+)/%d" % STEPS, line)
    if m and int(m.group(1)) >= target:
      proc.send_signal(signal.SIGTERM)
      break
  seen += proc.stderr.readlines()
  assert proc.wait(timeout=300) == EXIT_PREEMPTED, f"target {target}\n" + "".join(seen[-30:])
  log = "".join(seen)
  saved = int(re.search(r"pre-empted: checkpoint of step (\d+) committed", log).group(1))
  assert target <= saved < STEPS, (target, saved)
  assert "Traceback" not in log
  assert os.listdir(tmp_path / "stopped" / "checkpoints") == [str(saved)]

  resumed = subprocess.run(_command(tmp_path / "stopped"), cwd=ROOT, env=ENV, text=True,
                           capture_output=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"at step {saved}" in resumed.stderr
  whole = subprocess.run(_command(tmp_path / "whole"), cwd=ROOT, env=ENV, text=True,
                         capture_output=True, timeout=300)
  assert whole.returncode == 0, whole.stderr[-3000:]
  params, _ = trained_params(str(tmp_path / "stopped"), STEPS)
  want, _ = trained_params(str(tmp_path / "whole"), STEPS)
  assert_trees_equal(params, want)
