"""Tables, plots and verdicts of the imitation benchmark (`imitation.py`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from experiments import protocol
from experiments.report import health, pyplot, save, table, write_markdown

SPLIT = "test"
METRICS = (("quality", "teacher log-likelihood per token (higher is better)"),
           ("self_bleu", "Self-BLEU (lower is more diverse)"),
           ("distinct_2", "distinct bigrams % (higher is more diverse)"),
           ("entropy_2", "bigram entropy, nats (higher is more diverse)"))


def label(row: dict[str, Any]) -> str:
  name = {"mle": "MLE", "iqlearn": "IQLearn", "online": "online IQLearn",
          "gail": "GAIL"}[row["method"]]
  if row["method"] not in ("mle", "gail"):
    name += f" lam={row['lam']:g}"
  return name + (" (scratch)" if row["init"] == "scratch" else "")


def by_method(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
  """{label: {seed: measurements on the test prompts}} of the runs that finished."""
  out: dict[str, dict[int, dict[str, Any]]] = {}
  for r in rows:
    if r["ok"]:
      out.setdefault(label(r), {})[r["seed"]] = r["splits"][SPLIT]
  return out


def _values(runs: dict[int, dict[str, Any]], decoding: str, metric: str) -> dict[int, float]:
  return {k: v[decoding][metric] for k, v in runs.items()}


def dominated(a: tuple[float, float], curve: list[tuple[float, float]]) -> bool:
  """Whether point a = (quality, self_bleu) is dominated by some point of ``curve``
  (quality >= and Self-BLEU <=, one strictly)."""
  return any(q >= a[0] and b <= a[1] and (q > a[0] or b < a[1]) for q, b in curve)


def _curve(runs: dict[int, dict[str, Any]], decodings: list[str], seed: int | None = None
           ) -> list[tuple[float, float]]:
  pick = (lambda d, m: np.median(list(_values(runs, d, m).values()))) if seed is None else (
      lambda d, m: runs[seed][d][m])
  return [(pick(d, "quality"), pick(d, "self_bleu")) for d in decodings]


def compare(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], decodings: list[str],
            temps: list[str]) -> dict[str, Any]:
  """Method a against method b: paired per-seed differences per decoding, curve dominance
  (median curves and per seed) and Self-BLEU at matched quality along the temperatures."""
  diffs = {d: {m: protocol.paired(_values(a, d, m), _values(b, d, m))
               for m in ("quality", "self_bleu")} for d in decodings}
  ca, cb = _curve(a, decodings), _curve(b, decodings)
  seeds = sorted(set(a) & set(b))
  per_seed = [np.mean([dominated(p, _curve(a, decodings, k)) for p in _curve(b, decodings, k)])
              for k in seeds]
  matched = []
  for k in seeds:
    qa = [a[k][t]["quality"] for t in temps]
    ba = [a[k][t]["self_bleu"] for t in temps]
    levels = [b[k][t]["quality"] for t in temps]
    at = protocol.at_quality(qa, ba, levels)
    matched += [x - b[k][t]["self_bleu"] for x, t in zip(at, temps) if np.isfinite(x)]
  return {"diffs": diffs,
          "b_points_dominated_by_a": float(np.mean([dominated(p, ca) for p in cb])),
          "a_points_dominated_by_b": float(np.mean([dominated(p, cb) for p in ca])),
          "per_seed_b_dominated": per_seed,
          "self_bleu_at_matched_quality": protocol.summary(matched)}


def verdict_dominance(c: dict[str, Any], a: str, b: str) -> str:
  share, back = c["b_points_dominated_by_a"], c["a_points_dominated_by_b"]
  seeds = c["per_seed_b_dominated"]
  word = ("holds" if share == 1.0 and back == 0.0 else
          "does not hold" if share <= back else "holds in part")
  return (f"**{word}**: {share:.0%} of {b}'s median decoding points are dominated by {a}'s "
          f"curve ({back:.0%} of {a}'s by {b}'s); per seed, "
          f"{', '.join(f'{x:.0%}' for x in seeds)} of {b}'s points")


def verdict_low_temperature(c: dict[str, Any], coldest: str, hottest: str) -> str:
  gain = {d: c["diffs"][d]["quality"]["median"] for d in c["diffs"]}
  holds = gain["greedy"] > 0 and gain[coldest] > gain[hottest] and gain["greedy"] > gain["beam"]
  word = "holds" if holds else "does not hold"
  cells = ", ".join(f"{d} {gain[d]:+.3f} ({c['diffs'][d]['quality']['wins']}/"
                    f"{c['diffs'][d]['quality']['n']} seeds better)" for d in gain)
  return f"**{word}**: median quality gain per decoding: {cells}"


def verdict_matched(c: dict[str, Any], a: str, b: str) -> str:
  m = c["self_bleu_at_matched_quality"]
  if not m["n"]:
    return "**cannot be tested**: the two temperature curves share no quality range"
  word = "holds" if m["q3"] < 0 else "does not hold" if m["q1"] > 0 else "is not resolved"
  return (f"**{word}**: Self-BLEU of {a} minus {b} at equal quality, median {m['median']:+.2f} "
          f"[{m['q1']:+.2f}, {m['q3']:+.2f}] over {m['n']} matched points")


def verdict_reward(methods: dict[str, dict[int, dict[str, Any]]], iq: str, mle: str,
                   temps: list[str]) -> str:
  cells, better, worse = [], 0, 0
  pearson = lambda runs, t: {k: v[t]["implied_reward"]["pearson_within_prompt"]
                             for k, v in runs.items()}
  for t in temps:
    a, b = pearson(methods[iq], t), pearson(methods[mle], t)
    d = protocol.paired(a, b)
    if not d["n"]:
      return f"**cannot be tested**: no finite correlation at {t}"
    better += d["median"] > 0 and d["wins"] > d["losses"]
    worse += d["median"] <= 0 and d["wins"] <= d["losses"]
    cells.append(f"{t}: {np.nanmedian(list(a.values())):.3f} vs "
                 f"{np.nanmedian(list(b.values())):.3f} ({d['wins']}/{d['n']} seeds higher)")
  word = ("holds" if better == len(temps) else "does not hold" if worse == len(temps) else
          "holds in part")
  return (f"**{word}** against the MLE control: within-prompt Pearson of the summed implied "
          f"reward with quality, {iq} vs {mle}: " + "; ".join(cells))


def _quality_table(methods: dict[str, dict[int, dict[str, Any]]], decodings: list[str],
                   metric: str) -> str:
  rows = [[name] + [protocol.fmt(list(_values(runs, d, metric).values()), 3 if metric ==
                                 "quality" else 1) for d in decodings]
          for name, runs in methods.items()]
  return table(["method"] + decodings, rows)


def plots(methods: dict[str, dict[int, dict[str, Any]]], decodings: list[str],
          temps: list[str], outdir: str) -> list[str]:
  plt = pyplot()
  out = []
  groups = (("fine-tuned from the pretrained student", [m for m in methods if "scratch" not in m]),
            ("from scratch", [m for m in methods if "scratch" in m]))
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
  for ax, (title, names) in zip(axes, groups):
    for i, name in enumerate(names):
      color = f"C{i}"
      runs = methods[name]
      for k, v in runs.items():
        ax.scatter([v[d]["self_bleu"] for d in decodings], [v[d]["quality"] for d in decodings],
                   color=color, alpha=0.2, s=10)
      med = {d: (np.median(list(_values(runs, d, "self_bleu").values())),
                 np.median(list(_values(runs, d, "quality").values()))) for d in decodings}
      ax.plot([med[t][0] for t in temps], [med[t][1] for t in temps], "-o", color=color,
              label=f"{name} (n={len(runs)})")
      for t in temps:
        ax.annotate(t[1:], med[t], fontsize=6, color=color)
      ax.scatter(*med["greedy"], marker="s", color=color, edgecolor="k", zorder=3)
      ax.scatter(*med["beam"], marker="D", color=color, edgecolor="k", zorder=3)
    ax.set_xlabel("Self-BLEU of the samples of a prompt (lower = more diverse)")
    ax.set_ylabel("teacher log-likelihood per token")
    ax.set_title(f"{title}\nline: temperatures; square: greedy; diamond: beam", fontsize=9)
    ax.legend(fontsize=7)
  out.append(save(fig, outdir, "imitation_curves.png"))
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, d in zip(axes, ("greedy", temps[-1])):
    for i, (name, runs) in enumerate(methods.items()):
      curve = np.median([v[d]["by_position"] for v in runs.values()], axis=0)
      ax.plot(np.arange(1, len(curve) + 1), curve, label=name, color=f"C{i}",
              linestyle="--" if "scratch" in name else "-")
    ax.set_xlabel("position in the continuation")
    ax.set_ylabel("teacher log-likelihood of the token (median over seeds)")
    ax.set_title(f"compounding error, {d}")
    ax.legend(fontsize=7)
  out.append(save(fig, outdir, "imitation_compounding.png"))
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, (name, runs) in enumerate(methods.items()):
    vals = [[v[t]["implied_reward"]["pearson_within_prompt"] for v in runs.values()]
            for t in temps]
    xs = [float(t[1:]) for t in temps]
    ax.plot(xs, [np.nanmedian(v) for v in vals], marker="o", color=f"C{i}", label=name,
            linestyle="--" if "scratch" in name else "-")
    for x, v in zip(xs, vals):
      ax.scatter([x] * len(v), v, color=f"C{i}", alpha=0.3, s=8)
  ax.set_xlabel("sampling temperature")
  ax.set_ylabel("within-prompt Pearson r\n(summed implied reward vs teacher log-likelihood)")
  ax.legend(fontsize=7)
  out.append(save(fig, outdir, "imitation_implied_reward.png"))
  return out


def imitation_report(result: dict[str, Any], outdir: str) -> dict[str, str]:
  """Writes imitation.md and the plots; returns the verdicts by claim."""
  s = result["settings"]
  decodings = ["greedy", "beam"] + [f"T{t:g}" for t in s["temperatures"]]
  temps = decodings[2:]
  methods = by_method(result["rows"])
  names = list(methods)
  mle = next(n for n in names if n == "MLE")
  iq = next(n for n in names if n.startswith("IQLearn") and "scratch" not in n)
  verdicts = {}
  c = compare(methods[iq], methods[mle], decodings, temps)
  verdicts["dominates"] = verdict_dominance(c, iq, mle)
  verdicts["low_temperature"] = verdict_low_temperature(c, temps[0], temps[-1])
  verdicts["matched_quality"] = verdict_matched(c, iq, mle)
  verdicts["implied_reward"] = verdict_reward(methods, iq, mle, temps)
  online = next((n for n in names if n.startswith("online")), None)
  if online:
    verdicts["online"] = verdict_dominance(compare(methods[online], methods[mle], decodings,
                                                   temps), online, mle)
  gail = next((n for n in names if n == "GAIL"), None)
  if gail:
    verdicts["gail"] = verdict_dominance(compare(methods[iq], methods[gail], decodings, temps),
                                         iq, gail)
  scratch_mle = next((n for n in names if n == "MLE (scratch)"), None)
  scratch_iq = next((n for n in names if n.startswith("IQLearn") and "scratch" in n), None)
  if scratch_mle and scratch_iq:
    verdicts["scratch"] = verdict_dominance(compare(methods[scratch_iq], methods[scratch_mle],
                                                    decodings, temps), scratch_iq, scratch_mle)
  figures = plots(methods, decodings, temps, outdir)
  claims = {"dominates": "IQLearn's quality-diversity curve dominates MLE's",
            "low_temperature": "the gain is largest at low temperature and without beam search",
            "matched_quality": "IQLearn is more diverse than MLE at matched quality",
            "implied_reward": "IQLearn's implied reward tracks quality better than MLE's",
            "online": "online IQLearn's curve dominates MLE's",
            "gail": "IQLearn's curve dominates GAIL's (the paper's adversarial baseline)",
            "scratch": "from scratch too, IQLearn's curve dominates MLE's"}
  data = result["data"]
  lines = [
      "# Imitation benchmark: IQLearn against MLE with a known expert", "",
      f"Teacher: `{result['teacher']['path']}`"
      + (" (trained by the benchmark)" if result["teacher"].get("trained_here") else "")
      + f"; expert temperature {s['expert_temperature']}, broad temperature "
      f"{s['broad_temperature']}; prompts of {s['prompt_len']} tokens, continuations of "
      f"{s['cont_len']}; {s['n_train']} demonstrations; {s['n_eval']} test prompts x "
      f"{s['samples']} samples; students `{s['student']}`, {s['finetune_steps']} fine-tuning "
      f"steps ({s['scratch_steps']} from scratch); {s['seeds']} seeds; "
      f"{sum(r['seconds'] for r in result['rows'] + result['tuning'] + result['pretrain']):.0f}"
      " s of training and measurement (summed over runs).", "",
      f"The expert's own continuations score {data['expert_quality']:.3f} per token; the broad "
      f"corpus scores {data['broad_quality']:.3f}. Chosen on validation (seeds "
      f"< {s['tune_seeds']}): " + ", ".join(f"{m}: lam={c['lam']:g}, lr={c['lr']:g}"
                                            for m, c in result["chosen"].items()) + ".", "",
      "## Verdicts", ""]
  lines += [f"- {claims[k]}: {v}" for k, v in verdicts.items()]
  for metric, what in METRICS:
    lines += ["", f"## {what}", "", "Median [IQR] over seeds, test prompts.", "",
              _quality_table(methods, decodings, metric)]
  lines += ["", "## Tuning (validation prompts, mean quality over decodings)", "",
            table(["run", "mean quality"], [[r["name"], f"{np.mean([d['quality'] for d in r['splits']['validation'].values()]):.4f}" if r["ok"] else "failed"] for r in result["tuning"]]),
            "", "## Run health", "", health(result["rows"], ("method", "init")), ""]
  lines += [f"![{f}]({f})" for f in figures]
  write_markdown(outdir, "imitation.md", "\n".join(lines))
  return verdicts
