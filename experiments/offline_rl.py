"""ILQL under delayed rewards against behaviour-cloning baselines, by online rollouts.

Two embedded offline-RL tasks whose logged data is suboptimal and whose reward
comes late, so credit must flow back over ten or more action tokens:

* ``embedded_ilql_delayed``: name the colours of four objects; the logged
  responses of two half-specialists earn their score (0-1) only at EOS, 15
  tokens after the first colour.
* ``embedded_twenty_questions``: a multi-turn dialogue against an environment
  written in code (-1 per turn until the right guess), logged by two
  suboptimal questioners whose good parts must be stitched.

Each policy is rolled out against the task (responses scored by the task's
reward; dialogues played turn by turn with the KV-cache decoder). Baselines:
behaviour cloning (greedy and sampled), %BC (BC on the top 10/25/50% of
episodes by return) and ILQL over a beta sweep.

Protocol: each method's training variants (BC's learning rate, %BC's fraction,
ILQL's expectile and Polyak rate) are trained with seed 0 and the best one on the
validation rollouts is trained with the other seeds; the decoding (greedy or
sampled; ILQL's beta) is chosen on the validation rollouts of all seeds, and
every seed is reported on the test rollouts.
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
from typing import Any

import numpy as np

from experiments.jobs import Job, run_stage

COLOURS, DIALOGUE = "embedded_ilql_delayed", "embedded_twenty_questions"
TASKS = (COLOURS, DIALOGUE)
LENGTHS = {COLOURS: (16, 20), DIALOGUE: (8, 44)}  # (inputs, targets)


@dataclasses.dataclass(frozen=True)
class Settings:
  """Model, budgets, sweeps and ILQL's hyperparameters of one suite run."""

  model: str = "gpt2-tiny"
  steps: int = 2000
  learning_rate: float = 3e-3
  batch_size: int = 32
  bc_learning_rates: tuple[float, ...] = (1e-3, 3e-3)
  fractions: tuple[float, ...] = (0.1, 0.25, 0.5)
  ilql_variants: tuple[tuple[float, float], ...] = (  # (tau, polyak_rate)
      (0.7, 0.005), (0.7, 0.05), (0.7, 0.2), (0.9, 0.05))
  betas: tuple[float, ...] = (0.0, 1.0, 4.0, 16.0, 64.0)
  n_eval: int = 200  # prompts or episodes per validation / test split
  seeds: int = 5
  gamma: float = 1.0
  cql_weight: float = 0.1

  def variants(self, method: str) -> list[dict[str, float]]:
    """The training variants of a method that seed 0 chooses among."""
    if method == "bc":
      return [{"learning_rate": lr} for lr in self.bc_learning_rates]
    if method == "pct_bc":
      return [{"fraction": f} for f in self.fractions]
    return [{"tau": t, "polyak_rate": p} for t, p in self.ilql_variants]


QUICK = Settings(steps=8, bc_learning_rates=(3e-3,), fractions=(0.25,),
                 ilql_variants=((0.7, 0.05),), betas=(0.0, 4.0), n_eval=8, seeds=1)
METHODS = ("bc", "pct_bc", "ilql")


def variant_name(variant: dict[str, float]) -> str:
  short = {"learning_rate": "lr", "fraction": "top", "tau": "tau", "polyak_rate": "polyak"}
  return "_".join(f"{short[k]}{v:g}" for k, v in variant.items())


def config(task: str, method: str, settings: Settings, seed: int, data_task: str,
           variant: dict[str, float]):
  """The training config of one policy."""
  from experiments.run_config import single_run_config
  s = settings
  c = single_run_config(task=data_task, loss="ilql" if method == "ilql" else "mle",
                        model=s.model, lengths=LENGTHS[task], steps=s.steps,
                        learning_rate=variant.get("learning_rate", s.learning_rate),
                        seed=seed, log_points=30, batch_size=s.batch_size)
  il = c.loss.ilql
  il.gamma, il.cql_weight = s.gamma, s.cql_weight
  il.tau = variant.get("tau", il.tau)
  il.polyak_rate = variant.get("polyak_rate", il.polyak_rate)
  return c


def hidden_objects(split: str, n: int) -> list[str]:
  """The hidden objects of a split's dialogue episodes (uniform, seeded by the split)."""
  from irl_lm.data.embedded import twenty_questions as tq
  rng = random.Random(f"{DIALOGUE}/{split}")
  return [rng.choice(sorted(tq.OBJECTS)) for _ in range(n)]


def rollout_returns(policy: Any, task: str, split: str, decoding: Any, n: int) -> np.ndarray:
  """Returns of ``n`` rollouts of ``policy`` on a split of ``task``."""
  from irl_lm import data
  from experiments import rollouts
  inputs, targets = LENGTHS[task]
  if task == DIALOGUE:
    episodes = rollouts.dialogue_returns(policy, hidden_objects(split, n), decoding,
                                         width=inputs + targets)
    return np.array([e.total_reward for e in episodes])
  examples = data.eval_examples(task, split, max_examples=n,
                                sequence_lengths={"inputs": inputs, "targets": targets})
  return rollouts.colour_returns(policy, examples, decoding, inputs_length=inputs,
                                 targets_length=targets)


