"""Train, evaluate and checkpoint: ``python -m irl_lm.main --config=CONFIG --workdir=DIR``.

Exit status: 0 done, 2 a user error (one ``error:`` line on stderr), 75
pre-empted after saving a checkpoint (rerun the same command to resume).
"""
import os
import sys
import tempfile

from absl import flags, logging
from ml_collections import config_flags

from irl_lm import cli
from irl_lm.errors import ConfigError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and config.json go; rerun to resume.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  from irl_lm.training.config import check_present, validate
  from irl_lm.training.distributed import maybe_initialize
  from irl_lm.training.preemption import EXIT_PREEMPTED, Preempted
  from irl_lm.training.trainer import train_and_evaluate
  check_present(FLAGS.config)  # everything missing in one message, before validate's first
  validate(FLAGS.config)
  check_workdir(FLAGS.workdir)
  maybe_initialize(FLAGS.config.distributed)
  logging.info("training in %s (full config: config.json, full log: log.txt there)",
               FLAGS.workdir)
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except Preempted as e:
    logging.warning("%s", e)
    sys.exit(EXIT_PREEMPTED)


def check_workdir(workdir: str) -> None:
  """One line for a workdir that is a file, cannot be created or cannot be written."""
  if "://" in workdir:
    return
  where = f"--workdir={workdir}"
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError("the workdir is not a directory", where)
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".irl_lm_write_check"):
      pass
  except OSError as e:
    raise ConfigError(f"cannot write the workdir: {e.strerror or e}", where) from None


def log_file() -> str:
  return os.path.join(FLAGS.workdir, "log.txt")


if __name__ == "__main__":
  cli.run(main, log_file=log_file)
