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
  tasks = ("embedded_ilql_delayed", "embedded_stitch")
  assert {(r["task"], r["method"]) for r in rows} == {
      (t, m) for t in tasks for m in ("bc", "pct_bc", "ilql", "ilql_scratch")}
  assert all(r["ok"] and r["loss_curve"] for r in rows)
  assert {r["task"] for r in offline["pretrain"]} == set(tasks)
  assert all(r["path"] for r in offline["pretrain"])
  for r in rows:  # every policy greedy and sampled; ILQL at each beta; values probed
    want = ({"greedy", "sample"} if r["method"] in ("bc", "pct_bc") else
            {f"beta{b} {d}" for b in (0, 4) for d in ("greedy", "sample")})
    assert set(r["returns"]["test"]) == want
    assert all(0 <= v["mean"] <= 1 for v in r["returns"]["test"].values())
    assert ("probe" in r) == r["method"].startswith("ilql")
  probe = next(r["probe"] for r in rows if r["method"] == "ilql")
  assert 0 <= probe["decisive"] <= 1 and len(probe["decisive_by_slot"]) == 4
  assert {(r["task"], r["model"], r["method"]) for r in offline["scale"]} == {
      (t, "gpt2-mini", m) for t in tasks for m in ("pretrain", "ilql")}
  refs = offline["references"]["embedded_stitch"]["returns"]
  assert refs["best logged episode = %BC's ceiling"] == 0.75 and refs["optimum"] == 1.0
  md = (out / "offline_rl.md").read_text()
  assert md.count("**holds") + md.count("**does not hold") == 8  # 4 claims x 2 tasks
  assert "## Model size (seed 0)" in md and md.count("what the value function learned") == 2

  pngs = [f"offline_rl_{t}_{k}.png" for t in tasks for k in ("returns", "beta", "bc_curves")]
  for name in pngs:
    data = (out / name).read_bytes()
    assert data[:8] == PNG and len(data) > 5000, name
  summary = json.loads((out / "summary.json").read_text())
  assert summary["quick"] and summary["seconds_offline_rl"] > 0 and "cores" in summary["machine"]
  assert set(summary["offline_rl"]) == set(tasks)

  again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert again.returncode == 0, again.stderr[-4000:]
  assert "[1/" not in again.stdout  # every run was cached: nothing trains twice
