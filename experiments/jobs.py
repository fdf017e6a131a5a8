"""Run experiment jobs in worker processes, one CPU core each, with cached results.

A job is a named call ``fn(workdir=..., **kwargs) -> dict`` (``fn`` given as
``"module:function"`` so a spawned worker can import it). Its result is cached as
``WORKROOT/<name>/result.json``: a rerun of a suite skips finished jobs, so an
interrupted suite resumes. A run that diverges (the trainer's NaN stop) is a
result too, cached and reported; any other failure is reported and retried on
the next run. Independent jobs of one stage run in parallel; each
worker process is pinned to one core (small models on XLA:CPU gain little from
a second thread, so two one-core workers train about 1.5x as much per second
as one two-core process).
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import dataclasses
import importlib
import json
import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

RESULT = "result.json"
PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies


@dataclasses.dataclass(frozen=True)
class Job:
  """One cached unit of work: ``fn(**kwargs)`` with its result saved under ``name``."""

  name: str
  fn: str  # "package.module:function"
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


def result_path(workroot: str, name: str) -> str:
  return os.path.join(workroot, name, RESULT)


def cached(workroot: str, name: str) -> dict[str, Any] | None:
  """A finished job's result, or None."""
  path = result_path(workroot, name)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _call(fn: str, kwargs: dict[str, Any]) -> dict[str, Any]:
  module, name = fn.split(":")
  return getattr(importlib.import_module(module), name)(**kwargs)


@contextlib.contextmanager
def _log_to(path: str):
  """Sends log records to ``path`` (INFO and up) and only warnings to the console."""
  root = logging.getLogger()
  saved = root.level, [(h, h.level) for h in root.handlers]
  for h, _ in saved[1]:
    h.setLevel(max(h.level, logging.WARNING))
  handler = logging.FileHandler(path)
  handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(filename)s:%(lineno)d] "
                                         "%(message)s"))
  root.addHandler(handler)
  root.setLevel(logging.INFO)
  try:
    yield
  finally:
    root.removeHandler(handler)
    handler.close()
    root.setLevel(saved[0])
    for h, level in saved[1]:
      h.setLevel(level)


def _run(workroot: str, job: Job) -> dict[str, Any]:
  """Runs one job (in whichever process) and caches its result; failures are results too.

  The job's log goes to ``WORKROOT/<name>/log.txt``.
  """
  t0 = time.time()
  workdir = os.path.join(workroot, job.name)
  os.makedirs(workdir, exist_ok=True)
  from irl_lm.training.trainer import NonFiniteError
  try:
    with _log_to(os.path.join(workdir, "log.txt")):
      out = {"ok": True, **_call(job.fn, {"workdir": workdir, **job.kwargs})}
  except Exception as e:  # a failed or diverged run is reported, never dropped
    out = {"ok": False, "diverged": isinstance(e, NonFiniteError),
           "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
  out["seconds"] = round(time.time() - t0, 1)
  if out["ok"] or out["diverged"]:
    with open(result_path(workroot, job.name), "w") as f:
      json.dump(out, f)
  return out


_CORES: Any = None


def _die_with_parent() -> None:
  """Asks Linux to stop this worker when the suite's process dies, so that a killed suite
  leaves no worker writing results behind it (no-op elsewhere)."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
  except OSError:
    pass


def _init_worker(cores: Any, cache_dir: str) -> None:
  """Pins this worker to the next free core, before JAX or TensorFlow start threads."""
  _die_with_parent()
  with cores.get_lock():
    core = cores.value
    cores.value += 1
  available = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, {available[core % len(available)]})
  _configure(cache_dir)


def _configure(cache_dir: str) -> None:
  """A worker's set-up: CPU JAX with the shared compilation cache, TensorFlow loaded quietly."""
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  from irl_lm import cli
  cli.load_tensorflow_quietly([])
  import jax
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_stage(jobs: Sequence[Job], workroot: str, workers: int,
              progress: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
  """Runs the jobs not yet cached (in parallel with ``workers`` > 1); returns every result."""
  results = {j.name: r for j in jobs if (r := cached(workroot, j.name)) is not None}
  todo = [j for j in jobs if j.name not in results]
  cache_dir = os.path.join(workroot, "xla_cache")
  t0 = time.time()
  if workers <= 1 or len(todo) <= 1:
    _configure(cache_dir)
    for i, job in enumerate(todo):
      results[job.name] = _report(progress, i, todo, job, _run(workroot, job), t0)
    return results
  ctx = mp.get_context("spawn")
  cores = ctx.Value("i", 0)
  with cf.ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx,
                              initializer=_init_worker, initargs=(cores, cache_dir)) as pool:
    futures = {pool.submit(_run, workroot, job): job for job in todo}
    for i, fut in enumerate(cf.as_completed(futures)):
      job = futures[fut]
      results[job.name] = _report(progress, i, todo, job, fut.result(), t0)
  return results


def _report(progress: Callable[[str], None], i: int, todo: Sequence[Job], job: Job,
            result: dict[str, Any], t0: float) -> dict[str, Any]:
  status = "ok" if result["ok"] else f"FAILED ({result['error'][:200]})"
  progress(f"  [{i + 1}/{len(todo)}] {job.name}: {status} in {result['seconds']:.0f}s "
           f"({time.time() - t0:.0f}s into the stage)")
  return result
