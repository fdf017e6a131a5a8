"""The experiment grid: which runs to train, and their configs."""
from __future__ import annotations

import dataclasses

import ml_collections

from irl_lm.errors import ConfigError
from irl_lm.training.config import base_config

IQLEARN_TASKS = ("embedded_summarize", "embedded_arithmetic")
LAMS = (0.0, 0.1, 0.5)  # 0 is MLE
ILQL_BETAS = (0.0, 1.0, 4.0, 16.0)


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: a task, a loss (with its lam for IQLearn) and a seed."""

  suite: str
  task: str
  loss: str
  seed: int
  lam: float = 0.0

  @property
  def method(self) -> str:
    if self.loss == "iqlearn":
      return "MLE (lam=0)" if self.lam == 0 else f"IQLearn lam={self.lam:g}"
    return {"ilql": "ILQL", "mle": "BC (MLE)"}[self.loss]

  @property
  def name(self) -> str:
    lam = f"_lam{self.lam:g}" if self.loss == "iqlearn" else ""
    return f"{self.task}_{self.loss}{lam}_seed{self.seed}"


def runs(suite: str, seeds: int, quick: bool = False) -> list[Run]:
  """The runs of ``suite`` (``iqlearn``, ``ilql`` or ``all``; ``reward`` reuses ``iqlearn``).

  ``quick`` keeps one task and the lam grid's ends: every artefact, fewest runs.
  """
  out = []
  tasks, lams = (IQLEARN_TASKS[:1], (LAMS[0], LAMS[-1])) if quick else (IQLEARN_TASKS, LAMS)
  if suite in ("all", "iqlearn", "reward"):
    out += [Run("iqlearn", t, "iqlearn", s, lam)
            for t in tasks for lam in lams for s in range(seeds)]
  if suite in ("all", "ilql"):
    out += [Run("ilql", "embedded_ilql", loss, s) for loss in ("ilql", "mle")
            for s in range(seeds)]
  if not out:
    raise ConfigError("unknown suite", "--suite", expected="all, iqlearn, ilql or reward",
                      found=repr(suite))
  return out


def config_for(run: Run, steps: int) -> ml_collections.ConfigDict:
  """A small T5 trained from scratch for ``steps`` steps; no in-training generation."""
  c = base_config()
  c.seed = run.seed
  c.model.size = "t5-tiny"
  c.loss.name = run.loss
  c.loss.iqlearn.lam = run.lam
  c.data.task = run.task
  c.data.inputs_length = 64 if run.task != "embedded_ilql" else 32
  c.data.targets_length = 32 if run.task != "embedded_ilql" else 20
  c.data.batch_size = 32
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = min(100, steps // 10 + 1)
  c.train.steps = steps
  c.train.log_every = max(1, steps // 10)
  c.train.eval_every = steps
  c.train.checkpoint_every = steps
  c.train.keep_checkpoints = 1
  c.train.peak_flops_per_device = 2e11
  c.eval.num_examples = 64
  c.eval.batch_size = 64
  c.eval.generate = False
  c.mesh.num_devices = 1
  return c
