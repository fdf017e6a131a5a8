"""Train, evaluate and checkpoint: ``python -m irl_lm.main --config=CONFIG --workdir=DIR``."""
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and config.json go; rerun to resume.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  del argv
  from irl_lm.training.config import validate
  from irl_lm.training.trainer import train_and_evaluate
  from irl_lm.training.distributed import maybe_initialize
  validate(FLAGS.config)
  maybe_initialize(FLAGS.config.distributed)
  logging.info("config:\n%s", FLAGS.config)
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
