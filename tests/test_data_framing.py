"""A pretrained decoder is trained, evaluated and decoded in its own text format.

The fixture (tests/fixtures/make_pretrained_fixture.py) is a tiny Llama trained on
``<s> story </s>`` with its byte-level BPE tokenizer, whose template adds ``<s>``;
golden.npz holds transformers' encoding of each validation prompt + response, its
loss per response token and its greedy continuation of each prompt.
"""
import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from irl_lm import data
from irl_lm import generate as cli
from irl_lm.data.framing import Framing, framing_for
from irl_lm.decoding import default_config
from irl_lm.errors import ConfigError
from irl_lm.models import from_pretrained, save_pretrained
from irl_lm.training import builders
from irl_lm.training.trainer import train_and_evaluate
from irl_lm.workdir import restore_params
from training_utils import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "pretrained", "llama_bos")
GOLDEN = np.load(os.path.join(FIXTURE, "golden.npz"))
LENGTHS = {"inputs": 24, "targets": 24}


def jsonl_config(loss: str = "mle", fixture: str = FIXTURE) -> ml_collections.ConfigDict:
  c = tiny_config(loss, steps=1)
  c.model.init_from = fixture
  c.data.task = "jsonl"
  c.data.jsonl.train = os.path.join(FIXTURE, "data", "train.jsonl")
  c.data.jsonl.validation = os.path.join(FIXTURE, "data", "validation.jsonl")
  c.data.jsonl.fields.reward = ""
  c.data.inputs_length, c.data.targets_length = LENGTHS["inputs"], LENGTHS["targets"]
  return c


def golden_rows() -> list[list[int]]:
  return [[int(t) for t in row if t >= 0] for row in GOLDEN["ids"]]


def validation_batch(pack: bool = False) -> dict[str, np.ndarray]:
  task = builders.get_task(jsonl_config())
  it = data.BatchIterator(task, "validation", "decoder", LENGTHS, 8, shuffle=False, pack=pack,
                          repeat=False)
  return next(it)


def test_tokenizer_framing_adds_its_bos_once_and_no_separator():
  f = Framing(start=(1,), prompt_eos=False, eos_id=2)
  assert f.prompt([5, 6, 2]) == [1, 5, 6]
  assert f.prompt([1, 5, 2]) == [1, 5]  # a chat template already rendered the BOS
  assert f.prompt([2]) == [1]
  no_bos = Framing(start=(), prompt_eos=False, eos_id=9)
  assert no_bos.prompt([5, 9]) == [5]
  assert no_bos.prompt([9]) == [9]  # an empty prompt starts from EOS
  own = Framing(start=(0,), prompt_eos=True, eos_id=1)
  assert own.prompt([0, 5, 1]) == [0, 0, 5, 1]
  for framing in (f, no_bos, own):
    for ids in ([5, 6, 2], [1, 5, 2], [2], [9], [], [0, 5, 1]):
      got = framing.prompt_tf(np.array(ids, np.int32)).numpy().tolist()
      assert got == framing.prompt(ids), (framing, ids)


def test_framing_follows_the_vocabulary():
  assert framing_for(data.make_vocabulary("hf_tokenizer", FIXTURE)) == Framing((1,), False, 2)
  assert framing_for(data.make_vocabulary("embedded")) == Framing((0,), True, 1)


def test_rows_are_the_tokenizers_own_encoding_of_prompt_and_response():
  batch = validation_batch()
  for i, ids in enumerate(golden_rows()):
    n = len(ids) - 1
    np.testing.assert_array_equal(batch["decoder_input_tokens"][i, :n], ids[:-1])
    np.testing.assert_array_equal(batch["decoder_target_tokens"][i, :n], ids[1:])
    first = GOLDEN["prompt_lengths"][i] - 1  # the target index of the first response token
    np.testing.assert_array_equal(batch["decoder_loss_weights"][i, :n],
                                  [0] * first + [1] * (n - first))
    assert not batch["decoder_segment_ids"][i, n:].any()


