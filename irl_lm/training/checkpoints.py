"""Orbax checkpoints of the train state and the data-iterator position."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from irl_lm import sharding as shd
from irl_lm.errors import InputError, MissingError
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

CONFIG_FILE = "config.json"
MODEL_FILE = "model_config.json"


UNREADABLE_DIR = "checkpoints_unreadable"


class Checkpointer:
  """Async, sharded checkpoints under ``WORKDIR/checkpoints``.

  Keeps the last ``train.keep_checkpoints`` (0: all) and, with
  ``train.best_metric``, also the best one by that eval metric. Each checkpoint
  holds the ``state`` pytree and the ``data`` iterator position (JSON). Orbax
  deletes an old checkpoint only after a newer one has committed.
  """

  def __init__(self, workdir: str, train: ml_collections.ConfigDict):
    policies: list[Any] = [pp.LatestN(train.keep_checkpoints or None)]
    if train.best_metric:
      key = train.best_metric
      policies.append(pp.BestN(get_metric_fn=lambda m: m[key], reverse=train.best_mode == "min",
                               n=1, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        create=True, enable_async_checkpointing=train.async_checkpoints,
        preservation_policy=pp.AnyPreservationPolicy(policies))
    self.workdir = workdir
    self.directory = os.path.join(workdir, "checkpoints")
    self._mngr = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data"),
        item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                       "data": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mngr.all_steps())

  def save(self, step: int, state: Any, data_state: dict[str, Any],
           metrics: dict[str, float] | None = None) -> None:
    """Starts an async save (returns before the files are complete)."""
    self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeSave(state), data=ocp.args.JsonSave(data_state)),
        metrics=metrics, force=True)

  def saved_shapes(self, step: int) -> dict[str, tuple[int, ...]]:
    """``{path: shape}`` of the state saved at ``step`` (reads only its metadata)."""
    tree = self._mngr.item_metadata(step)["state"]
    if tree is None:
      raise ValueError("no readable state metadata")
    return tree_shapes(tree)

  def restore(self, step: int, abstract_state: Any, shardings: Any, partial: bool = False
              ) -> tuple[Any, dict[str, Any] | None]:
    """(state placed into ``shardings``, data-iterator position) of ``step``.

    ``shardings`` may describe a different mesh than the one that saved. With
    ``partial``, ``abstract_state`` is a dict of some of the state's fields
    (e.g. only ``params``): just those are read, and no data position.
    """
    item = shd.with_shardings(abstract_state, shardings)
    args = ocp.args.PyTreeRestore(
        item=item, partial_restore=partial,
        restore_args=jax.tree.map(lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding), item))
    if partial:
      return self._mngr.restore(step, args=ocp.args.Composite(state=args)).state, None
    out = self._mngr.restore(step, args=ocp.args.Composite(state=args,
                                                           data=ocp.args.JsonRestore()))
    return out.state, out.data

  def restore_latest(self, abstract_state: Any, shardings: Any, run: str = "",
                     set_aside: bool = True, partial: bool = False
                     ) -> tuple[int, Any, dict[str, Any] | None] | None:
    """(step, state, data position) of the newest checkpoint that restores; None if none exist.

    A checkpoint whose files cannot be read is skipped with a warning and
    moved, intact, to ``WORKDIR/checkpoints_unreadable`` once an older one has
    restored (so no later save collides with it; not with ``set_aside=False``,
    for readers). A checkpoint of another
    model, loss or optimizer raises ``InputError`` naming both (``run``
    describes this run) and the workdir. If none restores, ``InputError``
    leaves every file where it was. ``partial`` as in ``restore``.
    """
    with _library_errors_off_console():
      return self._restore_latest(abstract_state, shardings, run, set_aside, partial)

  def _restore_latest(self, abstract_state: Any, shardings: Any, run: str, set_aside: bool,
                      partial: bool) -> tuple[int, Any, dict[str, Any] | None] | None:
    want = tree_shapes(abstract_state)
    fields = tuple(f"{k}/" for k in abstract_state) if partial else ("",)
    skipped: list[tuple[int, str]] = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        saved = {k: v for k, v in self.saved_shapes(step).items() if k.startswith(fields)}
      except Exception as e:  # pylint: disable=broad-except  # unreadable metadata
        skipped.append((step, _reason(e)))
        logging.warning("checkpoint %d in %s is unreadable (%s); trying the one before",
                        step, self.directory, _reason(e))
        continue
      if saved != want:
        raise InputError("the workdir holds a checkpoint of another run", self.workdir,
                         expected=run or "this config", found=f"{saved_run(self.workdir)} "
                         f"(step {step}; {_first_difference(want, saved)})")
      try:
        state, data_state = self.restore(step, abstract_state, shardings, partial)
      except Exception as e:  # pylint: disable=broad-except  # truncated or corrupt files
        skipped.append((step, _reason(e)))
        logging.warning("checkpoint %d in %s cannot be restored (%s); trying the one before",
                        step, self.directory, _reason(e))
        continue
      if set_aside:
        self._set_aside([s for s, _ in skipped])
      return step, state, data_state
    if skipped:
      raise InputError("no checkpoint in the workdir can be restored; all were left in place",
                       self.directory, found="; ".join(f"step {s}: {r}" for s, r in skipped))
    return None

  def _set_aside(self, steps: list[int]) -> None:
    """Moves unreadable checkpoints out of the manager's way (never deletes them)."""
    if not steps:
      return
    if jax.process_index() == 0:
      dest = epath.Path(self.workdir) / UNREADABLE_DIR
      dest.mkdir(parents=True, exist_ok=True)
      for step in steps:
        target = dest / f"{step}.{int(time.time())}"
        (epath.Path(self.directory) / str(step)).rename(target)
        logging.warning("moved unreadable checkpoint %d to %s", step, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("irl_lm_set_aside_checkpoints")
    self._mngr.reload()

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def tree_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """``{"params/encoder/...": shape}`` of a pytree of arrays or array metadata."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)
    out[name] = tuple(getattr(leaf, "shape", ()) or ())
  return out


def _first_difference(want: dict[str, tuple], saved: dict[str, tuple]) -> str:
  for name in sorted(set(want) | set(saved)):
    if want.get(name) != saved.get(name):
      return (f"{name}: this config {want.get(name, 'absent')}, "
              f"checkpoint {saved.get(name, 'absent')}")
  return "same shapes"


@contextlib.contextmanager
def _library_errors_off_console() -> Iterator[None]:
  """Orbax logs a restore failure with its whole TensorStore spec; the caller reports it."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def _reason(e: Exception) -> str:
  text = " ".join(str(e).split()) or type(e).__name__
  text = text.split(" See full TensorStore details")[0]
  return text if len(text) < 160 else text[:157] + "..."


def describe_run(model_cfg: dict[str, Any], loss: str, optimizer: str) -> str:
  """One-line summary of a run's shape-determining settings."""
  m = model_cfg
  return (f"{m.get('layout')} ({m.get('kind')}) d_model {m.get('d_model')}, "
          f"{m.get('num_layers')} layers, vocab {m.get('vocab_size')}"
          f"{', scanned' if m.get('scan_layers') else ''}; loss {loss}; optimizer {optimizer}")


def saved_run(workdir: str) -> str:
  """``describe_run`` of the config recorded in ``workdir`` ('unknown' if unreadable)."""
  try:
    root = epath.Path(workdir)
    config = json.loads((root / CONFIG_FILE).read_text())
    model = json.loads((root / MODEL_FILE).read_text())
    return describe_run(model, config["loss"]["name"], config["optimizer"]["name"])
  except (OSError, ValueError, KeyError):
    return "an unknown run"


def write_config(workdir: str, config: ml_collections.ConfigDict, model_cfg: Any) -> None:
  """Records the run's config and model config in ``WORKDIR`` (process 0)."""
  if jax.process_index() == 0:
    root = epath.Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))
    (root / MODEL_FILE).write_text(json.dumps(dataclasses.asdict(model_cfg), indent=2))


