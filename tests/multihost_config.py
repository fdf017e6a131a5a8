"""The tiny config shared by the multi-process test and its worker."""
from training_utils import tiny_config


def config_for(steps: int):
  c = tiny_config("iqlearn", steps=steps, mesh=(2, 4, 1), num_devices=0)
  c.optimizer.schedule = "constant"
  c.optimizer.warmup_steps = 0
  c.train.log_every = 1
  c.train.checkpoint_every = 3
  c.train.keep_checkpoints = 5
  return c
