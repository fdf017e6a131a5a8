"""ILQL under delayed rewards against behaviour-cloning baselines, by online rollouts.

Two embedded colour tasks whose reward (0-1) sits only on the response's EOS,
15 tokens after the first colour:

* ``embedded_ilql_delayed`` (the control): two half-specialists log the data; 0.64%
  of logged responses are fully right, so filtered cloning (%BC) can reach the
  optimum without stitching, and the run shows whether the value function learns.
* ``embedded_stitch``: every logged response botches one clause, so the best
  logged return, and %BC's ceiling, is 0.75; the optimum 1.0 needs stitching.

Every method starts from one pretrained trunk per task (behaviour cloning on all
logged episodes, as the paper and trlx fine-tune a pretrained LM) and is
fine-tuned: BC, %BC (BC on the top fraction of episodes by return) and ILQL with
trlx's protocol (returns z-scored over the dataset, gamma 0.99). ILQL trained
from scratch, as long as pretraining plus fine-tuning, is the secondary row.

Every policy is rolled out greedy and sampled (ILQL at each beta), 200 prompts
per split, and each ILQL run's value function is probed (`value_probe.py`).

Protocol: each method's training variants (BC's learning rate, %BC's fraction,
ILQL's tau, CQL weight and target schedule) are trained with seed 0 and the best
on the validation rollouts is trained with every seed; the decoding (greedy or
sampled, and beta) is chosen per method on the validation rollouts of all seeds,
and every seed is reported on the test rollouts.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from experiments.jobs import Job, run_stage

COLOURS, STITCH = "embedded_ilql_delayed", "embedded_stitch"
TASKS = (COLOURS, STITCH)
GENERATORS = {COLOURS: "embedded_ilql", STITCH: "embedded_stitch"}
LENGTHS = (16, 20)  # (inputs, targets)
METHODS = ("bc", "pct_bc", "ilql")
SCRATCH = "ilql_scratch"  # the chosen ILQL variant trained from scratch


@dataclasses.dataclass(frozen=True)
class Settings:
  """Model, budgets, sweeps and ILQL's hyperparameters of one suite run."""

  model: str = "gpt2-tiny"
  pretrain_steps: int = 3000
  pretrain_learning_rate: float = 3e-3
  steps: int = 1000  # fine-tuning steps
  learning_rate: float = 1e-3  # fine-tuning (%BC, ILQL)
  batch_size: int = 32
  bc_learning_rates: tuple[float, ...] = (3e-4, 1e-3)
  fractions: tuple[float, ...] = (0.1, 0.5)
  # (tau, CQL weight, Polyak rate, Polyak every): trlx's default schedule, then faster targets
  ilql_variants: tuple[tuple[float, float, float, int], ...] = (
      (0.7, 0.1, 0.001, 5), (0.7, 0.1, 0.05, 1), (0.9, 0.1, 0.05, 1), (0.7, 0.01, 0.05, 1))
  betas: tuple[float, ...] = (0.0, 1.0, 4.0, 16.0, 64.0)
  n_eval: int = 200  # prompts per validation / test split
  seeds: int = 5
  gamma: float = 0.99
  reward_norm: str = "dataset"
  # Larger models, each pretrained and fine-tuned by ILQL (the chosen variant, seed 0) to show
  # at which size the value function learns the reward
  scale_models: tuple[str, ...] = ("gpt2-mini",)

  def variants(self, method: str) -> list[dict[str, float]]:
    """The training variants of a method that seed 0 chooses among."""
    if method == "bc":
      return [{"learning_rate": lr} for lr in self.bc_learning_rates]
    if method == "pct_bc":
      return [{"fraction": f} for f in self.fractions]
    return [{"tau": t, "cql_weight": c, "polyak_rate": p, "polyak_every": e}
            for t, c, p, e in self.ilql_variants]


QUICK = Settings(pretrain_steps=8, steps=8, bc_learning_rates=(1e-3,), fractions=(0.25,),
                 ilql_variants=((0.7, 0.1, 0.05, 1),), betas=(0.0, 4.0), n_eval=8, seeds=1)


def variant_name(variant: dict[str, float]) -> str:
  short = {"learning_rate": "lr", "fraction": "top", "tau": "tau", "cql_weight": "cql",
           "polyak_rate": "polyak", "polyak_every": "every"}
  return "_".join(f"{short[k]}{v:g}" for k, v in variant.items())


