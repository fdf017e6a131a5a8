"""Orbax checkpoints of the train state and the data-iterator position."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from irl_lm import sharding as shd
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

CONFIG_FILE = "config.json"
MODEL_FILE = "model_config.json"


class Checkpointer:
  """Async, sharded checkpoints under ``WORKDIR/checkpoints``.

  Keeps the last ``train.keep_checkpoints`` and, with ``train.best_metric``,
  also the best one by that eval metric. Each checkpoint holds the ``state``
  pytree and the ``data`` iterator position (JSON).
  """

  def __init__(self, workdir: str, train: ml_collections.ConfigDict):
    policies: list[Any] = [pp.LatestN(train.keep_checkpoints)]
    if train.best_metric:
      key = train.best_metric
      policies.append(pp.BestN(get_metric_fn=lambda m: m[key], reverse=train.best_mode == "min",
                               n=1, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        create=True, enable_async_checkpointing=train.async_checkpoints,
        preservation_policy=pp.AnyPreservationPolicy(policies))
    self.directory = os.path.join(workdir, "checkpoints")
    self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                       item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mngr.all_steps())

  def save(self, step: int, state: Any, data_state: dict[str, Any],
           metrics: dict[str, float] | None = None) -> None:
    """Starts an async save (returns before the files are complete)."""
    self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)),
        metrics=metrics, force=True)

  def restore(self, step: int, abstract_state: Any, shardings: Any) -> tuple[Any, dict[str, Any]]:
    """(state placed into ``shardings``, data-iterator position) of ``step``.

    ``shardings`` may describe a different mesh than the one that saved.
    """
    out = self._mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(shd.with_shardings(abstract_state, shardings)),
        data=ocp.args.JsonRestore()))
    return out.state, out.data

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def write_config(workdir: str, config: ml_collections.ConfigDict, model_cfg: Any) -> None:
  """Records the run's config and model config in ``WORKDIR`` (process 0)."""
  if jax.process_index() == 0:
    root = epath.Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))
    (root / MODEL_FILE).write_text(json.dumps(dataclasses.asdict(model_cfg), indent=2))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with."""
  fn = epath.Path(workdir) / CONFIG_FILE
  if not fn.exists():
    raise FileNotFoundError(f"{workdir}: no {CONFIG_FILE}; is this an irl_lm workdir?")
  raw = json.loads(fn.read_text())
  raw["mesh"]["shape"] = tuple(raw["mesh"]["shape"])
  raw["mesh"]["rules"] = tuple((k, tuple(v) if isinstance(v, list) else v)
                               for k, v in raw["mesh"]["rules"])
  return ml_collections.ConfigDict(raw)


def load_for_generation(workdir: str, step: int | None = None
                        ) -> tuple[Any, Any, Any, Any]:
  """(model, params, target Q params or None, vocabulary) of a trained workdir.

  Restores ``step`` (default: the latest) onto the local devices.
  """
  from irl_lm.models import ModelConfig, build_model
  from irl_lm.training import builders
  from irl_lm.training.optim import make_optimizer
  from irl_lm.training.state import state_shardings
  config = read_config(workdir)
  task = builders.get_task(config)
  model_cfg = ModelConfig(**json.loads((epath.Path(workdir) / MODEL_FILE).read_text()))
  mesh = shd.make_mesh((1, 1, 1), devices=jax.local_devices()[:1])
  tx, _ = make_optimizer(config.optimizer, config.train.steps)
  with_tq = config.loss.name == "ilql"
  abstract, shardings = state_shardings(model_cfg, tx, mesh, config.mesh.rules, with_tq)
  ckpt = Checkpointer(workdir, config.train)
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"{workdir}: no checkpoint in {ckpt.directory}")
  if step not in ckpt.all_steps():
    raise FileNotFoundError(f"{workdir}: no checkpoint for step {step} "
                            f"(have {ckpt.all_steps()})")
  state, _ = ckpt.restore(step, abstract, shardings)
  ckpt.close()
  return build_model(model_cfg), state.params, state.target_q, builders.vocabulary(task)
