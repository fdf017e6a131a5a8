"""Task factories: the embedded offline tasks and reward-labelled JSONL tasks.

Embedded tasks (registered when `irl_lm.data` is imported, embedded vocabulary):

| task                        | splits (size)                           | metric                         |
|-----------------------------|-----------------------------------------|--------------------------------|
| `embedded_summarize`        | train 20000, validation 1000, test 1000 | ROUGE-1/2/L                    |
| `embedded_arithmetic`       | same                                    | final-number accuracy          |
| `embedded_ilql`             | same, dense per-clause rewards          | mean reward (`embedded.score`) |
| `embedded_ilql_delayed`     | the same logged data, reward at EOS only | mean reward (`embedded.score`) |
| `embedded_twenty_questions` | same, multi-turn, -1 per agent turn     | none (evaluated by rollouts)   |
| `embedded_stitch`           | same, reward at EOS, no response right  | mean reward (`embedded.score`) |
"""
import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import seqio

from irl_lm import metrics
from irl_lm.data import embedded, preprocessors
from irl_lm.data.chat import ChatTemplate, load_chat_template
from irl_lm.data.embedded import ilql
from irl_lm.data.hf_datasets import HfDatasetSource
from irl_lm.data.jsonl import DEFAULT_FIELDS, Fields, JsonlRewardSource
from irl_lm.data.postprocessors import prompt_as_target, strip_text
from irl_lm.data.registry import add_task, get_task
from irl_lm.data.sources import InMemorySource
from irl_lm.data.vocabularies import IdVocabulary, make_vocabulary
from irl_lm.errors import ConfigError

@dataclasses.dataclass(frozen=True)
class EmbeddedTask:
  """An embedded task: its generator, metrics and how its logged rewards are laid out.

  ``turns``: the rewards of the generator's ``turns`` (per clause or per dialogue
  turn, on the turn's last token); otherwise its scalar ``reward`` (if any) sits
  on the response's EOS.
  """

  generator: str
  metric_fns: tuple[Callable, ...]
  postprocess: Callable
  turns: bool = False


EMBEDDED_TASKS: dict[str, EmbeddedTask] = {
    "embedded_summarize": EmbeddedTask("embedded_summarize", (metrics.rouge,), strip_text),
    "embedded_arithmetic": EmbeddedTask("embedded_arithmetic", (metrics.final_number_accuracy,),
                                        strip_text),
    "embedded_ilql": EmbeddedTask("embedded_ilql", (ilql.reward_metric,), prompt_as_target,
                                  turns=True),
    "embedded_ilql_delayed": EmbeddedTask("embedded_ilql", (ilql.reward_metric,),
                                          prompt_as_target),
    "embedded_twenty_questions": EmbeddedTask("embedded_twenty_questions", (), strip_text,
                                              turns=True),
    "embedded_stitch": EmbeddedTask("embedded_stitch", (ilql.reward_metric,), prompt_as_target),
}


def _turn_columns(turns: Sequence[Sequence[Sequence]]) -> dict[str, np.ndarray]:
  """Padded turn columns from per-example turns, each ``(text, reward)`` (an action) or
  ``(text, is_action, reward)``."""
  width = max(len(t) for t in turns)
  texts = np.full((len(turns), width), "", dtype=object)
  is_action = np.zeros((len(turns), width), np.int32)
  rewards = np.zeros((len(turns), width), np.float32)
  for r, row in enumerate(turns):
    for t, turn in enumerate(row):
      texts[r, t], rewards[r, t] = turn[0], turn[-1]
      is_action[r, t] = turn[1] if len(turn) == 3 else 1
  return {"turn_texts": texts, "turn_is_action": is_action, "turn_rewards": rewards,
          "num_turns": np.array([len(t) for t in turns], np.int32)}


def _embedded_loader(spec: EmbeddedTask, data_seed: int
                     ) -> Callable[[str], dict[str, np.ndarray]]:
  def load(split: str) -> dict[str, np.ndarray]:
    examples = embedded.generate(spec.generator, split, data_seed)
    columns = {k: np.array([ex[k] for ex in examples], dtype=object) for k in ("inputs", "targets")}
    if spec.turns:
      columns.update(_turn_columns([ex["turns"] for ex in examples]))
    elif "reward" in examples[0]:
      columns["reward"] = np.array([ex["reward"] for ex in examples], np.float32)
    return columns
  return load


def register_embedded_tasks(data_seed: int = 0) -> list[str]:
  """(Re)registers the embedded tasks, generated from `data_seed`; returns their names."""
  vocabulary = make_vocabulary("embedded")
  for name, spec in EMBEDDED_TASKS.items():
    add_task(seqio.Task(
        name,
        source=InMemorySource(_embedded_loader(spec, data_seed), tuple(embedded.SPLIT_SIZES)),
        preprocessors=[preprocessors.tokenize_and_label],
        output_features=preprocessors.output_features(vocabulary),
        postprocess_fn=spec.postprocess,
        metric_fns=list(spec.metric_fns),
        shuffle_buffer_size=None))
  return list(EMBEDDED_TASKS)


