"""T5-XL (3B, T5 v1.1 XL dimensions) with IQLearn, sized for a 16-chip TPU slice or 8 GPUs.

Pure FSDP over every chip, bfloat16 compute, full remat, scanned layers.
Check the fit before renting anything:
  python -m irl_lm.plan --config=configs/t5_xl_iqlearn.py --topology=v5e:4x4
Train (data and vocabulary from a Flan-T5-XL checkpoint directory):
  python -m irl_lm.main --config=configs/t5_xl_iqlearn.py --workdir=gs://BUCKET/t5xl_iq \
    --config.model.init_from=/models/flan-t5-xl --config.data.tfds_data_dir=gs://BUCKET/tfds
"""
from irl_lm.training.config import base_config


def get_config():
  c = base_config()
  c.model.size = "t5-xl"
  c.model.dtype = "bfloat16"
  c.model.remat = "full"
  c.model.scan_layers = True
  c.loss.name = "iqlearn"
  c.loss.iqlearn.lam = 0.1
  c.loss.iqlearn.lam_warmup_steps = 1000
  c.data.task = "xsum"
  c.data.vocabulary = "sentencepiece"
  c.data.inputs_length = 512
  c.data.targets_length = 128
  c.data.batch_size = 64
  c.optimizer.learning_rate = 5e-5
  c.optimizer.warmup_steps = 1000
  c.optimizer.weight_decay = 0.0
  c.train.steps = 20000
  c.train.log_every = 50
  c.train.eval_every = 2000
  c.train.checkpoint_every = 1000
  c.train.best_metric = "eval/rougeL"
  c.eval.num_examples = 1000
  c.eval.batch_size = 64
  c.mesh.shape = (1, -1, 1)
  return c
