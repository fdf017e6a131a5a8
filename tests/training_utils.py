"""Tiny training configs shared by the trainer tests."""
import numpy as np

from irl_lm.training.config import base_config


def tiny_config(loss: str = "iqlearn", *, steps: int = 6, mesh=(1, 1, 1), num_devices: int = 1):
  c = base_config()
  c.model.size = "t5-tiny"
  c.loss.name = loss
  c.data.task = "embedded_ilql" if loss == "ilql" else "embedded_summarize"
  c.data.inputs_length = 32
  c.data.targets_length = 16
  c.data.batch_size = 8
  c.optimizer.warmup_steps = 2
  c.optimizer.learning_rate = 3e-3
  c.train.steps = steps
  c.train.log_every = 2
  c.train.eval_every = 1000
  c.train.checkpoint_every = 3
  c.train.peak_flops_per_device = 1e11
  c.train.async_checkpoints = True
  c.eval.num_examples = 8
  c.eval.batch_size = 8
  c.eval.generate = False
  c.mesh.shape = mesh
  c.mesh.num_devices = num_devices
  return c


def trained_params(workdir: str, step=None):
  from irl_lm.workdir import restore_params
  _, params, target_q, _ = restore_params(workdir, step)
  return params, target_q


def assert_trees_equal(a, b):
  import jax
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def assert_trees_close(a, b, atol=1e-5):
  import jax
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol,
                                                       rtol=1e-4), a, b)
