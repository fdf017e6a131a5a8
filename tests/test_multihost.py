"""Two local processes x 4 CPU devices (jax.distributed + gloo) train, checkpoint and hand over
to one 8-device process, which continues exactly where the two left off."""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np

from irl_lm.training.checkpoints import Checkpointer
from irl_lm.training.trainer import train_and_evaluate
from multihost_config import config_for

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_two_processes(workdir: str, steps: int) -> list[dict]:
  port = _free_port()
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_NUM_CPU")}
  procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "multihost_worker.py"), str(port),
                             str(i), workdir, str(steps)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  results = []
  for i in range(2):
    with open(os.path.join(workdir, f"process_{i}.json")) as f:
      results.append(json.load(f))
  return results


def test_two_processes_then_one(tmp_path):
  two = str(tmp_path / "two")
  procs = _run_two_processes(two, steps=4)
  # Each process read its own shard of the data: different examples.
  assert [p["shard"] for p in procs] == [[0, 2], [1, 2]]
  a, b = (np.asarray(p["first_inputs"]) for p in procs)
  assert a.shape == b.shape == (4, 32)
  assert not any((row == other).all() for row in a for other in b)
  assert procs[0]["loss"] == procs[1]["loss"]
  assert Checkpointer(two, config_for(4).train).all_steps() == [3, 4]

  # One process with 8 devices restores the 2-process checkpoint of step 3 and runs step 4.
  one = str(tmp_path / "one")
  shutil.copytree(two, one)
  shutil.rmtree(os.path.join(one, "checkpoints", "4"))
  resumed = train_and_evaluate(config_for(4), one)
  np.testing.assert_allclose(resumed["train/loss"], procs[0]["loss"], rtol=1e-5)
