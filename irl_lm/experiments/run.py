"""Run the experiments: ``python -m irl_lm.experiments.run --suite=all --outdir=docs/results``.

Trains small T5s from scratch on the embedded tasks (several seeds per
setting), measures them, and writes tables (markdown + JSON) and PNG plots into
``--outdir``. Finished runs are cached in ``--workroot``, so an interrupted
sweep resumes. ``--quick`` (a few steps, one seed) checks the plumbing.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
from absl import flags, logging

from irl_lm import cli
from irl_lm.errors import ConfigError

flags.DEFINE_enum("suite", "all", ["all", "iqlearn", "ilql", "reward"], "Which experiments.")
flags.DEFINE_string("outdir", "docs/results", "Where tables and plots go.")
flags.DEFINE_string("workroot", None, "Where runs (checkpoints) go; default a temp dir.")
flags.DEFINE_integer("seeds", 3, "Seeds per setting.")
flags.DEFINE_integer("steps", 1500, "Training steps per run.")
flags.DEFINE_integer("eval_prompts", 200, "Held-out prompts per measurement.")
flags.DEFINE_bool("quick", False, "Tiny steps and one seed: checks that every artefact is made.")
FLAGS = flags.FLAGS


def _measure_iqlearn(run, model, params, task, lengths, examples, samples: int) -> dict:
  from irl_lm.experiments import measure
  kw = dict(max_new_tokens=lengths["targets"], inputs_length=lengths["inputs"])
  greedy = [t[0] for t in measure.sample_texts(model, params, task, examples, **kw)]
  name, value = measure.primary_metric(measure.task_score(task, examples, greedy))
  row = {"metric_name": name, "greedy_metric": value}
  for temp in (1.0, 0.7):
    texts = measure.sample_texts(model, params, task, examples, method="sample",
                                 temperature=temp, num_samples=samples, seed=run.seed, **kw)
    row[f"self_bleu_t{temp}"] = measure.self_bleu(texts)
    row[f"sample_metric_t{temp}"] = measure.primary_metric(
        measure.task_score(task, examples, [t[0] for t in texts]))[1]
  return row


def _measure_reward(run, config, model, params, task, lengths, examples) -> tuple[dict, tuple]:
  """Implied reward vs quality on samples of varying quality (greedy, T=1, T=1.5, reference)."""
  from irl_lm.experiments import measure
  kw = dict(max_new_tokens=lengths["targets"], inputs_length=lengths["inputs"])
  texts, owners = [], []
  for temp, n in ((None, 1), (1.0, 3), (1.5, 3)):
    method = "greedy" if temp is None else "sample"
    got = measure.sample_texts(model, params, task, examples, method=method,
                               temperature=temp or 1.0, num_samples=n, seed=run.seed + 17, **kw)
    for i, samples in enumerate(got):
      texts += samples
      owners += [i] * len(samples)
  for i, ex in enumerate(examples):
    texts.append(ex["targets_pretokenized"])
    owners.append(i)
  owners = np.asarray(owners)
  exs = [examples[i] for i in owners]
  returns = measure.implied_returns(model, params, task, exs, texts,
                                    gamma=config.loss.iqlearn.gamma,
                                    inputs_length=lengths["inputs"],
                                    targets_length=lengths["targets"])
  quality = measure.per_sample_quality(task, exs, texts)
  row = {**measure.correlations(returns, quality, owners), "n": len(texts)}
  return row, (returns, quality)


def _measure_ilql(run, model, params, target_q, task, lengths, examples) -> dict:
  from irl_lm.experiments import measure
  from irl_lm.experiments.settings import ILQL_BETAS
  kw = dict(max_new_tokens=lengths["targets"], inputs_length=lengths["inputs"])
  row = {}
  for beta in ILQL_BETAS if run.loss == "ilql" else (0.0,):
    texts = measure.sample_texts(model, params, task, examples, ilql_beta=beta,
                                 target_q=target_q, **kw)
    row[f"reward_beta{beta:g}"] = measure.task_score(task, examples, [t[0] for t in texts])[
        "reward"]
  return row


def run_one(run, steps: int, workroot: str, n_prompts: int, samples: int) -> dict:
  """Trains (or reuses) one run and measures it."""
  from irl_lm import data
  from irl_lm.experiments.settings import config_for
  from irl_lm.training.builders import restore_params
  from irl_lm.training.trainer import train_and_evaluate
  workdir = os.path.join(workroot, run.name)
  cached = os.path.join(workdir, f"measured_{run.suite}.json")
  if os.path.exists(cached):
    with open(cached) as f:
      return json.load(f)
  config = config_for(run, steps)
  t0 = time.time()
  train = train_and_evaluate(config, workdir)
  model, params, target_q, _ = restore_params(workdir)
  task = data.get_task(run.task)
  lengths = {"inputs": config.data.inputs_length, "targets": config.data.targets_length}
  examples = data.eval_examples(task, "validation", max_examples=n_prompts,
                                sequence_lengths=lengths)
  row = {"task": run.task, "method": run.method, "loss": run.loss, "lam": run.lam,
         "seed": run.seed, "final_train_loss": train.get("train/loss"),
         "eval_loss": train.get("eval/loss")}
  if run.suite == "iqlearn":
    row.update(_measure_iqlearn(run, model, params, task, lengths, examples, samples))
    if run.lam > 0 and run.seed == 0:
      corr, points = _measure_reward(run, config, model, params, task, lengths, examples)
      row["reward_correlation"] = corr
      np.savez(os.path.join(workdir, "reward_points.npz"), returns=points[0], quality=points[1])
  else:
    row.update(_measure_ilql(run, model, params, target_q, task, lengths, examples))
  row["seconds"] = time.time() - t0
  with open(cached, "w") as f:
    json.dump(row, f)
  return row


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  for name in ("seeds", "steps", "eval_prompts"):
    if FLAGS[name].value < 1:
      raise ConfigError("value out of range", f"--{name}", expected="value >= 1",
                        found=FLAGS[name].value)
  from irl_lm.experiments import report
  from irl_lm.experiments.settings import ILQL_BETAS, Run, runs
  t0 = time.time()
  seeds, steps = (1, 4) if FLAGS.quick else (FLAGS.seeds, FLAGS.steps)
  n_prompts, samples = (4, 2) if FLAGS.quick else (FLAGS.eval_prompts, 5)
  workroot = FLAGS.workroot or tempfile.mkdtemp(prefix="irl_lm_experiments_")
  import jax
  jax.config.update("jax_compilation_cache_dir", os.path.join(workroot, "xla_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  os.makedirs(FLAGS.outdir, exist_ok=True)
  todo = runs(FLAGS.suite, seeds, FLAGS.quick)
  rows = []
  for i, run in enumerate(todo):
    logging.info("[%d/%d] %s", i + 1, len(todo), run.name)
    print(f"[{i + 1}/{len(todo)}] {run.name} ({time.time() - t0:.0f}s elapsed)", flush=True)
    rows.append(run_one(run, steps, workroot, n_prompts, samples))
  iq = [r for r in rows if r["loss"] == "iqlearn"]
  il = [r for r in rows if r["task"] == "embedded_ilql"]
  settings = {"steps": steps, "seeds": seeds, "eval_prompts": n_prompts, "samples": samples,
              "quick": FLAGS.quick, "model": "t5-tiny (from scratch)",
              "runtime_seconds": round(time.time() - t0)}
  if iq:
    report.write(FLAGS.outdir, "iqlearn_vs_mle", report.iqlearn_table(iq),
                 {"settings": settings, "rows": iq})
    report.tradeoff_plot(iq, os.path.join(FLAGS.outdir, "iqlearn_tradeoff.png"))
    corr = [{**r["reward_correlation"], "task": r["task"], "method": r["method"],
             "seed": r["seed"]} for r in iq if "reward_correlation" in r]
    report.write(FLAGS.outdir, "implied_reward", report.reward_table(corr),
                 {"settings": settings, "rows": corr})
    points = {}
    for r in iq:
      if "reward_correlation" in r:
        name = Run("iqlearn", r["task"], "iqlearn", r["seed"], r["lam"]).name
        z = np.load(os.path.join(workroot, name, "reward_points.npz"))
        points[f"{r['task']} {r['method']}"] = (z["returns"], z["quality"])
    report.reward_plot(points, os.path.join(FLAGS.outdir, "implied_reward.png"))
  if il:
    report.write(FLAGS.outdir, "ilql_vs_bc", report.ilql_table(il, ILQL_BETAS),
                 {"settings": settings, "rows": il})
    report.ilql_plot(il, ILQL_BETAS, os.path.join(FLAGS.outdir, "ilql_reward.png"))
  settings["runtime_seconds"] = round(time.time() - t0)
  with open(os.path.join(FLAGS.outdir, "settings.json"), "w") as f:
    json.dump(settings, f, indent=2)
  print(f"done in {settings['runtime_seconds']}s; results in {FLAGS.outdir}")


if __name__ == "__main__":
  cli.run(main)
