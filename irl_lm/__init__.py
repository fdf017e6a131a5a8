"""irl_lm: IQLearn and ILQL fine-tuning of language models in JAX/Flax."""
import os

# TensorFlow (the input pipeline) logs from C++ as soon as it loads; keep its INFO
# and warnings (oneDNN, missing CUDA) off the console unless the user asks for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
