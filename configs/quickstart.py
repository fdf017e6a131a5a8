"""Quickstart: a tiny T5 trained with IQLearn on the embedded summarisation task.

Runs in about two minutes on 2 CPU cores:
  python -m irl_lm.main --config=configs/quickstart.py --workdir=/tmp/irl_lm_quickstart
The MLE baseline of the same run: --config=configs/quickstart.py:mle
"""
from irl_lm.training.config import base_config, with_loss


def get_config(loss: str = "iqlearn"):
  c = base_config()
  c.model.size = "t5-tiny"
  c.data.task = "embedded_summarize"
  c.data.inputs_length = 64
  c.data.targets_length = 24
  c.data.batch_size = 32
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 50
  c.train.steps = 600
  c.train.log_every = 50
  c.train.eval_every = 200
  c.train.checkpoint_every = 200
  c.eval.num_examples = 64
  c.eval.batch_size = 64
  return with_loss(c, loss, __file__)
