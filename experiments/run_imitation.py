"""One suite alone: ``python -m experiments.run_imitation`` (the same as ``run --suite=imitation``)."""
from irl_lm import cli

from experiments import run

if __name__ == "__main__":
  run.FLAGS.set_default("suite", "imitation")
  cli.run(run.main)
