"""The experiments' --quick mode produces every artefact, well-formed."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_suite_writes_every_artefact(tmp_path):
  out = tmp_path / "results"
  proc = subprocess.run([sys.executable, "-m", "irl_lm.experiments.run", "--quick",
                         f"--outdir={out}", f"--workroot={tmp_path / 'runs'}"],
                        capture_output=True, text=True, cwd=ROOT, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-4000:]
  for name in ("iqlearn_vs_mle", "ilql_vs_bc", "implied_reward"):
    md = (out / f"{name}.md").read_text()
    assert md.startswith("| ") and md.count("\n") >= 3, md
    rows = json.loads((out / f"{name}.json").read_text())["rows"]
    assert rows
  iq = json.loads((out / "iqlearn_vs_mle.json").read_text())["rows"]
  assert {r["method"] for r in iq} == {"MLE (lam=0)", "IQLearn lam=0.5"}
  for r in iq:
    assert 0 <= r["greedy_metric"] <= 100 and 0 <= r["self_bleu_t1.0"] <= 100
  il = json.loads((out / "ilql_vs_bc.json").read_text())["rows"]
  assert {r["method"] for r in il} == {"ILQL", "BC (MLE)"}
  ilql = next(r for r in il if r["method"] == "ILQL")
  assert all(0 <= ilql[f"reward_beta{b}"] <= 1 for b in ("0", "1", "4", "16"))
  corr = json.loads((out / "implied_reward.json").read_text())["rows"]
  assert all(r["n"] > 0 and (math.isnan(r["pearson"]) or -1 <= r["pearson"] <= 1) for r in corr)
  for png in ("iqlearn_tradeoff.png", "ilql_reward.png", "implied_reward.png"):
    data = (out / png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
  settings = json.loads((out / "settings.json").read_text())
  assert settings["quick"] and settings["runtime_seconds"] > 0
