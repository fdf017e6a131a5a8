"""One suite alone: ``python -m experiments.run_offline_rl`` (the same as ``run --suite=offline_rl``)."""
from irl_lm import cli

from experiments import run

if __name__ == "__main__":
  run.FLAGS.set_default("suite", "offline_rl")
  cli.run(run.main)