def decodings(method: str, settings: Settings) -> dict[str, Any]:
  """The decodings a policy is measured with: ILQL at each beta; BC greedy and sampled."""
  from experiments.rollouts import Decoding
  if method == "ilql":
    return {f"beta{b:g}": Decoding(ilql_beta=b) for b in settings.betas}
  return {"greedy": Decoding(), "sample": Decoding(method="sample", temperature=1.0)}


def train_policy(workdir: str, task: str, method: str, variant: dict[str, float], seed: int,
                 settings: Settings) -> dict[str, Any]:
  """Trains one policy (job) and measures its rollouts on validation and test."""
  from irl_lm import data
  from experiments.curves import read_scalars
  from experiments.rollouts import Policy
  from irl_lm.workdir import restore_params
  from irl_lm.training.trainer import train_and_evaluate
  data_task = task
  if method == "pct_bc":
    data_task = f"{task}_top{round(variant['fraction'] * 100)}"
    data.register_top_fraction(data_task, task, variant["fraction"])
  run_dir = os.path.join(workdir, "run")
  last = train_and_evaluate(config(task, method, settings, seed, data_task, variant), run_dir)
  model, params, target_q, vocab = restore_params(run_dir)
  policy = Policy(model, params, target_q, vocab)
  out = {"task": task, "method": method, "variant": variant, "seed": seed,
         "final_train_loss": last.get("train/loss"), "eval_loss": last.get("eval/loss"),
         "loss_curve": read_scalars(run_dir, "train/loss"), "returns": {}}
  for split in ("validation", "test"):
    out["returns"][split] = {}
    for name, d in decodings(method, settings).items():
      d = dataclasses.replace(d, seed=seed)
      r = rollout_returns(policy, task, split, d, settings.n_eval)
      out["returns"][split][name] = {"mean": float(r.mean()), "std": float(r.std())}
  return out


def run_suite(*, workroot: str, settings: Settings, workers: int, progress=print
              ) -> dict[str, Any]:
  """Tunes, trains and measures every policy of both tasks; returns what the report reads."""
  s = settings
  t0 = time.time()

  def job(task, method, variant, seed):
    return Job(f"{task}_{method}_{variant_name(variant)}_seed{seed}",
               "experiments.offline_rl:train_policy",
               {"task": task, "method": method, "variant": variant, "seed": seed, "settings": s})

  tune = [job(t, m, v, 0) for t in TASKS for m in METHODS for v in s.variants(m)]
  progress(f"offline RL: {len(tune)} training variants with seed 0")
  tuned = run_stage(tune, workroot, workers, progress)
  chosen = {(t, m): choose_variant([tuned[j.name] for j in tune if j.kwargs["task"] == t
                                    and j.kwargs["method"] == m], s.variants(m))
            for t in TASKS for m in METHODS}
  final = [job(t, m, chosen[t, m], k) for t in TASKS for m in METHODS for k in range(s.seeds)]
  progress(f"offline RL: chosen {chosen}; {len(final)} policies over {s.seeds} seeds")
  results = run_stage(final, workroot, workers, progress)
  row = lambda j, r: dict(r, name=j.name, **{k: j.kwargs[k] for k in
                                             ("task", "method", "variant", "seed")})
  return {"settings": dataclasses.asdict(s),
          "tuning": [row(j, tuned[j.name]) for j in tune],
          "chosen": [{"task": t, "method": m, "variant": v} for (t, m), v in chosen.items()],
          "rows": [row(j, results[j.name]) for j in final],
          "references": references(), "seconds": round(time.time() - t0)}


def choose_variant(results: list[dict[str, Any]], variants: list[dict[str, float]]
                   ) -> dict[str, float]:
  """The variant whose seed-0 run has the best validation return under its best decoding
  (a failed or diverged run never wins)."""
  score = lambda r: (max(v["mean"] for v in r["returns"]["validation"].values())
                     if r["ok"] else -np.inf)
  return variants[int(np.argmax([score(r) for r in results]))]


def references() -> dict[str, dict[str, Any]]:
  """Known returns of each task (the logging policy, the best single logged behaviour,
  greedy BC's Bayes optimum, the optimum) and the lowest BC loss where it is known."""
  from irl_lm import data
  from irl_lm.data.embedded import ilql, twenty_questions as tq
  vocab = data.make_vocabulary("embedded")
  val = list(data.embedded.generate("embedded_ilql", "validation"))
  floor = ilql.bc_loss_floor(val, [len(vocab.encode(ex["targets"])) + 1 for ex in val])
  return {COLOURS: {"returns": {"logging policy": ilql.BEHAVIOUR_MEAN_REWARD,
                                "greedy BC, Bayes-optimal": 0.5, "optimum": ilql.OPTIMAL_REWARD},
                    "bc_loss_floor": floor},
          DIALOGUE: {"returns": {"logging policy": tq.logging_return(),
                                 "best logging policy (guesser)": tq.logging_return("guesser"),
                                 "optimum": tq.optimal_return()},
                     "bc_loss_floor": None}}
