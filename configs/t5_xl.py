"""T5-XL (3B, T5 v1.1 XL dimensions), sized for a 16-chip TPU slice or 8 GPUs: IQLearn or ``:ilql``.

Pure FSDP over every chip, bfloat16 compute, full remat, scanned layers.
Check the fit before renting anything:
  python -m irl_lm.plan --config=configs/t5_xl.py --topology=v5e:4x4
  python -m irl_lm.plan --config=configs/t5_xl.py:ilql --topology=v5e:4x4
Train (data and vocabulary from a Flan-T5-XL checkpoint directory):
  python -m irl_lm.main --config=configs/t5_xl.py --workdir=gs://BUCKET/t5xl_iq \
    --config.model.init_from=/models/flan-t5-xl --config.data.tfds_data_dir=gs://BUCKET/tfds
  python -m irl_lm.main --config=configs/t5_xl.py:ilql --workdir=gs://BUCKET/t5xl_ilql \
    --config.model.init_from=/models/flan-t5-xl --config.data.task=my_tasks:my_ilql_task
ILQL adds two vocab-sized Q heads, their targets, and V.
"""
from irl_lm.training.config import base_config, with_loss


def get_config(loss: str = "iqlearn"):
  c = base_config()
  c.model.size = "t5-xl"
  c.model.vocab_size = 32128  # T5's SentencePiece vocabulary, padded
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.model.scan_layers = True
  c.loss.iqlearn.lam = 0.1
  c.loss.iqlearn.lam_warmup_steps = 1000
  if loss == "ilql":
    c.data.task = "embedded_ilql"  # or your reward-labelled JSONL task
    c.data.inputs_length = 256
    c.data.targets_length = 128
  else:
    c.data.task = "xsum"
    c.data.vocabulary = "sentencepiece"  # spiece.model from model.init_from
    c.data.inputs_length = 512
    c.data.targets_length = 128
    c.train.best_metric = "eval/rougeL"
  c.data.batch_size = 64
  c.optimizer.learning_rate = 5e-5 if loss != "ilql" else 2e-5
  c.optimizer.warmup_steps = 1000 if loss != "ilql" else 500
  c.optimizer.weight_decay = 0.0
  c.train.steps = 20000 if loss != "ilql" else 10000
  c.train.log_every = 50
  c.train.eval_every = 2000 if loss != "ilql" else 1000
  c.train.checkpoint_every = 1000
  c.eval.num_examples = 1000 if loss != "ilql" else 512
  c.eval.batch_size = 64
  c.mesh.shape = (1, -1, 1)
  return with_loss(c, loss, __file__)
