"""A trained workdir read back for inference: its config, model, parameters and vocabulary,
and its export as a Hugging Face directory with the tokenizer it was trained with.

``generate --workdir``, ``export`` and the experiments read runs through here, not
through the run builder: no optimizer is built and nothing is compiled.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

import flax.linen as nn
import jax
import seqio

from irl_lm import sharding as shd
from irl_lm.algorithms import make_algorithm
from irl_lm.data.vocabularies import EmbeddedVocabulary, HfTokenizerVocabulary
from irl_lm.errors import InputError
from irl_lm.models import base_record, build_model, lora, save_pretrained
from irl_lm.models.hf_io import checkpoint_dir, save_peft_adapter
from irl_lm.models.hf_config import read_json
from irl_lm.models.hf_io import write_json
from irl_lm.training.builders import base_outside, get_task, initial_params, vocabulary
from irl_lm.training.checkpoints import (Checkpointer, read_config, read_model_config,
                                        restore_fields)

# Beside a run's tokenizer.json, what a tokenizer directory may also hold.
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def restore_params(workdir: str, step: int | None = None
                   ) -> tuple[nn.Module, Any, Any | None, seqio.Vocabulary]:
  """(model, params, ILQL target Q heads or None, vocabulary) of a trained workdir.

  Restores only the parameters (and target heads) of ``step`` (default: the
  newest that restores) onto one local device.
  """
  config = read_config(workdir)
  model_cfg = read_model_config(workdir)
  task = get_task(config)
  mesh = shd.make_mesh((1, 1, 1), devices=jax.local_devices()[:1])
  algorithm = make_algorithm(config)
  _, abstract, shardings = algorithm.param_shardings(model_cfg, mesh, tuple(config.mesh.rules))
  extra, extra_shardings = algorithm.inference_state(abstract, shardings)
  outside = base_outside(config, model_cfg)
  if outside:  # the frozen base is init_from's: the same bytes the run trained on
    base_record.check(workdir, checkpoint_dir(config.model.init_from), "this run")
    abstract, shardings = (lora.partition(t, model_cfg)[0] for t in (abstract, shardings))
  ckpt = Checkpointer(workdir, config.train)
  try:
    state = restore_fields(ckpt, step, {"params": abstract, **extra},
                           {"params": shardings, **extra_shardings})
  finally:
    ckpt.close()
  params = state.pop("params")
  if outside:
    frozen = initial_params(config, algorithm, mesh, tuple(config.mesh.rules))
    params = lora.combine(params, lora.partition(frozen, model_cfg)[1])
  return (build_model(model_cfg), params,
          algorithm.decode_kwargs(state).get("target_heads"), vocabulary(task))


def export(workdir: str, output: str, step: int | None = None, adapter: bool = False
           ) -> list[str]:
  """Writes the run's model (LoRA adapters merged in), or with ``adapter`` its LoRA
  adapters in PEFT's format on the run's ``init_from``, with the tokenizer files it was
  trained with; returns notes."""
  model, params, _, vocabulary = restore_params(workdir, step)
  source = read_config(workdir).model.init_from or None
  if adapter:
    if source is None:
      raise InputError("a PEFT adapter needs the base model the run started from, and this "
                       "run started from no checkpoint (config.model.init_from)",
                       "--format=peft")
    save_peft_adapter(model, params, output, source)
  else:
    save_pretrained(model, params, output, source=source)
  files: dict[str, str] = {}
  if isinstance(vocabulary, HfTokenizerVocabulary):
    if source is None and vocabulary.bos_id is not None:  # irl_lm wrote the config: its BOS
      path = os.path.join(output, "config.json")
      write_json({**read_json(path), "bos_token_id": vocabulary.bos_id}, path)
    here = os.path.dirname(vocabulary.path)
    files = {name: os.path.join(here, name) for name in TOKENIZER_FILES}
    files["tokenizer.json"] = vocabulary.path
  elif isinstance(vocabulary, seqio.SentencePieceVocabulary):
    files = {"spiece.model": vocabulary.sentencepiece_model_file}
  elif isinstance(vocabulary, EmbeddedVocabulary):
    vocabulary.save_tokenizer(output)  # the built-in words as a tokenizer.json
  else:
    return [f"the run's {type(vocabulary).__name__} has no tokenizer file: generate from the "
            f"export with --vocab, or from the run with --workdir={workdir}"]
  for name, path in files.items():
    if os.path.isfile(path) and not os.path.exists(os.path.join(output, name)):
      shutil.copyfile(path, os.path.join(output, name))
  return []