def _read_json(fn: epath.Path) -> Any:
  try:
    return json.loads(fn.read_text())
  except json.JSONDecodeError as e:
    raise InputError(f"malformed JSON ({e.msg})", f"{fn}:{e.lineno}:{e.colno}") from None
  except UnicodeDecodeError as e:
    raise InputError("not UTF-8 text", f"{fn}, byte {e.start}") from None


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with, merged once onto today's defaults: a key added
  since the run was written reads as its default (the value that reproduces the run), and
  a key since removed is dropped."""
  from irl_lm.training.config import base_config
  fn = epath.Path(workdir) / CONFIG_FILE
  if not fn.exists():
    raise MissingError(f"no {CONFIG_FILE}; is this an irl_lm workdir?", workdir)
  raw = _read_json(fn)
  try:
    raw["mesh"]["shape"] = tuple(raw["mesh"]["shape"])
    raw["mesh"]["rules"] = tuple((k, tuple(v) if isinstance(v, list) else v)
                                 for k, v in raw["mesh"]["rules"])
    config = base_config()
    _merge(config, raw)
    return config
  except (KeyError, TypeError, ValueError) as e:
    raise InputError(f"not an irl_lm config ({_reason(e)})", str(fn)) from None


def _merge(config: ml_collections.ConfigDict, raw: dict[str, Any]) -> None:
  for key, value in raw.items():
    if key not in config:
      continue
    if isinstance(config[key], ml_collections.ConfigDict) and isinstance(value, dict):
      _merge(config[key], value)
    else:
      config[key] = value


def read_model_config(workdir: str) -> Any:
  """The ``ModelConfig`` a workdir was trained with."""
  from irl_lm.models import ModelConfig
  fn = epath.Path(workdir) / MODEL_FILE
  if not fn.exists():
    raise MissingError(f"no {MODEL_FILE}; is this an irl_lm workdir?", workdir)
  raw = _read_json(fn)
  # Older workdirs name the model's family rather than its kind, and carry a value_heads flag
  # that no ModelConfig has (the algorithm decides the heads): read them as the same model.
  if isinstance(raw, dict) and "family" in raw:
    raw["kind"] = "encdec" if raw.pop("family") == "t5" else "decoder"
    raw.pop("value_heads", None)
  try:
    return ModelConfig(**raw)
  except TypeError as e:
    raise InputError(f"not an irl_lm model config ({_reason(e)})", str(fn)) from None


def restore_fields(ckpt: Checkpointer, step: int | None, abstract: dict[str, Any],
                   shardings: dict[str, Any]) -> dict[str, Any]:
  """Some fields of the state of ``step`` (default: the newest that restores).

  Leaves every file in place (for readers: generation, export, experiments).
  """
  if step is None:
    found = ckpt.restore_latest(abstract, shardings, set_aside=False, partial=True)
    if found is None:
      raise MissingError("no checkpoint in the workdir", ckpt.directory)
    return found[1]
  if step not in ckpt.all_steps():
    raise MissingError(f"no checkpoint for step {step}", ckpt.directory,
                       expected=f"one of {ckpt.all_steps()}", found=step)
  try:
    return ckpt.restore(step, abstract, shardings, partial=True)[0]
  except Exception as e:  # pylint: disable=broad-except  # truncated or corrupt files
    raise InputError(f"checkpoint {step} cannot be restored ({_reason(e)})",
                     ckpt.directory) from None
