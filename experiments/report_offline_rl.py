"""Tables, plots and verdicts of the offline-RL suite (`offline_rl.py`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from experiments import protocol
from experiments.offline_rl import variant_name
from experiments.report import health, pyplot, save, table, write_markdown


def policies(rows: list[dict[str, Any]], task: str) -> dict[str, dict[str, dict[int, float]]]:
  """{policy label: {split: {seed: mean return}}}: one label per method and decoding."""
  out: dict[str, dict[str, dict[int, float]]] = {}
  for r in rows:
    if r["task"] != task or not r["ok"]:
      continue
    base = {"bc": "BC", "ilql": "ILQL",
            "pct_bc": f"%BC {round(r['variant'].get('fraction', 1) * 100)}%"}[r["method"]]
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


def verdicts(task: str, pols: dict[str, Any], refs: dict[str, float], bc_flat: list[bool],
             bc_losses: list[float], floor: float | None) -> dict[str, str]:
  """The verdict of each claim on the test rollouts, with the numbers behind it."""
  ilql = choose(pols, "ILQL")
  baselines = [n for n in (choose(pols, "BC greedy"), choose(pols, "BC sample"),
                           choose(pols, "%BC")) if n]
  best = max(baselines, key=lambda n: _median(pols[n]["validation"]))
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
  fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names)), 4))
  for i, n in enumerate(names):
    v = list(pols[n]["test"].values())
    ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=12, color="C0")
    ax.plot([i - 0.3, i + 0.3], [np.median(v)] * 2, color="k")
  for j, (k, v) in enumerate(refs.items()):
    ax.axhline(v, linestyle=":", color=f"C{j + 1}", label=k)
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
  ax.set_ylabel("mean return of the test rollouts\n(dots: seeds; bar: median)")
  ax.set_title(task)
  ax.legend(fontsize=7)
  out = [save(fig, outdir, f"offline_rl_{task}_returns.png")]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  ilql = [n for n in names if n.startswith("ILQL")]
  betas = [float(n.split("=")[1]) for n in ilql]
  for ax, split in zip(axes, ("validation", "test")):
    seeds = sorted(pols[ilql[0]][split])
    for k in seeds:
      ax.plot(betas, [pols[n][split].get(k, np.nan) for n in ilql], "-o", alpha=0.5,
              label=f"seed {k}")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("ilql_beta")
    ax.set_ylabel(f"mean return ({split})")
    ax.legend(fontsize=6)
  out.append(save(fig, outdir, f"offline_rl_{task}_beta.png"))
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for r in rows:
    if r["task"] == task and r["method"] == "bc" and r["ok"]:
      steps, loss = zip(*r["loss_curve"])
      ax.plot(steps, loss, alpha=0.7, label=f"seed {r['seed']}")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("BC training loss (log scale)")
  ax.set_title(f"{task}: behaviour cloning")
  ax.legend(fontsize=6)
  out.append(save(fig, outdir, f"offline_rl_{task}_bc_curves.png"))
  return out


def offline_rl_report(result: dict[str, Any], outdir: str) -> dict[str, dict[str, str]]:
  """Writes offline_rl.md and its plots; returns the verdicts by task and claim."""
  s = result["settings"]
  rows = result["rows"]
  lines = ["# ILQL under delayed rewards against behaviour cloning", "",
           f"`{s['model']}` from scratch, {s['steps']} steps, batch {s['batch_size']}, lr "
           f"{s['learning_rate']:g} (BC: chosen among {s['bc_learning_rates']}); ILQL gamma "
           f"{s['gamma']}, CQL {s['cql_weight']}, (tau, Polyak rate) chosen among "
           f"{s['ilql_variants']}; {s['seeds']} seeds; {s['n_eval']} rollouts per split; "
           f"{sum(r['seconds'] for r in rows + result['tuning']):.0f} s of training and "
           "measurement (summed over runs). Cells: median [IQR] (n) of each seed's mean return, "
           "then every seed.", ""]
  all_verdicts = {}
  claims = {"beats_baselines": "ILQL beats the best BC baseline",
            "stitches": "ILQL beats every policy that needs no stitching",
            "bc_converged": "BC was trained to convergence"}
  for task in sorted({r["task"] for r in rows}):
    pols = policies(rows, task)
    refs = result["references"][task]["returns"]
    bc = [r for r in rows if r["task"] == task and r["method"] == "bc" and r["ok"]]
    v = verdicts(task, pols, refs, [protocol.flat_tail([x for _, x in r["loss_curve"]])
                                    for r in bc], [r["eval_loss"] for r in bc],
                 result["references"][task]["bc_loss_floor"])
    all_verdicts[task] = v
    chosen = {choose(pols, p) for p in ("ILQL", "%BC")}
    body = [[n + (" (chosen on validation)" if n in chosen else ""),
             protocol.fmt(list(p["validation"].values()), 3),
             protocol.fmt(list(p["test"].values()), 3),
             ", ".join(f"{x:.3f}" for x in p["test"].values())] for n, p in pols.items()]
    lines += [f"## {task}", "", "References: " + ", ".join(f"{k} {x:.3f}"
                                                          for k, x in refs.items()) + ".", ""]
    lines += [f"- {claims[k]}: {t}" for k, t in v.items()]
    lines += ["", table(["policy", "validation", "test", "test, every seed"], body), ""]
    lines += [f"![{f}]({f})" for f in _task_plots(task, pols, refs, rows, outdir)]
    lines += [""]
  tuning = [[r["task"], r["method"], variant_name(r["variant"]),
             ", ".join(f"{k} {v['mean']:.3f}" for k, v in r["returns"]["validation"].items())
             if r["ok"] else "failed"] for r in result["tuning"]]
  lines += ["## Training variants (seed 0, validation rollouts)", "",
            "Chosen: " + "; ".join(f"{c['task']} {c['method']}: {variant_name(c['variant'])}"
                                   for c in result["chosen"]) + ".", "",
            table(["task", "method", "variant", "mean validation return by decoding"], tuning),
            "", "## Run health", "", health(rows, ("task", "method"))]
  write_markdown(outdir, "offline_rl.md", "\n".join(lines))
  return all_verdicts
