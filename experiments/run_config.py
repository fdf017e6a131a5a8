"""The training config of one experiment run: a small model on one CPU device."""
from __future__ import annotations

import ml_collections


def single_run_config(*, task: str, loss: str, model: str, lengths: tuple[int, int],
                      steps: int, learning_rate: float, seed: int, log_points: int = 20,
                      max_warmup: int = 100, eval_examples: int = 256, batch_size: int = 32
                      ) -> ml_collections.ConfigDict:
  """``batch_size`` rows on one device, ``log_points`` log lines, one checkpoint and eval at the end
  (eval loss only: the experiments measure rollouts themselves)."""
  from irl_lm.training.config import base_config
  c = base_config()
  c.seed = seed
  c.model.size = model
  c.loss.name = loss
  c.data.task = task
  c.data.inputs_length, c.data.targets_length = lengths
  c.data.batch_size = batch_size
  c.optimizer.learning_rate = learning_rate
  c.optimizer.warmup_steps = min(max_warmup, steps // 10 + 1)
  c.train.steps = steps
  c.train.log_every = max(1, steps // log_points)
  c.train.eval_every = c.train.checkpoint_every = steps
  c.train.keep_checkpoints = 1
  c.train.peak_flops_per_device = 2e11  # not measured at start-up: the runs are short
  c.eval.num_examples, c.eval.batch_size, c.eval.generate = eval_examples, 64, False
  c.mesh.num_devices = 1
  return c
