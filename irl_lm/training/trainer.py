"""``train_and_evaluate``: the training loop with checkpoints, evaluation and logging."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from irl_lm import data
from irl_lm import sharding as shd
from irl_lm.algorithms import Algorithm
from irl_lm.data.checks import check_split
from irl_lm.errors import ConfigError, UserError
from irl_lm.models import base_record
from irl_lm.models.hf_io import checkpoint_dir
from irl_lm.training import builders, evaluation, flops
from irl_lm.training.checkpoints import Checkpointer, describe_run, write_config
from irl_lm.training.host_batches import HostBatches, saved_num_shards
from irl_lm.training.metrics_log import MetricsLog
from irl_lm.training.preemption import Preempted, PreemptionWatch


class NonFiniteError(UserError, RuntimeError):
  """Raised after ``train.max_nonfinite_steps`` non-finite steps in a row (a diverged run)."""


def describe(state: Any, mesh: jax.sharding.Mesh, top: int = 5) -> str:
  """Mesh, parameter count and the sharding of the largest arrays."""
  leaves = jax.tree_util.tree_leaves_with_path(state.params)
  n = sum(x.size for _, x in leaves)
  lines = [f"mesh {dict(mesh.shape)} over {mesh.devices.size} devices "
           f"({jax.process_count()} processes); {n:,} parameters"]
  for path, x in sorted(leaves, key=lambda kv: -kv[1].size)[:top]:
    name = "/".join(getattr(k, "key", str(k)) for k in path)
    lines.append(f"  {name} {tuple(x.shape)} {x.sharding.spec}")
  return "\n".join(lines)


def check_data(config: ml_collections.ConfigDict, task: Any, algorithm: Algorithm) -> None:
  """Opens and checks the train and eval splits, and what the algorithm reads, before
  compiling."""
  d = config.data
  lengths = {"inputs": d.inputs_length, "targets": d.targets_length}
  check_split(task, d.train_split, lengths, "config.data.train_split")
  algorithm.check_data(task, d.train_split, "config.data.task")
  check_split(task, d.eval_split, lengths, "config.data.eval_split")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (resuming from ``workdir`` if it has checkpoints) and returns the last metrics.

  Raises ``Preempted`` after saving a checkpoint when a pre-emption notice
  (SIGTERM) arrives.
  """
  run = builders.build_run(config)
  check_data(config, run.task, run.algorithm)
  shard = data.shard_info_from_mesh(run.mesh, shd.batch_axes(run.mesh, run.rules))
  lengths = {"inputs": config.data.inputs_length, "targets": config.data.targets_length}
  ckpt = Checkpointer(workdir, config.train)
  this_run = describe_run(dataclasses.asdict(run.model_cfg), config.loss.name,
                          config.optimizer.name)
  try:
    if run.base_outside:
      base_record.write_or_check(workdir, checkpoint_dir(config.model.init_from), "this run")
    restored = ckpt.restore_latest(run.saved(run.state_abstract), run.saved(run.shardings),
                                   run=this_run)
  except BaseException:
    ckpt.close()
    raise
  data_state = None
  if restored is not None:
    latest, saved, data_state = restored
    state = run.from_saved(saved)
    logging.info("Resumed from %s at step %d", ckpt.directory, latest)
  else:
    state = run.init_state(run.initial_params(), **run.algorithm.startup(run.task))
  train_iter = HostBatches(run.task, config.data.train_split, run.kind, lengths,
                           config.data.batch_size, seed=config.seed, pack=config.data.pack,
                           index=shard.index, count=shard.num_shards,
                           num_shards=saved_num_shards(data_state))
  if data_state is not None:
    train_iter.restore(data_state)
  write_config(workdir, config, run.model_cfg)
  logging.info("%s", describe(state, run.mesh))

  evaluator = evaluation.Evaluator(run, (shard.index, shard.num_shards))
  perf = _Throughput(config, run.model_cfg, run.algorithm)
  log = MetricsLog(workdir, config.train.steps, int(state.step), config)
  preemption = PreemptionWatch()
  try:
    last = _loop(config, state, run, train_iter, evaluator, ckpt, log, perf, preemption)
  finally:
    preemption.close()
    log.close()
    ckpt.close()  # an exception still completes the checkpoints already started
  if jax.process_index() == 0 and log.history:
    logging.info("Summary:\n%s", log.summary_table())
    curves = ["train/loss"] + sorted(k for k in log.history if k.startswith("eval/"))
    log.plot(os.path.join(workdir, "curves.png"), curves)
  return last


