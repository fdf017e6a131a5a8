"""T5-XL (3B) with ILQL heads (two vocab-sized Q heads, their targets, and V), 16 TPU chips or 8 GPUs.

  python -m irl_lm.plan --config=configs/t5_xl_ilql.py --topology=v5e:4x4
  python -m irl_lm.main --config=configs/t5_xl_ilql.py --workdir=gs://BUCKET/t5xl_ilql \
    --config.model.init_from=/models/flan-t5-xl --config.data.task=my_tasks:my_ilql_task
"""
from irl_lm.training.config import base_config


def get_config():
  c = base_config()
  c.model.size = "t5-xl"
  c.model.value_heads = True
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.model.scan_layers = True
  c.loss.name = "ilql"
  c.data.task = "embedded_ilql"
  c.data.inputs_length = 256
  c.data.targets_length = 128
  c.data.batch_size = 64
  c.model.vocab_size = 32128
  c.optimizer.learning_rate = 2e-5
  c.optimizer.warmup_steps = 500
  c.optimizer.weight_decay = 0.0
  c.train.steps = 10000
  c.train.log_every = 50
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.decoding.ilql_beta = 4.0
  c.eval.num_examples = 512
  c.eval.batch_size = 64
  c.mesh.shape = (1, -1, 1)
  return c