def config(method: str, settings: Settings, seed: int, data_task: str,
           variant: dict[str, float], init: str, steps: int, learning_rate: float, model: str):
  """The training config of one policy (``init``: the pretrained trunk, or '' from scratch)."""
  from experiments.run_config import single_run_config
  s = settings
  c = single_run_config(task=data_task, loss="ilql" if method.startswith("ilql") else "mle",
                        model=model, lengths=LENGTHS, steps=steps,
                        learning_rate=variant.get("learning_rate", learning_rate),
                        seed=seed, log_points=30, batch_size=s.batch_size)
  c.model.init_from = init
  il = c.loss.ilql
  il.gamma, il.reward_norm = s.gamma, s.reward_norm
  for key in ("tau", "cql_weight", "polyak_rate", "polyak_every"):
    if key in variant:
      il[key] = type(il[key])(variant[key])
  return c


def rollout_returns(policy: Any, task: str, split: str, decoding: Any, n: int) -> np.ndarray:
  """Returns of ``n`` rollouts of ``policy`` on a split of ``task``."""
  from irl_lm import data
  from experiments import rollouts
  inputs, targets = LENGTHS
  examples = data.eval_examples(task, split, max_examples=n,
                                sequence_lengths={"inputs": inputs, "targets": targets})
  return rollouts.colour_returns(policy, examples, decoding, inputs_length=inputs,
                                 targets_length=targets)


def decodings(method: str, settings: Settings) -> dict[str, Any]:
  """Every policy greedy and sampled (T = 1); ILQL at each beta."""
  from experiments.rollouts import Decoding
  both = {"greedy": Decoding(), "sample": Decoding(method="sample", temperature=1.0)}
  if not method.startswith("ilql"):
    return both
  return {f"beta{b:g} {k}": dataclasses.replace(d, ilql_beta=b)
          for b in settings.betas for k, d in both.items()}


def train_policy(workdir: str, task: str, method: str, variant: dict[str, float], seed: int,
                 settings: Settings, init: str = "", model: str = "") -> dict[str, Any]:
  """Trains one policy (job) and measures its rollouts on validation and test; the
  ``pretrain`` method trains and exports the task's trunk. ``model``: a size other than
  the settings' one."""
  from irl_lm import data
  from experiments.curves import read_scalars
  from experiments.rollouts import Policy
  from experiments.value_probe import probe
  from irl_lm.workdir import restore_params
  from irl_lm.training.trainer import train_and_evaluate
  s = settings
  data_task = task
  if method == "pct_bc":
    data_task = f"{task}_top{round(variant['fraction'] * 100)}"
    data.register_top_fraction(data_task, task, variant["fraction"])
  steps, lr = s.steps, s.learning_rate
  if method == "pretrain":
    steps, lr = s.pretrain_steps, s.pretrain_learning_rate
  elif method == SCRATCH:
    steps = s.pretrain_steps + s.steps
  run_dir = os.path.join(workdir, "run")
  last = train_and_evaluate(config(method, s, seed, data_task, variant, init, steps, lr,
                                   model or s.model), run_dir)
  network, params, target_q, vocab = restore_params(run_dir)
  policy = Policy(network, params, target_q, vocab)
  out = {"task": task, "method": method, "variant": variant, "seed": seed, "model": model or s.model,
         "final_train_loss": last.get("train/loss"), "eval_loss": last.get("eval/loss"),
         "loss_curve": read_scalars(run_dir, "train/loss"), "returns": {}}
  if method == "pretrain":
    from irl_lm.models import save_pretrained
    out["path"] = os.path.join(workdir, "hf")
    save_pretrained(network, params, out["path"])
  for split in ("validation", "test"):
    out["returns"][split] = {}
    for name, d in decodings(method, s).items():
      d = dataclasses.replace(d, seed=seed)
      r = rollout_returns(policy, task, split, d, s.n_eval)
      out["returns"][split][name] = {"mean": float(r.mean()), "std": float(r.std())}
  if method.startswith("ilql"):
    out["probe"] = probe(policy, GENERATORS[task], "test", s.n_eval)
  return out