def test_packed_rows_keep_each_examples_bos():
  batch = validation_batch(pack=True)
  seg, inputs = batch["decoder_segment_ids"], batch["decoder_input_tokens"]
  starts = (seg > 0) & (batch["decoder_positions"] == 0)
  assert starts.sum() == len(golden_rows()) and (seg.max(axis=1) > 1).any()
  assert (inputs[starts] == 1).all()


def response_losses(params, model, batch) -> list[np.ndarray]:
  logits = model.apply({"params": params}, batch).logits
  logp = jax.nn.log_softmax(np.asarray(logits, np.float64), -1)
  nll = -np.take_along_axis(np.asarray(logp), batch["decoder_target_tokens"][..., None], -1)[..., 0]
  return [nll[i][batch["decoder_loss_weights"][i] > 0] for i in range(len(golden_rows()))]


def test_step_zero_loss_equals_transformers():
  """irl_lm's loss per response token of the untouched checkpoint equals transformers' on
  the tokenizer's own encoding (BOS first, no separator); irl_lm's own framing does not."""
  model, params = from_pretrained(FIXTURE)
  got = response_losses(params, model, validation_batch())
  for i, want in enumerate(GOLDEN["losses"]):
    np.testing.assert_allclose(got[i], want[~np.isnan(want)], atol=1e-4)
  run = builders.build_run(jsonl_config())
  state = run.init_state(run.initial_params())
  sums = jax.device_get(run.eval_step(state, run.shard_batch(validation_batch())))
  want = GOLDEN["losses"][~np.isnan(GOLDEN["losses"])]
  assert float(sums["nll_sum"] / sums["weight_sum"]) == pytest.approx(want.mean(), abs=1e-4)

  # The same rows in irl_lm's own framing (0 first, EOS after the prompt) score differently.
  own = data.get_feature_converter("decoder", framing=Framing((0,), True, 2))
  task = builders.get_task(jsonl_config())
  ds = task.get_dataset(LENGTHS, "validation", shuffle=False)
  batch = next(own(ds, LENGTHS).batch(8).as_numpy_iterator())
  other = response_losses(params, model, batch)
  assert max(abs(a.mean() - b[~np.isnan(b)].mean())
             for a, b in zip(other, GOLDEN["losses"])) > 1e-3


def test_run_and_its_export_generate_transformers_greedy_text(tmp_path):
  """generate --workdir, generate --hf_dir on the export and transformers' generate (golden)
  give the same text; the run trains one step at learning rate 0, so the export's weights
  are the checkpoint's."""
  c = jsonl_config()
  c.optimizer.learning_rate = 0.0
  c.optimizer.warmup_steps = 0
  c.train.checkpoint_every = 1
  train_and_evaluate(c, str(tmp_path / "run"))
  model, params, _, _ = restore_params(str(tmp_path / "run"))
  export = str(tmp_path / "export")
  save_pretrained(model, params, export, source=FIXTURE)
  for name in ("config.json", "generation_config.json", "tokenizer.json",
               "tokenizer_config.json"):
    with open(os.path.join(FIXTURE, name), "rb") as a, open(os.path.join(export, name), "rb") as b:
      assert a.read() == b.read(), name
  _, source = from_pretrained(FIXTURE)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params, source)
  prompts = tmp_path / "prompts.txt"
  rows = [json.loads(line) for line in open(c.data.jsonl.validation)]
  prompts.write_text("".join(r["prompt"] + "\n" for r in rows))
  config = ml_collections.ConfigDict({"decoding": default_config()})
  config.decoding.max_new_tokens = int(GOLDEN["max_new_tokens"])
  texts = {}
  for name, kw in (("workdir", dict(workdir=str(tmp_path / "run"))),
                   ("hf_dir", dict(hf_dir=export))):
    out = tmp_path / f"{name}.jsonl"
    cli.run(config, input_path=str(prompts), output_path=str(out), **kw)
    texts[name] = [json.loads(line)["samples"][0] for line in out.read_text().splitlines()]
  assert texts["workdir"] == texts["hf_dir"] == list(GOLDEN["greedy"])


