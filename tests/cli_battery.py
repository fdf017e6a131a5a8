"""Runs many command lines of one entry point in one process and records what each printed.

  python tests/cli_battery.py ENTRY CASES.json RESULTS.json

ENTRY is main, generate, export, plan or experiments. Each case is
``{"id", "args", "cwd"}``; its result is ``{"code", "stderr"}`` with file
descriptor 2 captured, so library and C++ output count too.
"""
import copy
import importlib
import json
import os
import sys
import tempfile

MODULES = {"main": "irl_lm.main", "generate": "irl_lm.generate", "export": "irl_lm.export",
           "plan": "irl_lm.plan", "experiments": "experiments.run"}


def run_captured(fn):
  """(fn(), everything written to fd 2 meanwhile)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as err:
    os.dup2(err.fileno(), 2)
    try:
      code = fn()
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
    err.seek(0)
    return code, err.read().decode("utf-8", "replace")


def _reset(live, clean) -> None:
  for key, value in clean.items():
    if hasattr(value, "items"):
      _reset(live[key], value)
    else:
      live[key] = value


def main() -> None:
  entry, cases_file, results_file = sys.argv[1:]
  with open(cases_file) as f:
    cases = json.load(f)
  # Flags defined at import (DEFINE_config_dict) read their overrides from sys.argv then, as a
  # real command line has them: offer every case's overrides.
  sys.argv = [entry] + sorted({a for c in cases for a in c["args"] if a.startswith("--config.")})
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/
  module = importlib.import_module(MODULES[entry])
  from absl import flags
  from irl_lm import cli
  # An inline ConfigDict flag's overrides write into its default; put it back between cases.
  inline = [f.value for name, f in flags.FLAGS._flags().items()
            if type(f).__name__ == "_ConfigFlag" and f.value is not None]
  pristine = [copy.deepcopy(c) for c in inline]
  results = {}
  home = os.getcwd()
  for case in cases:
    for live, clean in zip(inline, pristine):
      _reset(live, clean)
    if any(a.startswith("--config=") for a in case["args"]):  # a config file: its overrides
      for name in [n for n in flags.FLAGS if n.startswith("config.")]:  # are defined anew
        delattr(flags.FLAGS, name)
    os.chdir(case["cwd"])
    sys.path.insert(0, case["cwd"])
    try:
      code, err = run_captured(lambda: cli.invoke(
          module.main, [entry] + case["args"], getattr(module, "log_file", None)))
    finally:
      sys.path.remove(case["cwd"])
      os.chdir(home)
    results[case["id"]] = {"code": code, "stderr": err}
    print(f"{case['id']}: exit {code}", flush=True)
  with open(results_file, "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