class _Throughput:
  """Step time, tokens/s and MFU from wall-clock time between log points."""

  def __init__(self, config: ml_collections.ConfigDict, model_cfg: Any, algorithm: Algorithm):
    d = config.data
    self.flops = flops.train_flops_per_step(model_cfg, d.batch_size, d.inputs_length,
                                            d.targets_length, algorithm.value_heads,
                                            algorithm.value_trunk)
    decoder_only = model_cfg.kind == "decoder"
    self.tokens = d.batch_size * (d.targets_length + (d.inputs_length if decoder_only else 0))
    self.peak = (config.train.peak_flops_per_device or flops.measure_peak_flops()) \
        * jax.device_count()
    self._t: float | None = None
    self._step = 0

  def start(self, step: int) -> None:
    self._t, self._step = time.perf_counter(), step

  def __call__(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    dt = (now - self._t) / max(step - self._step, 1)
    self._t, self._step = now, step
    return {"perf/step_time_s": dt, "perf/tokens_per_s": self.tokens / dt,
            "perf/mfu": self.flops / dt / self.peak}


class _FiniteWatch:
  """Stops the run after ``train.max_nonfinite_steps`` skipped steps in a row.

  Reads each step's streak counter one step late (after the next step is
  dispatched), so the host never waits for the step it just launched; at log,
  eval and checkpoint steps, which wait for the device anyway, it reads the
  current one first.
  """

  def __init__(self, max_steps: int, ckpt: Checkpointer):
    self.max_steps, self.ckpt = max_steps, ckpt
    self._unread: tuple[int, jax.Array] | None = None

  def dispatched(self, step: int, streak: jax.Array) -> None:
    """Records ``step``'s counter and reads the previous step's."""
    self.read()
    self._unread = (step, streak)

  def read(self) -> None:
    """Reads the counter not yet read (blocking on its step), and stops on a streak."""
    if self._unread is None:
      return
    step, streak = self._unread
    self._unread = None
    bad = int(streak)
    if bad:
      logging.warning("step %d: non-finite loss or gradients; update skipped (%d in a row)",
                      step, bad)
    if bad >= self.max_steps:
      self.ckpt.wait()
      good = self.ckpt.latest_step()
      where = f"step {good} in {self.ckpt.directory}" if good is not None else "none"
      raise NonFiniteError(
          f"{bad} consecutive steps (up to step {step}) had a non-finite loss or gradient "
          f"(config.train.max_nonfinite_steps={self.max_steps}); stopping. "
          f"The last good checkpoint ({where}) was left intact.")


def _loop(config, state, run, train_iter, evaluator, ckpt, log, perf, preemption
          ) -> dict[str, float]:
  """Steps from ``state.step`` to ``train.steps`` with logging, eval and checkpoints.

  The host reads nothing of a step it has just dispatched until a log, eval or
  checkpoint step, so the device always has the next step queued.
  """
  t = config.train
  last: dict[str, float] = {}
  pending: list[dict[str, jax.Array]] = []
  start = int(state.step)
  perf.start(start)
  finite = _FiniteWatch(t.max_nonfinite_steps, ckpt)
  for step in range(start + 1, t.steps + 1):
    batch = next(train_iter)
    state, metrics = run.train_step(state, run.shard_batch(batch))
    metrics = dict(metrics)
    finite.dispatched(step, metrics.pop("nonfinite_streak"))
    pending.append(metrics)
    final = step == t.steps
    saved = step % t.checkpoint_every == 0 or final
    if step % t.log_every == 0 or step % t.eval_every == 0 or saved:
      finite.read()  # this step waits for the device anyway: check it before using its state
    if step % t.log_every == 0 or final:
      host = jax.device_get(pending)
      pending = []
      scalars = {f"train/{k}": float(np.mean([m[k] for m in host])) for k in host[0]}
      scalars["train/skipped_total"] = float(host[-1]["skipped_total"])
      scalars.update(perf(step))
      log.write(step, scalars)
      log.progress(step, {k: scalars[k] for k in ("train/loss", "train/learning_rate",
                                                  "perf/tokens_per_s", "perf/mfu")})
      last.update(scalars)
    eval_metrics = None
    if step % t.eval_every == 0 or final:
      eval_metrics = evaluator(state)
      if t.best_metric and t.best_metric not in eval_metrics:
        raise ConfigError("config.train.best_metric is not an eval metric of this task",
                          "config.train.best_metric", expected=f"one of {sorted(eval_metrics)}",
                          found=repr(t.best_metric))
      log.write(step, eval_metrics)
      logging.info("eval at step %d: %s", step,
                   ", ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items()))
      last.update(eval_metrics)
      perf.start(step)  # evaluation time is not training time
    if saved:
      ckpt.save(step, run.saved(state), train_iter.state(), metrics=eval_metrics)
    if preemption.reached(step):  # after eval, so a notice that came during it is seen now
      finite.read()
      if not saved:
        ckpt.save(step, run.saved(state), train_iter.state())
      ckpt.wait()
      logging.warning("pre-empted: checkpoint of step %d committed in %s", step, ckpt.directory)
      raise Preempted(step, ckpt.directory)
  return last
