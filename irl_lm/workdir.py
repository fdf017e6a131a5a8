"""A trained workdir read back for inference: its config, model, parameters and vocabulary.

``generate --workdir``, ``export`` and the experiments read runs through here, not
through the run builder: no optimizer is built and nothing is compiled.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import seqio

from irl_lm import sharding as shd
from irl_lm.models import build_model, param_shardings, q_heads
from irl_lm.training.builders import get_task, vocabulary
from irl_lm.training.checkpoints import (Checkpointer, read_config, read_model_config,
                                        restore_fields)
from irl_lm.training.step import uses_value_heads, uses_value_trunk


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
  heads = uses_value_heads(config)
  _, abstract, shardings = param_shardings(model_cfg, mesh, tuple(config.mesh.rules), heads,
                                           uses_value_trunk(config))
  want, where = {"params": abstract}, {"params": shardings}
  if heads:
    want["target_q"], where["target_q"] = q_heads(abstract), q_heads(shardings)
  ckpt = Checkpointer(workdir, config.train)
  try:
    state = restore_fields(ckpt, step, want, where)
  finally:
    ckpt.close()
  return build_model(model_cfg), state["params"], state.get("target_q"), vocabulary(task)
