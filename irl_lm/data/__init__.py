"""irl_lm data: seqio tasks, vocabularies, reward-labelled data and the batch iterator.

Public API:
  get_task(name) -> seqio.Task
  register_paper_tasks(vocabulary_kind, vocabulary_path, tfds_data_dir=None) -> list[str]
  register_embedded_tasks(data_seed=0) -> list[str]  (done on import)
  register_jsonl_reward_task(name, paths, vocabulary, ..., chat_template_from=None) -> seqio.Task
  register_hf_dataset_task(name, path, files, splits, vocabulary, ...) -> seqio.Task (local
    Hugging Face datasets: a save_to_disk directory, or JSON / CSV / Parquet files)
  load_chat_template(tokenizer_dir) -> ChatTemplate  (chat rows; see irl_lm.data.chat)
  register_id_task(name, {split: (prompts, continuations)}, IdVocabulary) -> seqio.Task
  register_top_fraction(name, base, fraction) -> seqio.Task  (filtered BC data)
  make_vocabulary(kind, path=None) -> seqio.Vocabulary; IdVocabulary(size, eos_id)
  BatchIterator(task, split, model_kind, sequence_lengths, global_batch_size, ...)
  eval_examples(task, split, ...), compute_metrics(task, examples, predictions)
  split_returns(task, split, sequence_lengths, max_examples) -> returns of finished episodes
  shard_info_from_mesh(mesh) -> seqio.ShardInfo
  score(prompt, response) -> float  (the embedded_ilql reward)
"""
import importlib.util
import os

from irl_lm.data.features import POLICY_FEATURES, batch_features, feature_lengths

# The pipeline needs TensorFlow and seqio; models, losses, algorithms and the train step
# import this package for its feature tables only, so they also run where neither is
# installed (an accelerator image, say).
PIPELINE = all(importlib.util.find_spec(m) for m in ("tensorflow", "seqio"))

if PIPELINE:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads
  import tensorflow as tf

  try:  # tf.data runs on the CPU; keep TensorFlow off accelerators that JAX owns.
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow's devices were already initialised elsewhere.
    pass

  # pylint: disable=wrong-import-position
  from irl_lm.data.chat import NoChatTemplateError, load_chat_template
  from irl_lm.data.embedded import score
  from irl_lm.data.feature_converters import (DecoderRewardFeatureConverter,
                                              EncDecRewardFeatureConverter, get_feature_converter)
  from irl_lm.data.framing import Framing, framing_for
  from irl_lm.data.hosts import shard_info_from_mesh
  from irl_lm.data.jsonl import Fields as JsonlFields
  from irl_lm.data.jsonl import JsonlFormatError
  from irl_lm.data.paper_tasks import register_paper_tasks
  from irl_lm.data.pipeline import BatchIterator, compute_metrics, eval_examples, split_returns
  from irl_lm.data.registry import get_task
  from irl_lm.data.tasks import (register_embedded_tasks, register_hf_dataset_task,
                                 register_id_task, register_jsonl_reward_task,
                                 register_top_fraction)
  from irl_lm.data.tfds_source import DatasetNotPreparedError
  from irl_lm.data.vocabularies import IdVocabulary, make_vocabulary

  register_embedded_tasks()
else:
  def __getattr__(name: str):
    raise ImportError(f"irl_lm.data.{name} needs tensorflow and seqio, which are not installed "
                      "(pip install -e . installs them)")


__all__ = [
    "BatchIterator", "DatasetNotPreparedError", "DecoderRewardFeatureConverter",
    "EncDecRewardFeatureConverter", "Framing", "IdVocabulary", "JsonlFields",
    "JsonlFormatError", "NoChatTemplateError", "POLICY_FEATURES", "batch_features",
    "compute_metrics", "eval_examples", "feature_lengths", "framing_for",
    "get_feature_converter", "get_task", "load_chat_template", "make_vocabulary",
    "register_embedded_tasks", "register_hf_dataset_task", "register_id_task",
    "register_jsonl_reward_task",
    "register_paper_tasks", "register_top_fraction", "score", "shard_info_from_mesh",
    "split_returns",
]
