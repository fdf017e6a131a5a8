"""irl_lm: IQLearn and ILQL fine-tuning of language models in JAX/Flax."""

__version__ = "0.1.0"
