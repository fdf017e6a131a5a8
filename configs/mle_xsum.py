"""MLE on XSUM with T5: the baseline for configs/iqlearn_xsum.py, identical but for the loss.

  python -m irl_lm.main --config=configs/mle_xsum.py --workdir=gs://BUCKET/xsum_mle \
    --config.model.init_from=/path/to/flan-t5-base --config.data.tfds_data_dir=/path/to/tfds
"""
import importlib.util
import os


def get_config():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "iqlearn_xsum.py")
  spec = importlib.util.spec_from_file_location("iqlearn_xsum", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.loss.name = "mle"
  return c