def _edited(tmp_path, name: str, **changes) -> str:
  d = tmp_path / "model"
  shutil.copytree(FIXTURE, d)
  cfg = json.loads((d / name).read_text())
  cfg.update(changes)
  (d / name).write_text(json.dumps(cfg))
  return str(d)


@pytest.mark.parametrize("name, changes, message", [
    ("config.json", {"eos_token_id": 3},
     "the tokenizer's EOS is id 2 but the checkpoint's config.json has eos_token_id 3"),
    ("generation_config.json", {"eos_token_id": [3, 4]},
     r"the tokenizer's EOS is id 2 but the checkpoint's generation_config.json has "
     r"eos_token_id \[3, 4\]"),
    ("config.json", {"bos_token_id": 0},
     "the tokenizer's BOS is id 1 but the checkpoint's config.json has bos_token_id 0"),
])
def test_special_tokens_that_disagree_are_refused_before_compiling(tmp_path, name, changes,
                                                                   message):
  c = jsonl_config(fixture=_edited(tmp_path, name, **changes))
  c.data.vocabulary_path = FIXTURE
  with pytest.raises(ConfigError, match=message):
    builders.model_config(c, builders.get_task(c))
  (tmp_path / "prompts.txt").write_text("once\n")
  with pytest.raises(ConfigError, match=message):
    cli.run(ml_collections.ConfigDict({"decoding": default_config()}),
            input_path=str(tmp_path / "prompts.txt"), output_path=str(tmp_path / "out.jsonl"),
            hf_dir=c.model.init_from)


def test_agreeing_lists_and_a_missing_pad_token_are_accepted(tmp_path):
  c = jsonl_config(fixture=_edited(tmp_path, "config.json", eos_token_id=[7, 2],
                                   pad_token_id=None))
  cfg = builders.model_config(c, builders.get_task(c))
  assert (cfg.vocab_size, cfg.eos_id) == (320, 2)  # sampling stops at the tokenizer's EOS