def register_jsonl_reward_task(name: str, paths: str | Mapping[str, str],
                               vocabulary: seqio.Vocabulary, *, skip_invalid: bool = False,
                               metric_fns: Sequence[Callable] = (),
                               postprocess_fn: Callable = strip_text,
                               chat_template_from: str | None = None,
                               chat_template: ChatTemplate | None = None,
                               fields: Fields = DEFAULT_FIELDS) -> seqio.Task:
  """Registers a Task over reward-labelled JSONL files (format: `irl_lm.data.jsonl`).

  `paths` is one file (the "train" split) or a mapping split -> file. Malformed
  lines raise `JsonlFormatError` naming file and line, or with `skip_invalid` are
  skipped and counted (`task.source.num_skipped(split)`). Chat rows ("messages")
  are rendered with the chat template of the tokenizer directory
  `chat_template_from` (loaded now: a directory without one raises here), or with
  `chat_template` itself. `fields` names the files' fields (`jsonl.Fields`).
  """
  split_to_path = {"train": paths} if isinstance(paths, str) else dict(paths)
  if chat_template_from:
    chat_template = load_chat_template(chat_template_from)
  return add_task(seqio.Task(
      name,
      source=JsonlRewardSource(split_to_path, skip_invalid=skip_invalid,
                               chat_template=chat_template, fields=fields),
      preprocessors=[preprocessors.tokenize_and_label],
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=postprocess_fn,
      metric_fns=list(metric_fns),
      shuffle_buffer_size=None))


def register_hf_dataset_task(name: str, path: str, files: Mapping[str, str],
                             splits: Sequence[str], vocabulary: seqio.Vocabulary, *,
                             chat_template: ChatTemplate | None = None,
                             fields: Fields = DEFAULT_FIELDS) -> seqio.Task:
  """Registers a Task over a local Hugging Face dataset (``hf_datasets.HfDatasetSource``:
  the ``save_to_disk`` directory ``path``, else ``files[split]``), rows as in the JSONL
  tasks, columns named by ``fields``."""
  return add_task(seqio.Task(
      name,
      source=HfDatasetSource(path, files, tuple(splits), chat_template=chat_template,
                             fields=fields),
      preprocessors=[preprocessors.tokenize_and_label],
      output_features=preprocessors.output_features(vocabulary),
      postprocess_fn=strip_text,
      shuffle_buffer_size=None))


def register_id_task(name: str, splits: Mapping[str, tuple[Sequence[Sequence[int]],
                                                          Sequence[Sequence[int]]]],
                     vocabulary: IdVocabulary, finished: bool = True) -> seqio.Task:
  """Registers a Task over token ids: ``splits[split] = (prompts, continuations)``.

  No EOS is added (a continuation is a fixed-length piece of text, not a whole
  answer); the ids go through the usual pipeline as `IdVocabulary` text. With
  ``finished=False`` every continuation is an episode cut short (``done`` false): its
  targets end in a weight-0 slot that IQLearn and ILQL bootstrap from, so the
  targets length must leave room for it.
  """
  text = lambda rows: np.array([" ".join(map(str, r)) for r in rows], dtype=object)
  columns = {split: {"inputs": text(p), "targets": text(c),
                     "done": np.full(len(c), int(finished), np.int32)}
             for split, (p, c) in splits.items()}
  features = {k: seqio.Feature(vocabulary, add_eos=False) for k in ("inputs", "targets")}
  return add_task(seqio.Task(
      name, source=InMemorySource(columns.__getitem__, tuple(columns)),
      preprocessors=[preprocessors.tokenize_and_label], output_features=features,
      postprocess_fn=strip_text, metric_fns=[], shuffle_buffer_size=None))


def _column_returns(columns: Mapping[str, np.ndarray]) -> np.ndarray:
  """The return of each row of an in-memory split's raw columns (0 without rewards)."""
  if "turn_rewards" in columns:
    return columns["turn_rewards"].sum(axis=1)
  if "reward" in columns:
    return np.asarray(columns["reward"], np.float64)
  return np.zeros(len(next(iter(columns.values()))))


def register_top_fraction(name: str, base: str, fraction: float, seed: int = 0,
                          split: str = "train") -> seqio.Task:
  """Registers `name`: task `base` whose `split` keeps only its best ``fraction`` of
  episodes by return (filtered behaviour cloning, "%BC"); other splits are unchanged.

  Ties at the cut are broken by a permutation drawn from ``seed``. `base` must have
  an in-memory source (the embedded and JSONL tasks).
  """
  if not 0 < fraction <= 1:
    raise ConfigError("fraction out of range", f"register_top_fraction({name!r})",
                      expected="0 < fraction <= 1", found=fraction)
  task = get_task(base)
  source = task.source
  if not isinstance(source, InMemorySource):
    raise ConfigError(f"task {base!r} has no in-memory source to filter",
                      f"register_top_fraction({name!r})")

  def load(s: str) -> dict[str, np.ndarray]:
    columns = source.columns(s)
    if s != split:
      return columns
    returns = _column_returns(columns)
    order = np.random.default_rng(seed).permutation(len(returns))
    keep = order[np.argsort(-returns[order], kind="stable")][:max(1, round(fraction * len(order)))]
    return {k: v[np.sort(keep)] for k, v in columns.items()}

  return add_task(seqio.Task(
      name, source=InMemorySource(load, tuple(source.splits)),
      preprocessors=list(task.preprocessors), output_features=task.output_features,
      postprocess_fn=task.postprocess_fn, metric_fns=list(task.metric_fns),
      shuffle_buffer_size=None))