def run_suite(*, workroot: str, settings: Settings, workers: int, progress=print
              ) -> dict[str, Any]:
  """Pretrains, tunes, trains and measures every policy of both tasks; returns what the
  report reads."""
  s = settings
  t0 = time.time()
  me = "experiments.offline_rl:train_policy"
  progress(f"offline RL: pretraining one trunk per task ({s.pretrain_steps} steps of BC)")
  pre_jobs = [Job(f"{t}_pretrain", me, {"task": t, "method": "pretrain", "variant": {},
                                        "seed": 0, "settings": s}) for t in TASKS]
  pre = run_stage(pre_jobs, workroot, workers, progress)
  for j in pre_jobs:
    if not pre[j.name]["ok"]:
      raise RuntimeError(f"offline RL: pretraining failed: {pre[j.name]['error']}")
  init = {t: pre[f"{t}_pretrain"]["path"] for t in TASKS}

  def job(task, method, variant, seed):
    return Job(f"{task}_{method}_{variant_name(variant)}_seed{seed}", me,
               {"task": task, "method": method, "variant": variant, "seed": seed,
                "settings": s, "init": "" if method == SCRATCH else init[task]})

  tune = [job(t, m, v, 0) for t in TASKS for m in METHODS for v in s.variants(m)]
  progress(f"offline RL: {len(tune)} training variants with seed 0")
  tuned = run_stage(tune, workroot, workers, progress)
  chosen = {(t, m): choose_variant([tuned[j.name] for j in tune if j.kwargs["task"] == t
                                    and j.kwargs["method"] == m], s.variants(m))
            for t in TASKS for m in METHODS}
  final = [job(t, m, chosen[t, m], k) for t in TASKS for m in METHODS for k in range(s.seeds)]
  final += [job(t, SCRATCH, chosen[t, "ilql"], k) for t in TASKS for k in range(s.seeds)]
  progress(f"offline RL: chosen {chosen}; {len(final)} policies over {s.seeds} seeds")
  results = run_stage(final, workroot, workers, progress)
  scale = _scale_stage(s, chosen, workroot, workers, progress)
  row = lambda j, r: dict(r, name=j.name, **{k: j.kwargs[k] for k in
                                             ("task", "method", "variant", "seed")})
  return {"settings": dataclasses.asdict(s),
          "pretrain": [row(j, pre[j.name]) for j in pre_jobs],
          "tuning": [row(j, tuned[j.name]) for j in tune], "scale": scale,
          "chosen": [{"task": t, "method": m, "variant": v} for (t, m), v in chosen.items()],
          "rows": [row(j, results[j.name]) for j in final],
          "references": references(), "seconds": round(time.time() - t0)}


def _scale_stage(s: Settings, chosen: dict[tuple[str, str], dict[str, float]], workroot: str,
                 workers: int, progress) -> list[dict[str, Any]]:
  """Each of ``s.scale_models`` pretrained per task, then fine-tuned by ILQL (the variant
  chosen for ``s.model``, seed 0); returns the rows of both stages."""
  me = "experiments.offline_rl:train_policy"
  base = lambda t, m: {"task": t, "seed": 0, "settings": s, "model": m}
  pre = [Job(f"{t}_{m}_pretrain", me, {**base(t, m), "method": "pretrain", "variant": {}})
         for t in TASKS for m in s.scale_models]
  if not pre:
    return []
  progress(f"offline RL: ILQL at larger sizes {s.scale_models}")
  done = run_stage(pre, workroot, workers, progress)
  ilql = [Job(f"{j.kwargs['task']}_{j.kwargs['model']}_ilql_seed0", me,
              {**base(j.kwargs["task"], j.kwargs["model"]), "method": "ilql",
               "variant": chosen[j.kwargs["task"], "ilql"], "init": done[j.name].get("path", "")})
          for j in pre if done[j.name]["ok"]]
  done.update(run_stage(ilql, workroot, workers, progress))
  return [dict(done[j.name], name=j.name, **{k: j.kwargs[k] for k in
                                              ("task", "method", "variant", "seed", "model")})
          for j in pre + ilql]


def choose_variant(results: list[dict[str, Any]], variants: list[dict[str, float]]
                   ) -> dict[str, float]:
  """The variant whose seed-0 run has the best validation return under its best decoding
  (a failed or diverged run never wins)."""
  score = lambda r: (max(v["mean"] for v in r["returns"]["validation"].values())
                     if r["ok"] else -np.inf)
  return variants[int(np.argmax([score(r) for r in results]))]


def references() -> dict[str, dict[str, Any]]:
  """Exact returns of each task (the logging policy, greedy BC's Bayes optimum, the best
  logged episode or %BC's ceiling, the optimum) and the lowest BC loss where it is known."""
  from irl_lm import data
  from irl_lm.data.embedded import ilql, stitch
  vocab = data.make_vocabulary("embedded")
  val = list(data.embedded.generate("embedded_ilql", "validation"))
  floor = ilql.bc_loss_floor(val, [len(vocab.encode(ex["targets"])) + 1 for ex in val])
  return {COLOURS: {"returns": {"logging policy": ilql.BEHAVIOUR_MEAN_REWARD,
                                "greedy BC, Bayes-optimal": 0.5, "optimum": ilql.OPTIMAL_REWARD},
                    "bc_loss_floor": floor},
          STITCH: {"returns": {"logging policy": stitch.BEHAVIOUR_MEAN_REWARD,
                               "greedy BC, Bayes-optimal": stitch.greedy_bc_return(),
                               "best logged episode = %BC's ceiling": stitch.PCT_BC_CEILING,
                               "optimum": stitch.OPTIMAL_REWARD},
                   "bc_loss_floor": None}}