def test_jsonl_task_from_the_config_reads_every_row_form_with_renamed_fields(tmp_path):
  shutil.copytree(FIXTURE, tmp_path / "hf")
  (tmp_path / "hf" / "chat_template.jinja").write_text(
      "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
      "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
  rows = [{"question": "once there was a cat named tom.", "answer": " tom liked to run."},
          {"question": "once there was a dog named sue.", "answer": " sue liked to sing.",
           "score": 1.5},
          {"turns": [{"text": "once there was a fox.", "is_action": False},
                     {"text": " it ran.", "is_action": True, "reward": 0.5}]},
          {"messages": [{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello", "reward": 1.0}]}]
  path = tmp_path / "rows.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  c = jsonl_config()
  c.model.init_from = str(tmp_path / "hf")
  c.data.jsonl.train = c.data.jsonl.validation = str(path)
  c.data.jsonl.fields.prompt, c.data.jsonl.fields.response = "question", "answer"
  examples = data.eval_examples(builders.get_task(c), "validation")
  assert [ex["inputs_pretokenized"] for ex in examples] == [
      rows[0]["question"], rows[1]["question"], "once there was a fox.",
      "user: hi\nassistant: "]
  assert [ex["targets_pretokenized"] for ex in examples] == [
      " tom liked to run.", " sue liked to sing.", " it ran.", "hello\n"]
  assert [float(ex["rewards"].sum()) for ex in examples] == [0.0, 0.0, 0.5, 1.0]
  c.data.jsonl.fields.reward = "score"
  with pytest.raises(data.JsonlFormatError, match=r"rows.jsonl:1: missing field 'score'"):
    builders.get_task(c)


def generated(tmp_path, prompts: str, *sources: dict) -> list[list]:
  """The samples ``generate`` writes (8 new tokens, greedy) for ``prompts`` from each source
  (``workdir=`` or ``hf_dir=``), one list of rows per source."""
  (tmp_path / "prompts.txt").write_text(prompts)
  config = ml_collections.ConfigDict({"decoding": default_config()})
  config.decoding.max_new_tokens = 8
  texts = []
  for kw in sources:
    out = tmp_path / "out.jsonl"
    cli.run(config, input_path=str(tmp_path / "prompts.txt"), output_path=str(out),
            overwrite=True, **kw)
    texts.append([json.loads(line)["samples"] for line in out.read_text().splitlines()])
  return texts


def test_an_export_carries_the_runs_tokenizer(tmp_path):
  """A decoder trained from scratch with data.vocabulary_path: the export holds that
  tokenizer, and generate --hf_dir on it writes the text generate --workdir writes."""
  from irl_lm.workdir import export
  c = jsonl_config()
  c.model.init_from, c.model.size = "", "gpt2-tiny"
  c.data.vocabulary_path = os.path.join(FIXTURE, "tokenizer.json")
  c.train.checkpoint_every = 1
  train_and_evaluate(c, str(tmp_path / "run"))
  assert export(str(tmp_path / "run"), str(tmp_path / "export")) == []
  for name in ("tokenizer.json", "tokenizer_config.json"):
    assert (tmp_path / "export" / name).read_bytes() == open(os.path.join(FIXTURE, name),
                                                              "rb").read()
  texts = generated(tmp_path, "once there was a cat named tom.\n",
                    dict(workdir=str(tmp_path / "run")), dict(hf_dir=str(tmp_path / "export")))
  assert texts[0] == texts[1]


def test_an_export_of_the_built_in_vocabulary_carries_it_as_a_tokenizer(tmp_path):
  """A quickstart-style run (T5, the embedded word vocabulary): the export holds that
  vocabulary as tokenizer.json, which encodes and decodes every embedded text as the built-in
  vocabulary does, and which generate --hf_dir and transformers' AutoTokenizer use to write
  the text generate --workdir writes."""
  import itertools

  from transformers import AutoTokenizer

  from irl_lm.data.vocabularies import EmbeddedVocabulary, HfTokenizerVocabulary
  from irl_lm.workdir import export
  from training_utils import tiny_config
  c = tiny_config("mle", steps=2)
  c.train.checkpoint_every = 2
  train_and_evaluate(c, str(tmp_path / "run"))
  assert export(str(tmp_path / "run"), str(tmp_path / "export")) == []
  ours = EmbeddedVocabulary()
  theirs = HfTokenizerVocabulary(str(tmp_path / "export" / "tokenizer.json"))
  auto = AutoTokenizer.from_pretrained(str(tmp_path / "export"))
  assert theirs.eos_id == auto.eos_token_id == ours.eos_id
  for name in ("embedded_summarize", "embedded_arithmetic", "embedded_ilql"):
    rows = data.get_task(name).source.get_dataset("validation", shuffle=False)
    for ex in itertools.islice(rows.as_numpy_iterator(), 50):
      for text in (v.decode() for v in ex.values() if isinstance(v, bytes)):
        ids = ours.encode(text)
        assert theirs.encode(text) == ids == auto.encode(text, add_special_tokens=False)
        assert theirs.decode(ids + [1, 0]) == ours.decode(ids) == \
            auto.decode(ids + [1, 0], skip_special_tokens=True)
  texts = generated(tmp_path, "summarize: the cat sat on the mat. the dog ran 12 miles.\n",
                    dict(workdir=str(tmp_path / "run")), dict(hf_dir=str(tmp_path / "export")))
  assert texts[0] == texts[1]
