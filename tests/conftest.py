"""Test setup: 8 simulated CPU devices, set before any JAX backend starts, and one
persistent XLA compilation cache per test session (shared by the xdist workers and the
subprocesses they start, removed at the end), so an identical program compiles once."""
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Made by the controller before the workers start (they inherit it); a cache of the
# user's own is used as it is and never removed.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="irl_lm_tests_xla_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", int(os.environ["JAX_NUM_CPU_DEVICES"]))


def pytest_sessionfinish(session, exitstatus):
  if _OWN_CACHE and not hasattr(session.config, "workerinput"):  # after every worker
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
