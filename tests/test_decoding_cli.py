"""python -m irl_lm.generate on the gpt2 fixture with a tiny tokenizer."""
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np

from irl_lm import generate as cli
from irl_lm.decoding.prompts import decode_row, encode_prompt, prompt_batch
from irl_lm.decoding import default_config, generate
from irl_lm.models import from_pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HF_DIR = os.path.join(ROOT, "tests", "fixtures", "models", "gpt2")
VOCAB = os.path.join(ROOT, "tests", "fixtures", "decoding", "tokenizer.json")
PROMPTS = ["the cat sat", "what is two plus three?", "", "a dog"]


def write_prompts(tmp_path):
  path = tmp_path / "prompts.txt"
  path.write_text("\n".join(PROMPTS) + "\n")
  return str(path)


def test_command_line_writes_samples_and_scores(tmp_path):
  out = tmp_path / "out.jsonl"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1"}
  proc = subprocess.run(
      [sys.executable, "-m", "irl_lm.generate", f"--hf_dir={HF_DIR}", f"--vocab={VOCAB}",
       f"--input={write_prompts(tmp_path)}", f"--output={out}", "--batch_size=2",
       "--config.decoding.method=sample", "--config.decoding.num_samples=3",
       "--config.decoding.max_new_tokens=5", "--config.decoding.top_p=0.9"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "3/3" in proc.stderr  # the progress bar
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r["prompt"] for r in rows] == [p for p in PROMPTS if p]
  for r in rows:
    assert len(r["samples"]) == len(r["scores"]) == 3
    assert all(isinstance(s, str) for s in r["samples"])
    assert all(-1e4 < s <= 0 for s in r["scores"])


def test_run_matches_library_greedy(tmp_path):
  out = tmp_path / "out.jsonl"
  config = ml_collections.ConfigDict({"decoding": default_config()})
  config.decoding.max_new_tokens = 6
  cli.run(config, input_path=write_prompts(tmp_path), output_path=str(out), hf_dir=HF_DIR,
          vocab=VOCAB, batch_size=4)
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  model, params = from_pretrained(HF_DIR)
  vocab = cli.load_vocabulary(VOCAB)
  texts = [p for p in PROMPTS if p]
  ids = [encode_prompt(vocab, t, model.cfg.kind) for t in texts]
  res = generate(model, params, prompt_batch(ids, model.cfg.kind, 16), max_new_tokens=6)
  for i, row in enumerate(rows):
    want = decode_row(vocab, np.asarray(res.tokens[i, 0]), vocab.eos_id,
                      int(res.lengths[i, 0]))
    assert row["samples"] == [want]
    np.testing.assert_allclose(row["scores"], np.asarray(res.scores[i]), rtol=1e-5)


def test_run_with_behaviour_top_k_one_samples_the_greedy_text(tmp_path):
  prompts = write_prompts(tmp_path)
  config = ml_collections.ConfigDict({"decoding": default_config()})
  config.decoding.max_new_tokens = 6
  cli.run(config, input_path=prompts, output_path=str(tmp_path / "greedy.jsonl"),
          hf_dir=HF_DIR, vocab=VOCAB, batch_size=4)
  config.decoding.update(method="sample", num_samples=2, ilql_beta=8.0, behaviour_top_k=1,
                         use_target_heads=False)  # random value heads (none in the dir)
  cli.run(config, input_path=prompts, output_path=str(tmp_path / "filtered.jsonl"),
          hf_dir=HF_DIR, vocab=VOCAB, batch_size=4)
  read = lambda f: [json.loads(line) for line in (tmp_path / f).read_text().splitlines()]
  for greedy, filtered in zip(read("greedy.jsonl"), read("filtered.jsonl"), strict=True):
    assert filtered["samples"] == greedy["samples"] * 2
    assert filtered["scores"] == [0.0, 0.0]
