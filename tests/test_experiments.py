"""The offline-RL suite's --quick mode trains every policy and writes every table, plot and
verdict; a rerun reuses every finished run. (The imitation benchmark's quick run is in
test_experiments_imitation.py.)"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"


def test_quick_suite_writes_every_artefact(tmp_path):
  out, runs = tmp_path / "results", tmp_path / "runs"
  cmd = [sys.executable, "-m", "experiments.run", "--suite=offline_rl", "--quick",
         f"--outdir={out}", f"--workroot={runs}", "--workers=1"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "Traceback" not in proc.stdout + proc.stderr

  offline = json.loads((out / "offline_rl.json").read_text())
  rows = offline["rows"]
  assert {(r["task"], r["method"]) for r in rows} == {
      (t, m) for t in ("embedded_ilql_delayed", "embedded_twenty_questions")
      for m in ("bc", "pct_bc", "ilql")}
  assert all(r["ok"] and r["loss_curve"] for r in rows)
  ilql = next(r for r in rows if r["method"] == "ilql" and r["task"] == "embedded_ilql_delayed")
  assert set(ilql["returns"]["test"]) == {"beta0", "beta4"}
  assert all(0 <= v["mean"] <= 1 for v in ilql["returns"]["test"].values())
  dialogue = next(r for r in rows if r["task"] == "embedded_twenty_questions")
  assert all(-6 <= v["mean"] <= 0 for v in dialogue["returns"]["validation"].values())
  md = (out / "offline_rl.md").read_text()
  assert md.count("**holds") + md.count("**does not hold") == 6  # 3 claims x 2 tasks

  pngs = [f"offline_rl_{t}_{k}.png" for t in ("embedded_ilql_delayed",
                                                "embedded_twenty_questions")
           for k in ("returns", "beta", "bc_curves")]
  for name in pngs:
    data = (out / name).read_bytes()
    assert data[:8] == PNG and len(data) > 5000, name
  summary = json.loads((out / "summary.json").read_text())
  assert summary["quick"] and summary["seconds_offline_rl"] > 0 and "cores" in summary["machine"]
  assert set(summary["offline_rl"]) == {"embedded_ilql_delayed", "embedded_twenty_questions"}

  again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert again.returncode == 0, again.stderr[-4000:]
  assert "[1/" not in again.stdout  # every run was cached: nothing trains twice
