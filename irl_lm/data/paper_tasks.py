"""The IQLearn paper's benchmarks as seqio Tasks over TFDS (read-only, never downloaded here).

| task          | TFDS source                   | inputs -> targets          | metric              |
|---------------|-------------------------------|----------------------------|---------------------|
| `xsum`        | xsum (manual download)        | document -> summary        | ROUGE-1/2/L         |
| `gsm8k`       | gsm8k                         | question -> worked answer  | final-number accuracy |
| `tldr`        | reddit (Webis TL;DR-17)       | content -> summary         | ROUGE-1/2/L         |
| `wmt19_de_en` | wmt19_translate/de-en         | German -> English          | BLEU                |

The prompt format depends on the vocabulary family: T5 SentencePiece models get
T5-style prefixes ("summarize: ..."); byte-level BPE (GPT-2/Llama) decoders get a
plain prompt that the response continues ("...\\nTL;DR:" and a leading space).
TL;DR has only a train split in TFDS; its last 2% is held out as validation/test. GSM8k
has train and test only; the last 5% of its train split is held out as validation, so a run
selects checkpoints on validation and reports on test.
"""
import functools
import re
from dataclasses import dataclass

import seqio
import tensorflow as tf

from irl_lm import metrics
from irl_lm.data import preprocessors
from irl_lm.data.postprocessors import strip_text
from irl_lm.data.registry import add_task
from irl_lm.data import tfds_source
from irl_lm.data.tfds_source import PreparedTfdsSource
from irl_lm.data.vocabularies import make_vocabulary
from irl_lm.errors import ConfigError


@dataclass(frozen=True)
class PaperTask:
  tfds_name: str
  splits: tuple[str, ...] | dict[str, str]
  t5_format: tuple[str, str]  # (inputs template, targets template)
  decoder_format: tuple[str, str]
  metric_fns: tuple


PAPER_TASKS = {
    "xsum": PaperTask(
        "xsum:1.1.0", ("train", "validation", "test"),
        ("summarize: {document}", "{summary}"), ("{document}\nSummary:", " {summary}"),
        (metrics.rouge,)),
    "gsm8k": PaperTask(
        "gsm8k:1.0.0", {"train": "train[:95%]", "validation": "train[95%:]", "test": "test"},
        ("question: {question}", "{answer}"), ("Question: {question}\nAnswer:", " {answer}"),
        (metrics.final_number_accuracy,)),
    "tldr": PaperTask(
        "reddit:1.0.0",
        {"train": "train[:98%]", "validation": "train[98%:99%]", "test": "train[99%:]"},
        ("summarize: {content}", "{summary}"), ("{content}\nTL;DR:", " {summary}"),
        (metrics.rouge,)),
    "wmt19_de_en": PaperTask(
        "wmt19_translate/de-en:1.0.0", ("train", "validation"),
        ("translate German to English: {de}", "{en}"), ("German: {de}\nEnglish:", " {en}"),
        (metrics.bleu,)),
}


def not_prepared(task: str, data_dir: str | None) -> str | None:
  """How to prepare the paper task ``task``'s TFDS data in ``data_dir`` (None: prepared, or
  ``task`` is no paper task)."""
  if task not in PAPER_TASKS:
    return None
  return tfds_source.not_prepared(PAPER_TASKS[task].tfds_name, data_dir)


_CALCULATOR = re.compile(r"<<[^>]*>>")


def drop_calculator_annotations(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Removes GSM8k's ``<<48/2=24>>`` calculator annotations from the answers."""
  return dataset.map(lambda ex: dict(ex, answer=tf.strings.regex_replace(
      ex["answer"], _CALCULATOR.pattern, "")))


def register_paper_tasks(vocabulary_kind: str, vocabulary_path: str,
                         tfds_data_dir: str | None = None) -> list[str]:
  """Registers `xsum`, `gsm8k`, `tldr`, `wmt19_de_en` with one vocabulary; returns the names.

  `vocabulary_kind` is "sentencepiece" (T5 prompts) or "hf_tokenizer" (decoder
  prompts) and `vocabulary_path` the local file (see `make_vocabulary`).
  Registering again replaces the tasks. Reading a split whose TFDS data is not
  prepared in `tfds_data_dir` raises `DatasetNotPreparedError` explaining how to
  prepare it.
  """
  if vocabulary_kind not in ("sentencepiece", "hf_tokenizer"):
    raise ConfigError("Paper tasks need a 'sentencepiece' or 'hf_tokenizer' vocabulary, "
                      f"got {vocabulary_kind!r}")
  vocabulary = make_vocabulary(vocabulary_kind, vocabulary_path)
  for name, spec in PAPER_TASKS.items():
    inputs, targets = spec.t5_format if vocabulary_kind == "sentencepiece" else spec.decoder_format
    steps = [drop_calculator_annotations] if name == "gsm8k" else []
    steps += [functools.partial(preprocessors.format_text, inputs=inputs, targets=targets),
              preprocessors.tokenize_and_label]
    add_task(seqio.Task(
        name,
        source=PreparedTfdsSource(spec.tfds_name, tfds_data_dir, spec.splits),
        preprocessors=steps,
        output_features=preprocessors.output_features(vocabulary),
        postprocess_fn=strip_text,
        metric_fns=list(spec.metric_fns),
        shuffle_buffer_size=10_000))
  return list(PAPER_TASKS)
