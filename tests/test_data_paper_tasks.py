"""Paper tasks through the real seqio pipeline on mocked TFDS data, and the missing-dataset error."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from irl_lm.data import (BatchIterator, DatasetNotPreparedError, compute_metrics, eval_examples,
                         make_vocabulary, register_paper_tasks)
from irl_lm.data.paper_tasks import drop_calculator_annotations

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "data")
SPIECE = os.path.join(FIXTURES, "spiece.model")
TOKENIZER_JSON = os.path.join(FIXTURES, "tokenizer.json")
LENGTHS = {"inputs": 48, "targets": 16}
T5_PREFIX = {"xsum": "summarize: ", "gsm8k": "question: ", "tldr": "summarize: ",
             "wmt19_de_en": "translate German to English: "}
DECODER_SUFFIX = {"xsum": "\nSummary:", "gsm8k": "\nAnswer:", "tldr": "\nTL;DR:",
                  "wmt19_de_en": "\nEnglish:"}
EVAL_SPLIT = {"xsum": "validation", "gsm8k": "validation", "tldr": "validation",
              "wmt19_de_en": "validation"}


@pytest.mark.parametrize("kind,path", [("sentencepiece", SPIECE), ("hf_tokenizer", TOKENIZER_JSON)])
def test_paper_tasks_through_seqio(tmp_path, kind, path):
  names = register_paper_tasks(kind, path, tfds_data_dir=str(tmp_path))
  assert names == ["xsum", "gsm8k", "tldr", "wmt19_de_en"]
  vocab = make_vocabulary(kind, path)
  model_kind = "encdec" if kind == "sentencepiece" else "decoder"
  with tfds.testing.mock_data(num_examples=6):
    for name in names:
      examples = eval_examples(name, EVAL_SPLIT[name], sequence_lengths=LENGTHS)
      assert len(examples) == 6
      for ex in examples:
        if kind == "sentencepiece":
          assert ex["inputs_pretokenized"].startswith(T5_PREFIX[name])
        else:
          assert ex["inputs_pretokenized"].endswith(DECODER_SUFFIX[name])
          assert ex["targets_pretokenized"].startswith(" ")
        if ex["truncated"].any():  # cut to 16 tokens: no EOS, the last one a weight-0 slot
          assert len(ex["targets"]) == 16 and ex["weights"][-1] == 0 and ex["truncated"].all()
        else:
          assert ex["targets"][-1] == vocab.eos_id and len(ex["targets"]) <= 16
        assert ex["inputs"][-1] == vocab.eos_id and len(ex["inputs"]) <= 48
      targets = [ex["targets_pretokenized"] for ex in examples]
      metrics = compute_metrics(name, examples, targets)
      key = {"xsum": "rougeL", "tldr": "rougeL", "wmt19_de_en": "bleu", "gsm8k": "accuracy"}[name]
      assert key in metrics
      if key != "accuracy":  # mock answers hold no "#### number"
        assert metrics[key] == pytest.approx(100.0)
      batch = next(BatchIterator(name, "train", model_kind, LENGTHS, 4, seed=1))
      length = 16 if model_kind == "encdec" else 64
      assert batch["decoder_target_tokens"].shape == (4, length)
      np.testing.assert_array_equal(batch["decoder_rewards"], 0.0)
      assert batch["decoder_loss_weights"].sum() > 0


def test_paper_task_host_shards_on_mocked_tfds(tmp_path):
  register_paper_tasks("sentencepiece", SPIECE, tfds_data_dir=str(tmp_path))
  with tfds.testing.mock_data(num_examples=8):
    shards = [[r.tobytes() for b in BatchIterator("gsm8k", "train", "encdec", LENGTHS, 2,
                                                  shuffle=False, repeat=False, shard_index=i,
                                                  num_shards=2)
               for r in b["encoder_input_tokens"]] for i in range(2)]
  assert len(shards[0]) == len(shards[1]) == 4
  assert not set(shards[0]) & set(shards[1])


@pytest.mark.parametrize("name,expected", [
    ("xsum", ["not prepared in", "manual download", "--manual_dir=MANUAL_DIR",
              "tfds build xsum --data_dir="]),
    ("gsm8k", ["not prepared in", "tfds build gsm8k --data_dir="]),
    ("wmt19_de_en", ["tfds build wmt19_translate/de-en --data_dir="]),
])
def test_missing_tfds_dataset_says_how_to_prepare_it(tmp_path, name, expected):
  register_paper_tasks("sentencepiece", SPIECE, tfds_data_dir=str(tmp_path))
  with pytest.raises(DatasetNotPreparedError) as err:
    next(BatchIterator(name, "train", "encdec", LENGTHS, 2))
  message = str(err.value)
  for part in expected + [str(tmp_path), "config.data.tfds_data_dir"]:
    assert part in message


def test_gsm8k_calculator_annotations_are_dropped():
  ds = tf.data.Dataset.from_tensors({"answer": tf.constant("48/2 = <<48/2=24>>24 . #### 24")})
  out = next(iter(drop_calculator_annotations(ds)))
  assert out["answer"].numpy().decode() == "48/2 = 24 . #### 24"


def test_paper_tasks_reject_the_embedded_vocabulary():
  with pytest.raises(ValueError, match="'sentencepiece' or 'hf_tokenizer'"):
    register_paper_tasks("embedded", None)


def test_a_paper_task_run_lists_everything_missing_in_one_error(tmp_path):
  """The headline command without its files: one error lists the vocabulary (or the
  init_from directory) and the unprepared TFDS data, each with how to fix it."""
  import importlib.util

  from irl_lm.errors import ConfigError, MissingError
  from irl_lm.training.config import check_present
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "iqlearn_xsum.py")
  spec = importlib.util.spec_from_file_location("iqlearn_xsum", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.data.tfds_data_dir = str(tmp_path)
  with pytest.raises(MissingError) as err:
    check_present(c)
  lines = str(err.value).splitlines()
  assert lines[0] == "this run needs 2 things that are not here:"
  assert lines[1] == ("  1. config.data.vocabulary='sentencepiece' needs "
                      "config.data.vocabulary_path (or config.model.init_from, a Hugging Face "
                      "directory with spiece.model / tokenizer.json) (config.data.vocabulary_path)")
  assert lines[2] == f"  2. TFDS dataset 'xsum' is not prepared in {tmp_path}."
  assert f"       tfds build xsum --data_dir={tmp_path} --manual_dir=MANUAL_DIR" in lines
  c.model.init_from = "/models/flan-t5-base"
  with pytest.raises(MissingError) as err:
    check_present(c)
  assert str(err.value).splitlines()[1] == ("  1. checkpoint directory not found "
                                            "(config.model.init_from='/models/flan-t5-base')")
  c.model.init_from = ""
  (tmp_path / "xsum" / "1.1.0").mkdir(parents=True)
  (tmp_path / "xsum" / "1.1.0" / "dataset_info.json").write_text(
      '{"name": "xsum", "version": "1.1.0"}')
  with pytest.raises(ConfigError, match=r"^config.data.vocabulary='sentencepiece' needs "):
    check_present(c)  # the data is there: one thing missing, said as before
