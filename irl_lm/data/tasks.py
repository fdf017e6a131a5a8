"""Task factories: the embedded offline tasks and reward-labelled JSONL tasks.

Embedded tasks (registered when `irl_lm.data` is imported, embedded vocabulary):

| task                  | splits (size)                               | metric                          |
|-----------------------|---------------------------------------------|---------------------------------|
| `embedded_summarize`  | train 20000, validation 1000, test 1000     | ROUGE-1/2/L                     |
| `embedded_arithmetic` | same                                        | final-number accuracy           |
| `embedded_ilql`       | same, reward-labelled                       | mean reward (`embedded.score`)  |
"""
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import seqio

from irl_lm import metrics
from irl_lm.data import embedded, preprocessors
from irl_lm.data.embedded import ilql
from irl_lm.data.jsonl import JsonlRewardSource
from irl_lm.data.postprocessors import prompt_as_target, strip_text
from irl_lm.data.registry import add_task
from irl_lm.data.sources import InMemorySource
from irl_lm.data.vocabularies import make_vocabulary

EMBEDDED_METRICS: dict[str, tuple[Callable, Callable]] = {  # name -> (metric, postprocess)
    "embedded_summarize": (metrics.rouge, strip_text),
    "embedded_arithmetic": (metrics.final_number_accuracy, strip_text),
    "embedded_ilql": (ilql.reward_metric, prompt_as_target),
}


def _embedded_loader(task: str, data_seed: int) -> Callable[[str], dict[str, np.ndarray]]:
  def load(split: str) -> dict[str, np.ndarray]:
    examples = embedded.generate(task, split, data_seed)
    columns = {k: np.array([ex[k] for ex in examples], dtype=object) for k in ("inputs", "targets")}
    if "turns" in examples[0]:  # dense rewards: one action turn per rewarded piece
      width = max(len(ex["turns"]) for ex in examples)
      texts = np.full((len(examples), width), "", dtype=object)
      rewards = np.zeros((len(examples), width), np.float32)
      for r, ex in enumerate(examples):
        for t, (text, reward) in enumerate(ex["turns"]):
          texts[r, t], rewards[r, t] = text, reward
      columns.update(turn_texts=texts, turn_rewards=rewards,
                     turn_is_action=(texts != "").astype(np.int32))
    elif "reward" in examples[0]:
      columns["reward"] = np.array([ex["reward"] for ex in examples], np.float32)
    return columns
  return load


def register_embedded_tasks(data_seed: int = 0) -> list[str]:
  """(Re)registers the three embedded tasks, generated from `data_seed`; returns their names."""
  vocabulary = make_vocabulary("embedded")
  for name, (metric, postprocess) in EMBEDDED_METRICS.items():
    add_task(seqio.Task(
        name,
        source=InMemorySource(_embedded_loader(name, data_seed), tuple(embedded.SPLIT_SIZES)),
        preprocessors=[preprocessors.tokenize_and_label],
        output_features=preprocessors.output_features(vocabulary),
        postprocess_fn=postprocess,
        metric_fns=[metric],
        shuffle_buffer_size=None))
  return list(EMBEDDED_METRICS)


def register_jsonl_reward_task(name: str, paths: str | Mapping[str, str],
                               vocabulary: seqio.Vocabulary, *, skip_invalid: bool = False,
                               metric_fns: Sequence[Callable] = (),
                               postprocess_fn: Callable = strip_text) -> seqio.Task:
  """Registers a Task over reward-labelled JSONL files (format: `irl_lm.data.jsonl`).

  `paths` is one file (the "train" split) or a mapping split -> file. Malformed
  lines raise `JsonlFormatError` naming file and line, or with `skip_invalid` are
  skipped and counted (`task.source.num_skipped(split)`).
  """
  split_to_path = {"train": paths} if isinstance(paths, str) else dict(paths)
  return add_task(seqio.Task(
      name,
      source=JsonlRewardSource(split_to_path, skip_invalid=skip_invalid),
      preprocessors=[preprocessors.tokenize_and_label],
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=postprocess_fn,
      metric_fns=list(metric_fns),
      shuffle_buffer_size=None))
