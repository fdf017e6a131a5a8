"""Run the experiment suites: ``python -m experiments.run --outdir=docs/results``.

``--suite=offline_rl``: ILQL under delayed rewards against behaviour cloning
(`offline_rl.py`); ``--suite=imitation``: IQLearn against MLE with a known
expert (`imitation.py`); ``--suite=iqlearn_lambda``: IQLearn's lam up to 2 against
MLE on few demonstrations (`imitation.LAMBDA`); ``all`` (default) runs the three. Tables, plots and the
verdicts go to ``--outdir``; finished runs are cached in ``--workroot`` (one folder per
suite and settings), so an interrupted suite resumes. ``--quick`` checks every artefact in a few minutes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import tempfile
import time

from absl import flags

from irl_lm import cli
from experiments import flags as shared

shared.define()
SUITES = ("offline_rl", "imitation", "iqlearn_lambda")
flags.DEFINE_enum("suite", "all", ["all", *SUITES], "Which experiments.")
FLAGS = flags.FLAGS


def machine() -> str:
  """The CPU model and core count, printed with every result."""
  model = platform.processor() or "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{model}, {os.cpu_count()} cores"


def settings_dir(workroot: str, suite: str, settings: object) -> str:
  """``WORKROOT/<suite>-<hash of the settings>``: runs made with other settings (another
  step count, grid or seed count) are never reused."""
  text = json.dumps(dataclasses.asdict(settings), sort_keys=True)
  return os.path.join(workroot, f"{suite}-{hashlib.sha1(text.encode()).hexdigest()[:8]}")


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  shared.check()
  from experiments import imitation, offline_rl
  from experiments.report_imitation import imitation_report
  from experiments.report_lambda import lambda_report
  from experiments.report_offline_rl import offline_rl_report
  if FLAGS.teacher:
    from experiments.teacher import load_teacher
    load_teacher(FLAGS.teacher)  # a bad directory is one error line, before any work
  t0 = time.time()
  workroot = FLAGS.workroot or tempfile.mkdtemp(prefix="irl_lm_experiments_")
  os.makedirs(FLAGS.outdir, exist_ok=True)
  summary = _previous_summary()  # a suite run alone keeps the other suite's verdicts
  summary.update({"machine": machine(), "quick": FLAGS.quick, "workers": FLAGS.workers,
                  "workroot": workroot})
  print(f"experiments on {summary['machine']}; runs in {workroot}", flush=True)
  if FLAGS.suite in ("all", "offline_rl"):
    s = offline_rl.QUICK if FLAGS.quick else dataclasses.replace(offline_rl.Settings(),
                                                                 seeds=FLAGS.seeds)
    result = offline_rl.run_suite(workroot=settings_dir(workroot, "offline_rl", s), settings=s,
                                  workers=FLAGS.workers)
    _dump(result, "offline_rl.json")
    summary["offline_rl"] = offline_rl_report(result, FLAGS.outdir)
  if FLAGS.suite in ("all", "imitation"):
    s = imitation.QUICK if FLAGS.quick else dataclasses.replace(imitation.Settings(),
                                                                seeds=FLAGS.seeds)
    result = imitation.run_benchmark(teacher_dir=FLAGS.teacher,
                                     workroot=settings_dir(workroot, "imitation", s), settings=s,
                                     workers=FLAGS.workers)
    _dump(result, "imitation.json")
    summary["imitation"] = imitation_report(result, FLAGS.outdir)
  if FLAGS.suite in ("all", "iqlearn_lambda"):
    s = imitation.LAMBDA_QUICK if FLAGS.quick else dataclasses.replace(imitation.LAMBDA,
                                                                       seeds=FLAGS.seeds,
                                                                       tune_seeds=FLAGS.seeds)
    result = imitation.run_benchmark(teacher_dir=FLAGS.teacher,
                                     workroot=settings_dir(workroot, "iqlearn_lambda", s),
                                     settings=s, workers=FLAGS.workers)
    _dump(result, "iqlearn_lambda.json")
    summary["iqlearn_lambda"] = lambda_report(result, FLAGS.outdir)
  summary[f"seconds_{FLAGS.suite}"] = round(time.time() - t0)
  _dump(summary, "summary.json")
  print(f"done in {summary[f'seconds_{FLAGS.suite}']}s; results in {FLAGS.outdir}")


def _previous_summary() -> dict:
  """The other suites' verdicts and times from the last summary of the same kind (full or
  ``--quick``), when this run is one suite; else nothing."""
  path = os.path.join(FLAGS.outdir, "summary.json")
  if FLAGS.suite == "all" or not os.path.exists(path):
    return {}
  with open(path) as f:
    try:
      old = json.load(f)
    except json.JSONDecodeError:
      return {}
  if old.get("quick") != FLAGS.quick:
    return {}
  others = [x for x in SUITES if x != FLAGS.suite]
  return {k: v for k, v in old.items() if k in others or k in [f"seconds_{x}" for x in others]}


def _dump(payload: dict, name: str) -> None:
  with open(os.path.join(FLAGS.outdir, name), "w") as f:
    json.dump(payload, f, indent=1)


if __name__ == "__main__":
  cli.run(main)
