"""A 3B Llama-layout decoder with ILQL (open_llama_3b dimensions), 16 TPU chips or 8 GPUs.

  python -m irl_lm.plan --config=configs/llama_3b_ilql.py --topology=v5e:4x4
  python -m irl_lm.main --config=configs/llama_3b_ilql.py --workdir=gs://BUCKET/llama3b_ilql \
    --config.model.init_from=/models/open_llama_3b
"""
from irl_lm.training.config import base_config


def get_config():
  c = base_config()
  c.model.size = "llama-3b"
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.model.scan_layers = True
  c.loss.name = "ilql"
  c.model.value_heads = c.loss.name == "ilql"
  c.data.task = "embedded_ilql" if c.loss.name == "ilql" else "gsm8k"
  c.data.vocabulary = "" if c.loss.name == "ilql" else "hf_tokenizer"
  c.data.inputs_length = 256
  c.data.targets_length = 256
  c.data.batch_size = 64
  c.model.vocab_size = 32000
  c.optimizer.learning_rate = 2e-5
  c.optimizer.warmup_steps = 500
  c.optimizer.weight_decay = 0.0
  c.train.steps = 10000
  c.train.log_every = 50
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.eval.num_examples = 512
  c.eval.batch_size = 64
  c.decoding.ilql_beta = 4.0
  c.mesh.shape = (1, -1, 1)
  return c
