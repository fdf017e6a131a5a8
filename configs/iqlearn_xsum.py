"""XSUM with T5 (the paper's summarisation setting): IQLearn, or ``:mle`` for the baseline.

  python -m irl_lm.main --config=configs/iqlearn_xsum.py --workdir=gs://BUCKET/xsum_iq \
    --config.model.init_from=/path/to/flan-t5-base --config.data.tfds_data_dir=/path/to/tfds
  python -m irl_lm.main --config=configs/iqlearn_xsum.py:mle --workdir=gs://BUCKET/xsum_mle ...

XSUM needs a manual TFDS download (the error says how). ``model.size`` picks
t5-small ... t5-xl when training from scratch; ``init_from`` overrides it.
"""
from irl_lm.training.config import base_config, with_loss


def get_config(loss: str = "iqlearn"):
  c = base_config()
  c.model.size = "t5-base"
  c.model.vocab_size = 32128  # T5's SentencePiece vocabulary, padded
  c.loss.iqlearn.lam = 0.1
  c.loss.iqlearn.lam_warmup_steps = 1000
  c.data.task = "xsum"
  c.data.vocabulary = "sentencepiece"
  c.data.inputs_length = 512
  c.data.targets_length = 64
  c.data.batch_size = 64
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 1000
  c.optimizer.weight_decay = 0.0
  c.train.steps = 20000
  c.train.log_every = 100
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  c.train.best_metric = "eval/rougeL"
  c.eval.num_examples = 1000
  c.eval.batch_size = 64
  return with_loss(c, loss, __file__)
