"""The imitation benchmark's teacher: exact likelihoods, sampling, errors, and a quick run on a
Hugging Face directory with no tokenizer."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import log_softmax

from irl_lm.errors import ConfigError
from experiments import teacher as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")


@pytest.mark.parametrize("name", ["gpt2", "llama_gqa"])
def test_teacher_likelihood_matches_transformers_logits(name):
  path = os.path.join(MODELS, name)
  golden = np.load(os.path.join(path, "golden.npz"))
  tokens, logits = golden["decoder_input_tokens"], golden["logits"]
  teacher = T.load_teacher(path)
  for row in range(len(tokens)):
    t = dataclasses.replace(teacher, start_id=int(tokens[row, 0]))
    got = T.token_log_likelihood(t, tokens[row:row + 1, 1:4], tokens[row:row + 1, 4:], 0.7)
    want = log_softmax(logits[row] / 0.7, axis=-1)[np.arange(3, 8), tokens[row, 4:]]
    np.testing.assert_allclose(got[0], want, atol=2e-5)


def test_teacher_start_id_comes_from_config_json():
  assert T.load_teacher(os.path.join(MODELS, "llama_gqa")).start_id == 1  # bos_token_id
  assert T.load_teacher(os.path.join(MODELS, "gpt2")).start_id == 95
  assert T.load_teacher(os.path.join(MODELS, "gpt2"), start_id=0).start_id == 0


def test_samples_are_reproducible_and_follow_the_prompt():
  teacher = T.load_teacher(os.path.join(MODELS, "gpt2"))
  prompts = np.array([[3, 4, 5], [6, 7, 8]])
  a = T.sample(teacher, prompts, 6, 1.0, seed=3)
  assert a.shape == (2, 6) and a.max() < teacher.vocab_size
  np.testing.assert_array_equal(a, T.sample(teacher, prompts, 6, 1.0, seed=3))
  assert not np.array_equal(a, T.sample(teacher, prompts, 6, 1.0, seed=4))
  cold = T.sample(teacher, prompts, 6, 1e-4, seed=5)  # temperature -> 0 is greedy
  np.testing.assert_array_equal(cold, T.sample(teacher, prompts, 6, 1e-4, seed=6))
  warm = np.mean([T.token_log_likelihood(teacher, prompts, T.sample(teacher, prompts, 6, 1.0, k),
                                         1.0).mean() for k in range(3)])
  assert T.token_log_likelihood(teacher, prompts, cold, 1.0).mean() > warm


def test_an_encoder_decoder_teacher_is_refused_in_one_line():
  with pytest.raises(ConfigError, match=r"causal \(decoder-only\).*found v1_1 \(encdec\)"):
    T.load_teacher(os.path.join(MODELS, "t5_v1_1"))


def test_quick_benchmark_runs_on_a_hugging_face_directory_without_tokenizer(tmp_path):
  teacher = os.path.join(MODELS, "llama_gqa")
  assert not [f for f in os.listdir(teacher) if "token" in f]
  out = tmp_path / "results"
  proc = subprocess.run([sys.executable, "-m", "experiments.run_imitation", "--quick",
                         f"--teacher={teacher}", f"--outdir={out}", "--workers=1",
                         f"--workroot={tmp_path / 'runs'}"],
                        capture_output=True, text=True, cwd=ROOT, timeout=1500)
  assert proc.returncode == 0, proc.stderr[-4000:]
  result = json.loads((out / "imitation.json").read_text())
  assert result["teacher"]["path"] == teacher and result["data"]["vocab_size"] == 96
  rows = result["rows"]
  assert rows and all(r["ok"] for r in rows)
  assert {(r["method"], r["init"]) for r in rows} == {
      ("mle", "pretrained"), ("iqlearn", "pretrained"), ("online", "pretrained"),
      ("gail", "pretrained"), ("mle", "scratch"), ("iqlearn", "scratch")}
  for r in rows:
    for split in ("validation", "test"):
      assert set(r["splits"][split]) == {"greedy", "beam", "T0.5", "T1"}
      for m in r["splits"][split].values():
        assert m["quality"] < 0 and 0 <= m["self_bleu"] <= 100 + 1e-9 and len(m["by_position"]) == 24
  md = (out / "imitation.md").read_text()
  verdicts = md.split("## Verdicts")[1].split("\n## ")[0]
  assert verdicts.count("\n- ") == 7 and verdicts.count("**") == 14  # each claim has a verdict
  for name in ("imitation_curves.png", "imitation_compounding.png",
               "imitation_implied_reward.png"):
    data = (out / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name

  # the lam sweep on the same teacher: MLE and IQLearn only, every lam with every seed
  proc = subprocess.run([sys.executable, "-m", "experiments.run", "--suite=iqlearn_lambda",
                         "--quick", f"--teacher={teacher}", f"--outdir={out}", "--workers=1",
                         f"--workroot={tmp_path / 'runs'}"],
                        capture_output=True, text=True, cwd=ROOT, timeout=1500)
  assert proc.returncode == 0, proc.stderr[-4000:]
  sweep = json.loads((out / "iqlearn_lambda.json").read_text())
  assert sorted((r["method"], r["lam"]) for r in sweep["tuning"]) == [
      ("iqlearn", 0.5), ("iqlearn", 2.0), ("mle", 0.0)]
  assert sweep["settings"]["n_train"] == 32 and all(r["ok"] for r in sweep["rows"])
  md = (out / "iqlearn_lambda.md").read_text()
  assert md.count("**does not hold**") + md.count("**holds") == 2  # 1 seed never wins 4
  assert (out / "iqlearn_lambda.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  summary = json.loads((out / "summary.json").read_text())
  assert {"imitation", "iqlearn_lambda"} <= set(summary)  # one suite keeps the other's verdicts


def test_default_teacher_trains_exports_and_loads(tmp_path):
  info = T.train_default_teacher(str(tmp_path), steps=3)
  teacher = T.load_teacher(info["path"], info["start_id"])
  assert teacher.model.cfg.d_model == 128 and teacher.start_id == 0
  assert teacher.vocab_size == 256 and np.isfinite(info["train_loss"])
  prompts = T.sample(teacher, np.zeros((2, 0), np.int32), 4, 1.0, seed=0)
  assert T.token_log_likelihood(teacher, prompts, prompts, 0.7).shape == (2, 4)


def test_lambda_verdicts_follow_their_rule(tmp_path):
  """IQLearn lam 1 better on 5/5 seeds at 3 of 4 decodings (a tie at greedy): both claims
  hold; worse: neither."""
  from experiments.report_lambda import lambda_report
  decodings = ["greedy", "beam", "T0.5", "T1"]

  def run(method, lam, lr, seed, gain):
    q = lambda d: -1.2 + 0.01 * seed + (gain if d != "greedy" else 0.0)  # greedy: a tie
    return {"ok": True, "method": method, "lam": lam, "lr": lr, "seed": seed,
            "name": f"{method}{lam}{lr}{seed}", "final_train_loss": 1.0,
            "splits": {s: {d: {"quality": q(d)} for d in decodings}
                       for s in ("validation", "test")}}

  for gain, want in ((0.01, ("holds", "holds")), (-0.01, ("does not hold", "does not hold"))):
    result = {"settings": {"temperatures": [0.5, 1.0], "student": "s", "pretrain_steps": 1,
                           "finetune_steps": 1, "n_train": 5, "cont_len": 3, "mle_lrs": [1e-3],
                           "iqlearn_lr": 3e-3, "lams": [1.0], "seeds": 5},
              "data": {"expert_quality": -1.0},
              "chosen": {"mle": {"lam": 0.0, "lr": 1e-3}, "iqlearn": {"lam": 1.0, "lr": 3e-3}},
              "tuning": [run("mle", 0.0, 1e-3, k, 0.0) for k in range(5)]
                        + [run("iqlearn", 1.0, 3e-3, k, gain) for k in range(5)]}
    v = lambda_report(result, str(tmp_path))
    assert v["beats_mle"].startswith(f"**{want[0]}**"), v
    assert v["large_lam"].startswith(f"**{want[1]}**"), v
    assert ("at 3 of 4 decodings" in v["beats_mle"]) == (gain > 0)
