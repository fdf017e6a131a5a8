"""Experiment jobs: cached results, and no worker outliving a killed suite."""
import os
import signal
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SLEEPER = """
import os, time
def sleep(workdir, seconds):
  with open(os.path.join(workdir, "pid"), "w") as f:
    f.write(str(os.getpid()))
  time.sleep(seconds)
  return {"slept": seconds}
"""

SUITE = """
import sys
from experiments.jobs import Job, run_stage
jobs = [Job(f"nap{i}", "sleeper:sleep", {"seconds": float(sys.argv[2])}) for i in range(2)]
print(run_stage(jobs, sys.argv[1], workers=2, progress=lambda _: None), flush=True)
"""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  with open(f"/proc/{pid}/stat") as f:
    return f.read().split()[2] != "Z"


def _suite(tmp_path, seconds):
  (tmp_path / "sleeper.py").write_text(textwrap.dedent(SLEEPER))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]), JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, "-c", SUITE, str(tmp_path / "runs"), str(seconds)],
                          env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_results_are_cached(tmp_path):
  out, _ = _suite(tmp_path, 0.1).communicate(timeout=300)
  assert "'slept': 0.1" in out and "'ok': True" in out
  first = (tmp_path / "runs" / "nap0" / "result.json").read_text()
  out, _ = _suite(tmp_path, 0.1).communicate(timeout=300)
  assert (tmp_path / "runs" / "nap0" / "result.json").read_text() == first


def test_workers_die_with_a_killed_suite(tmp_path):
  proc = _suite(tmp_path, 300)
  pids = [tmp_path / "runs" / f"nap{i}" / "pid" for i in range(2)]
  deadline = time.time() + 240
  while not all(p.exists() and p.read_text() for p in pids):
    assert time.time() < deadline and proc.poll() is None, "the workers never started"
    time.sleep(0.2)
  workers = [int(p.read_text()) for p in pids]
  assert all(_alive(w) for w in workers)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  deadline = time.time() + 30
  while any(_alive(w) for w in workers) and time.time() < deadline:
    time.sleep(0.2)
  assert not any(_alive(w) for w in workers)
  assert not (tmp_path / "runs" / "nap0" / "result.json").exists()
