"""Tables, plots and verdicts of the offline-RL suite (`offline_rl.py`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from experiments import protocol
from experiments.offline_rl import variant_name
from experiments.report import health, pyplot, save, table, write_markdown


BASES = {"bc": "BC", "ilql": "ILQL", "ilql_scratch": "ILQL from scratch"}


def policies(rows: list[dict[str, Any]], task: str) -> dict[str, dict[str, dict[int, float]]]:
  """{policy label: {split: {seed: mean return}}}: one label per method and decoding."""
  out: dict[str, dict[str, dict[int, float]]] = {}
  for r in rows:
    if r["task"] != task or not r["ok"]:
      continue
    base = BASES.get(r["method"]) or f"%BC {round(r['variant'].get('fraction', 1) * 100)}%"
    for split, by_decoding in r["returns"].items():
      for decoding, v in by_decoding.items():
        name = f"{base} {decoding.replace('beta', 'beta=')}"
        out.setdefault(name, {}).setdefault(split, {})[r["seed"]] = v["mean"]
  return out


def _median(d: dict[int, float]) -> float:
  return float(np.median(list(d.values()))) if d else float("nan")


def choose(pols: dict[str, dict[str, dict[int, float]]], prefix: str) -> str | None:
  """The policy starting with ``prefix`` with the best median validation return."""
  names = [n for n in pols if n.startswith(prefix)]
  return max(names, key=lambda n: _median(pols[n]["validation"])) if names else None


# A value function "learned the reward" when, over the seeds of the reported ILQL runs, the
# median correlation of Q(EOS) with the return is at least 0.5 and the median fraction of
# decisive steps ranked right is at least 0.75 (rule fixed before the runs).
LEARNED_CORRELATION, LEARNED_DECISIVE = 0.5, 0.75


def verdicts(pols: dict[str, Any], refs: dict[str, float], bc_flat: list[bool],
             bc_losses: list[float], floor: float | None, probes: list[dict[str, Any]]
             ) -> dict[str, str]:
  """The verdict of each claim on the test rollouts, with the numbers behind it."""
  ilql = choose(pols, "ILQL beta")
  best = max((n for n in (choose(pols, "BC "), choose(pols, "%BC")) if n),
             key=lambda n: _median(pols[n]["validation"]))
  a, b = pols[ilql]["test"], pols[best]["test"]
  ma, mb = _median(a), _median(b)
  if min(a.values()) > max(b.values()):
    word = "holds, every seed above every seed"
  elif ma > mb:
    word = "holds on the median, seed ranges overlap"
  else:
    word = "does not hold"
  out = {"beats_baselines": (
      f"**{word}**: {ilql} (chosen on validation) {protocol.fmt(list(a.values()))} against the "
      f"best baseline on validation, {best}, {protocol.fmt(list(b.values()))}")}
  best_logged = max(v for k, v in refs.items() if k != "optimum")
  word = "holds" if ma > best_logged else "does not hold"
  out["stitches"] = (f"**{word}**: ILQL's median test return {ma:.3f} against the best "
                     f"reference that needs no stitching ({best_logged:.3f}); optimum "
                     f"{refs['optimum']:.3f}")
  corr = [p["q_eos_return"] for p in probes]
  decisive = [p["decisive"] for p in probes]
  word = ("holds" if _median(dict(enumerate(corr))) >= LEARNED_CORRELATION
          and _median(dict(enumerate(decisive))) >= LEARNED_DECISIVE else "does not hold")
  out["value_learned"] = (f"**{word}**: correlation of Q(EOS) with the return "
                          f"{protocol.fmt(corr)}, decisive steps ranked right "
                          f"{protocol.fmt(decisive)} (thresholds {LEARNED_CORRELATION}, "
                          f"{LEARNED_DECISIVE})")
  word = "holds" if all(bc_flat) else "does not hold"
  out["bc_converged"] = (f"**{word}**: in {sum(bc_flat)}/{len(bc_flat)} BC runs the mean "
                         "training loss moved less than 2% between the two halves of the last "
                         "30% of training; final validation loss "
                         f"{protocol.fmt(bc_losses, 4)}" + (
                             f" against the lowest a BC model can reach, {floor:.4f}"
                             if floor is not None else ""))
  return out


def _task_plots(task: str, pols: dict[str, Any], refs: dict[str, float], rows: list[dict],
                outdir: str) -> list[str]:
  plt = pyplot()
  names = list(pols)
  fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4.5))
  for i, n in enumerate(names):
    v = list(pols[n]["test"].values())
    ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=12, color="C0")
    ax.plot([i - 0.3, i + 0.3], [np.median(v)] * 2, color="k")
  for j, (k, v) in enumerate(refs.items()):
    ax.axhline(v, linestyle=":", color=f"C{j + 1}", label=k)
  ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
  ax.set_ylabel("mean return of the test rollouts\n(dots: seeds; bar: median)")
  ax.set_title(task)
  ax.legend(fontsize=7)
  out = [save(fig, outdir, f"offline_rl_{task}_returns.png")]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  for ax, split in zip(axes, ("validation", "test")):
    for c, (label, prefix) in enumerate((("fine-tuned", "ILQL beta"),
                                         ("from scratch", "ILQL from scratch"))):
      for d, style in (("greedy", "-o"), ("sample", "--s")):
        ilql = [n for n in names if n.startswith(prefix) and n.endswith(d)]
        if not ilql:
          continue
        betas = [float(n.split("=")[1].split()[0]) for n in ilql]
        med = [_median(pols[n][split]) for n in ilql]
        ax.plot(betas, med, style, color=f"C{c}", label=f"{label}, {d} (median)")
        for n, b in zip(ilql, betas):
          v = list(pols[n][split].values())
          ax.scatter([b] * len(v), v, s=6, color=f"C{c}", alpha=0.4)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("ilql_beta")
    ax.set_ylabel(f"mean return ({split}; dots: seeds)")
    ax.legend(fontsize=6)
  out.append(save(fig, outdir, f"offline_rl_{task}_beta.png"))
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for r in rows:
    if r["task"] == task and r["method"] == "bc" and r["ok"]:
      steps, loss = zip(*r["loss_curve"])
      ax.plot(steps, loss, alpha=0.7, label=f"seed {r['seed']}")
  ax.set_yscale("log")
  ax.set_xlabel("fine-tuning step")
  ax.set_ylabel("BC training loss (log scale)")
  ax.set_title(f"{task}: behaviour cloning")
  ax.legend(fontsize=6)
  out.append(save(fig, outdir, f"offline_rl_{task}_bc_curves.png"))
  return out


def _probe_rows(rows: list[dict[str, Any]], task: str) -> list[list[str]]:
  """One table row per ILQL run that was probed (a run in several stages once)."""
  out, seen = [], set()
  for r in rows:
    if r["task"] == task and r["ok"] and "probe" in r and r["name"] not in seen:
      seen.add(r["name"])
      p = r["probe"]
      out.append([BASES[r["method"]], variant_name(r["variant"]), r["seed"],
                  f"{p['v0_return']:+.3f} (sd {p['v0_std']:.3g})",
                  f"{p['q_eos_return']:+.3f} (sd {p['q_eos_std']:.3g})", f"{p['decisive']:.3f}",
                  ", ".join(f"{x:.2f}" for x in p["decisive_by_slot"])])
  return out


def _scale_section(result: dict[str, Any], model: str) -> list[str]:
  """The larger models' ILQL runs (seed 0) beside the suite model's seed 0."""
  rows = [r for r in result["rows"] if r["method"] == "ilql" and r["seed"] == 0]
  rows += [r for r in result["scale"] if r["method"] == "ilql"]
  trunks = {(r["task"], r.get("model", model)): r for r in result["pretrain"] + result["scale"]
            if r["method"] == "pretrain" and r["ok"]}
  body = []
  for r in rows:
    if not r["ok"]:
      continue
    m = r.get("model", model)
    trunk = trunks.get((r["task"], m))
    best = max(r["returns"]["validation"], key=lambda d: r["returns"]["validation"][d]["mean"])
    p = r["probe"]
    body.append([r["task"], m, f"{trunk['eval_loss']:.4f}" if trunk else "–",
                 ", ".join(f"{k} {v['mean']:.3f}" for k, v in trunk["returns"]["test"].items())
                 if trunk else "–",
                 f"{best}: {r['returns']['test'][best]['mean']:.3f}",
                 f"{p['q_eos_return']:+.3f}", f"{p['decisive']:.3f}",
                 ", ".join(f"{x:.2f}" for x in p["decisive_by_slot"])])
  if not result["scale"]:
    return []
  return ["## Model size (seed 0)", "",
          "Each size pretrained on the task and fine-tuned by ILQL with the variant chosen for "
          f"`{model}`; the decoding is the best on validation, reported on test.", "",
          table(["task", "model", "trunk's BC validation loss", "trunk's test return",
                 "ILQL test return", "corr(Q(EOS), return)", "decisive steps right", "by slot"],
                body), ""]


def offline_rl_report(result: dict[str, Any], outdir: str) -> dict[str, dict[str, str]]:
  """Writes offline_rl.md and its plots; returns the verdicts by task and claim."""
  s = result["settings"]
  rows = result["rows"]
  runs = rows + result["tuning"] + result["pretrain"]
  lines = ["# ILQL under delayed rewards against behaviour cloning", "",
           f"`{s['model']}`: one trunk per task pretrained by BC on all logged episodes "
           f"({s['pretrain_steps']} steps, lr {s['pretrain_learning_rate']:g}), then fine-tuned "
           f"{s['steps']} steps at batch {s['batch_size']}, lr {s['learning_rate']:g} (BC: chosen "
           f"among {s['bc_learning_rates']}; %BC: fraction among {s['fractions']}); ILQL gamma "
           f"{s['gamma']}, reward_norm {s['reward_norm']}, (tau, CQL weight, Polyak rate, Polyak "
           f"every) chosen among {s['ilql_variants']}; ILQL from scratch: the chosen variant, "
           f"{s['pretrain_steps'] + s['steps']} steps. {s['seeds']} seeds; {s['n_eval']} rollouts "
           f"per split; {sum(r['seconds'] for r in runs):.0f} s of training and measurement "
           "(summed over runs). Cells: median [IQR] (n) of each seed's mean return, then every "
           "seed.", ""]
  all_verdicts = {}
  claims = {"beats_baselines": "ILQL beats the best BC baseline",
            "stitches": "ILQL beats every policy that needs no stitching",
            "value_learned": "ILQL's value function learned the delayed reward",
            "bc_converged": "BC was trained to convergence"}
  for task in sorted({r["task"] for r in rows}):
    pols = policies(rows, task)
    refs = result["references"][task]["returns"]
    bc = [r for r in rows if r["task"] == task and r["method"] == "bc" and r["ok"]]
    probes = [r["probe"] for r in rows if r["task"] == task and r["method"] == "ilql"
              and r["ok"]]
    v = verdicts(pols, refs, [protocol.flat_tail([x for _, x in r["loss_curve"]]) for r in bc],
                 [r["eval_loss"] for r in bc], result["references"][task]["bc_loss_floor"],
                 probes)
    all_verdicts[task] = v
    chosen = {choose(pols, p) for p in ("ILQL beta", "ILQL from scratch", "%BC", "BC ")}
    body = [[n + (" (chosen on validation)" if n in chosen else ""),
             protocol.fmt(list(p["validation"].values()), 3),
             protocol.fmt(list(p["test"].values()), 3),
             ", ".join(f"{x:.3f}" for x in p["test"].values())] for n, p in pols.items()]
    trunk = next(r for r in result["pretrain"] if r["task"] == task)
    lines += [f"## {task}", "", "References: " + ", ".join(f"{k} {x:.3f}"
                                                          for k, x in refs.items()) + ".", ""]
    if trunk["ok"]:
      lines += ["The pretrained trunk itself (seed 0), test: " + ", ".join(
          f"{k} {x['mean']:.3f}" for k, x in trunk["returns"]["test"].items()) + ".", ""]
    lines += [f"- {claims[k]}: {t}" for k, t in v.items()]
    lines += ["", table(["policy", "validation", "test", "test, every seed"], body), ""]
    lines += [f"![{f}]({f})" for f in _task_plots(task, pols, refs, rows, outdir)]
    lines += ["", f"### {task}: what the value function learned (test episodes)", "",
              "Q(EOS): min of the target Q heads for EOS where the logged response ends (the "
              "return is fixed there); decisive steps: on the optimal response, the right colour "
              "ranked above the object's confusion by min(Q1, Q2), overall and by slot.", "",
              table(["run", "variant", "seed", "corr(V(s0), return)", "corr(Q(EOS), return)",
                     "decisive steps right", "by slot"],
                    _probe_rows(result["tuning"] + rows, task)), ""]
  lines += _scale_section(result, s["model"])
  tuning = [[r["task"], r["method"], variant_name(r["variant"]),
             ", ".join(f"{k} {v['mean']:.3f}" for k, v in r["returns"]["validation"].items())
             if r["ok"] else "failed"] for r in result["tuning"]]
  lines += ["## Training variants (seed 0, validation rollouts)", "",
            "Chosen: " + "; ".join(f"{c['task']} {c['method']}: {variant_name(c['variant'])}"
                                   for c in result["chosen"]) + ".", "",
            table(["task", "method", "variant", "mean validation return by decoding"], tuning),
            "", "## Run health", "", health(runs, ("task", "method", "variant"))]
  write_markdown(outdir, "offline_rl.md", "\n".join(lines))
  return all_verdicts
