"""Every command printed in README.md and docs/ works as printed.

Each shell line of a fenced block that starts an entry point (``python -m irl_lm.*``,
``python -m experiments.*``, ``launch/*``, ``sbatch``) must appear in ``SHORT_FORMS`` (run here,
in order, in a short form: fewer steps, a tiny model, the documented substitutes for data and
checkpoints that cannot be downloaded, a dry run for the launchers) or in ``ELSEWHERE`` (run
by the named test, whose source holds the command's distinctive argument). A new printed
command fails ``test_every_printed_command_is_checked`` until it gets one of the two.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA = ROOT / "tests" / "fixtures" / "pretrained" / "llama_bos"
ENTRY = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:python -m (?:irl_lm|experiments)\.|launch/|bash launch/"
                   r"|sbatch )")
TINY_RUN = ["--config.train.steps=2", "--config.train.eval_every=2",
            "--config.train.checkpoint_every=2", "--config.eval.num_examples=4",
            "--config.eval.batch_size=4", "--config.data.batch_size=4"]
# Printed command -> flags appended (later flags win); the substitutions are in ``_argv``.
SHORT_FORMS = {
    "python -m irl_lm.main --config=configs/quickstart.py --workdir=/tmp/irl_lm_quickstart":
        TINY_RUN,
    "python -m irl_lm.main --config=configs/quickstart.py:mle --workdir=/tmp/run "
    "--config.train.steps=2000": TINY_RUN,
    "python -m irl_lm.export --workdir=/tmp/run --output=/tmp/run_hf": [],
    "python -m irl_lm.generate --hf_dir=DIR --input=prompts.txt --output=out.jsonl "
    "--config.decoding.method=sample --config.decoding.num_samples=4 --config.decoding.top_p=0.9 "
    "--config.decoding.max_new_tokens=64": [],
    "python -m irl_lm.generate --workdir=RUN [--step=N] --input=prompts.txt --output=out.jsonl":
        [],
    "python -m irl_lm.plan --config=configs/t5_xl.py --topology=v5e:4x4":
        ["--config.model.size=t5-tiny"],
    "python -m irl_lm.plan --config=configs/llama_3b.py:ilql --devices=8 --device_memory=80GiB "
    "--chip=h100": ["--config.model.size=llama-tiny"],
    "python -m irl_lm.main --config=configs/quickstart.py:mle --workdir=/tmp/mine "
    "--config.model.init_from=/models/Llama-3.2-1B --config.data.task=jsonl "
    "--config.data.jsonl.train=train.jsonl --config.data.jsonl.validation=valid.jsonl "
    "--config.data.jsonl.fields.prompt=question --config.data.jsonl.fields.response=answer "
    "--config.data.jsonl.fields.reward=": [*TINY_RUN, "--config.data.inputs_length=24",
                                           "--config.data.targets_length=24"],
    "launch/tpu_pod.sh --dry-run --project my-project --zone us-west4-a --accelerator-type "
    "v5litepod-16 --spot --bucket gs://my-bucket/irl_lm --config configs/quickstart.py "
    "--config.train.steps=2000 --config.data.batch_size=256": [],
    "launch/tpu_pod.sh --project my-project --zone us-central2-b --accelerator-type v4-32 "
    "--bucket my-bucket --config configs/iqlearn_xsum.py --run-name xsum-v4 --delete":
        ["--dry-run"],
    "launch/tpu_pod.sh --config configs/quickstart.py": ["--dry-run"],
    "launch/tpu_pod.sh --config configs/quickstart.py --source "
    "https://github.com/me/irl_lm.git --git-ref my-branch": ["--dry-run"],
    "CONFIG=configs/iqlearn_xsum.py WORKDIR=/shared/runs/xsum VENV=$PWD/.venv sbatch --nodes=4 "
    "launch/slurm_gpu.sbatch --config.data.batch_size=512": [],
    "DRY_RUN=1 CONFIG=configs/quickstart.py WORKDIR=/shared/runs/quickstart "
    "COORDINATOR_HOST=node01 SLURM_NNODES=2 SLURM_GPUS_ON_NODE=8 SLURM_PROCID=9 SLURM_LOCALID=1 "
    "bash launch/slurm_gpu.sbatch --config.train.steps=2000": [],
    "PROCESS_PER=node CONFIG=configs/iqlearn_xsum.py WORKDIR=/shared/runs/xsum sbatch --nodes=4 "
    "--ntasks-per-node=1 launch/slurm_gpu.sbatch": [],
}
# Printed command -> (the test that runs it, a string that test's source holds).
ELSEWHERE = {
    "python -m irl_lm.main --config=configs/quickstart.py --workdir=/tmp/my_run "
    "--config.data.task=my_tasks:my_task --config.eval.num_examples=2":
        ("test_data_register_example.py", "my_tasks:my_task"),
    "python -m experiments.run --outdir=docs/results": ("test_experiments.py",
                                                         '"experiments.run"'),
    "python -m experiments.run_offline_rl --quick": ("test_experiments.py", "offline_rl"),
    "python -m experiments.run_imitation --teacher=HF_DIR --quick":
        ("test_experiments_imitation.py", '"experiments.run_imitation", "--quick"'),
    "python -m experiments.run --suite=iqlearn_lambda --teacher=HF_DIR --quick":
        ("test_experiments_imitation.py", '"--suite=iqlearn_lambda"'),
}
# What the placeholders and the files no one can download stand for here.
SUBSTITUTES = {"/tmp/irl_lm_quickstart": "quickstart", "/tmp/run_hf": "run_hf",
               "/tmp/run": "run", "/tmp/mine": "mine", "DIR": "run_hf", "RUN": "run",
               "prompts.txt": "prompts.txt", "out.jsonl": "out.jsonl",
               "train.jsonl": "train.jsonl", "valid.jsonl": "valid.jsonl"}


def printed() -> dict[str, dict[str, str]]:
  """Entry-point lines of the fenced shell blocks of README.md and docs/*.md, in order,
  continuation lines joined, comments dropped, each once; each with the variables an
  ``export`` line before it in its block sets."""
  out: dict[str, dict[str, str]] = {}
  for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", path.read_text(), re.S):
      if lang not in ("", "bash", "sh", "shell"):
        continue
      exported: dict[str, str] = {}
      for line in block.replace("\\\n", " ").splitlines():
        line = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
        if line.startswith("export "):
          exported.update(w.split("=", 1) for w in shlex.split(line)[1:])
        elif ENTRY.match(line) and line not in out:
          out[line] = dict(exported)
  return out


def test_every_printed_command_is_checked():
  commands = printed()
  assert len(commands) >= 15
  unchecked = [c for c in commands if c not in SHORT_FORMS and c not in ELSEWHERE]
  assert not unchecked, f"printed but never run: {unchecked}"
  stale = [c for c in [*SHORT_FORMS, *ELSEWHERE] if c not in commands]
  assert not stale, f"checked but no longer printed: {stale}"


def test_the_commands_run_elsewhere_are_in_those_tests():
  for command, (test_file, marker) in ELSEWHERE.items():
    assert marker in (ROOT / "tests" / test_file).read_text(), (command, test_file)


def _argv(command: str, exported: dict[str, str], tmp: Path
          ) -> tuple[list[str], dict[str, str]]:
  """(argv, environment) of a printed command in its short form under ``tmp``."""
  words = shlex.split(command.replace("$PWD", str(ROOT)))
  env = dict(exported)
  while re.match(r"^[A-Z_]+=", words[0]):
    key, value = words.pop(0).split("=", 1)
    env[key] = value
  if words[0] == "sbatch":  # SLURM runs the script on every node; here, a dry run of one
    words = ["bash", *words[next(i for i, w in enumerate(words) if w.startswith("launch/")):]]
    env = {"DRY_RUN": "1", "SLURM_NNODES": "4", "SLURM_GPUS_ON_NODE": "8", "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0", "COORDINATOR_HOST": "node01", **env}
  if words[0].startswith("launch/"):
    words = ["bash", *words]
  if words[0] == "python":
    words[0] = sys.executable
  out = []
  for w in words:
    if w == "[--step=N]":
      continue
    key, eq, value = w.partition("=")
    if value == "/models/Llama-3.2-1B":
      value = str(LLAMA)
    elif value in SUBSTITUTES:
      value = str(tmp / SUBSTITUTES[value])
    out.append(key + eq + value if eq else w)
  return out + SHORT_FORMS[command], env


def test_the_printed_commands_run_in_their_short_forms(tmp_path):
  """In the order printed (the export reads the run trained before it, generate reads the
  export); a TPU topology plan without the tpu extra says in one line which extra it needs."""
  (tmp_path / "prompts.txt").write_text("summarize: the cat sat on the mat.\nthe dog ran.\n")
  for split, name in (("train", "train.jsonl"), ("validation", "valid.jsonl")):
    rows = [json.loads(line) for line in (LLAMA / "data" / f"{split}.jsonl").read_text()
            .splitlines()]
    (tmp_path / name).write_text("".join(json.dumps({"question": r["prompt"],
                                                      "answer": r["response"]}) + "\n"
                                         for r in rows))
  base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
          "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
  for command, exported in printed().items():
    if command not in SHORT_FORMS:
      continue
    argv, env = _argv(command, exported, tmp_path)
    (tmp_path / "out.jsonl").unlink(missing_ok=True)  # the two generate lines are alternatives
    proc = subprocess.run(argv, cwd=ROOT, env={**base, **env}, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode == 2 and "--topology" in command and "pip install 'irl_lm[tpu]'" in \
        proc.stderr:
      continue
    assert proc.returncode == 0, f"{command}\n{' '.join(argv)}\n{proc.stderr[-3000:]}"
    if "irl_lm.generate" in command:  # a line of samples per prompt
      assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
  assert (tmp_path / "run_hf" / "tokenizer.json").exists()
