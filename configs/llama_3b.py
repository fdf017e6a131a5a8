"""A 3B Llama-layout decoder (open_llama_3b dimensions), 16 TPU chips or 8 GPUs: IQLearn or ``:ilql``.

Pick the loss after a colon (``:mle`` works too):
  python -m irl_lm.plan --config=configs/llama_3b.py:ilql --topology=v5e:4x4
  python -m irl_lm.main --config=configs/llama_3b.py:iqlearn --workdir=gs://BUCKET/llama3b_iq \
    --config.model.init_from=/models/open_llama_3b
"""
from irl_lm.training.config import base_config, with_loss


def get_config(loss: str = "iqlearn"):
  c = base_config()
  c.model.size = "llama-3b"
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.model.scan_layers = True
  c.model.vocab_size = 32000
  if loss == "ilql":
    c.data.task = "embedded_ilql"  # or your reward-labelled JSONL task
  else:
    c.data.task = "gsm8k"
    c.data.vocabulary = "hf_tokenizer"  # tokenizer.json from model.init_from
  c.data.inputs_length = 256
  c.data.targets_length = 256
  c.data.batch_size = 64
  c.optimizer.learning_rate = 2e-5
  c.optimizer.warmup_steps = 500
  c.optimizer.weight_decay = 0.0
  c.train.steps = 10000
  c.train.log_every = 50
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.eval.num_examples = 512
  c.eval.batch_size = 64
  c.mesh.shape = (1, -1, 1)
  return with_loss(c, loss, __file__)
