"""GSM8k with T5 (accuracy of the final number after ``####``): IQLearn, or ``:mle``.

  python -m irl_lm.main --config=configs/iqlearn_gsm8k.py --workdir=DIR \
    --config.model.init_from=/path/to/flan-t5-base
"""
from irl_lm.training.config import base_config, with_loss


def get_config(loss: str = "iqlearn"):
  c = base_config()
  c.model.size = "t5-base"
  c.model.vocab_size = 32128  # T5's SentencePiece vocabulary, padded
  c.loss.iqlearn.lam = 0.1
  c.loss.iqlearn.lam_warmup_steps = 500
  c.data.task = "gsm8k"
  c.data.vocabulary = "sentencepiece"
  c.data.inputs_length = 256
  c.data.targets_length = 256
  c.data.batch_size = 32
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 500
  c.optimizer.weight_decay = 0.0
  c.train.steps = 10000
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.train.best_metric = "eval/accuracy"
  c.eval.num_examples = 374  # the held-out validation part of train; test stays unseen
  c.eval.batch_size = 32
  return with_loss(c, loss, __file__)
