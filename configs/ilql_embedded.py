"""ILQL on the embedded reward-labelled task (no download); ``:mle`` is behaviour cloning.

  python -m irl_lm.main --config=configs/ilql_embedded.py --workdir=DIR

Evaluation samples with ILQL-guided decoding (``decoding.ilql_beta``) and
reports the task's true reward of the generated responses. For your own JSONL
reward data, register a task (docs/data.md, "Registering a new dataset") and set
``--config.data.task=my_tasks:my_task``.
"""
from irl_lm.training.config import base_config, with_loss


def get_config(loss: str = "ilql"):
  c = base_config()
  c.model.size = "t5-tiny"
  c.data.task = "embedded_ilql"
  c.data.inputs_length = 32
  c.data.targets_length = 20
  c.data.batch_size = 32
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 100
  c.train.steps = 2000
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.train.best_metric = "eval/reward"
  c.eval.num_examples = 256
  c.eval.batch_size = 128
  return with_loss(c, loss, __file__)
