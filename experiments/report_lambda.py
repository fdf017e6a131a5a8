"""Tables, plot and verdicts of the IQLearn lam sweep (`imitation.LAMBDA`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from experiments import protocol
from experiments.report import health, pyplot, save, table, write_markdown

# Verdict rule, fixed before the runs: at one decoding, A beats B when the median of the
# per-seed test differences is > 0 and A wins on at least 4 of 5 seeds; IQLearn beats MLE
# ("holds") when it does so at two thirds of the decodings or more ("in part": at fewer).
MIN_WINS = 4


def settings_of(result: dict[str, Any]) -> dict[str, dict[str, dict[str, dict[int, float]]]]:
  """{setting label: {split: {decoding: {seed: quality}}}} over every trained student."""
  out: dict[str, Any] = {}
  for r in result["tuning"]:
    if not r["ok"]:
      continue
    label = f"MLE lr {r['lr']:g}" if r["method"] == "mle" else f"IQLearn lam {r['lam']:g}"
    for split, by_decoding in r["splits"].items():
      for d, v in by_decoding.items():
        out.setdefault(label, {}).setdefault(split, {}).setdefault(d, {})[r["seed"]] = v["quality"]
  return out


def _beats(a: dict[int, float], b: dict[int, float]) -> tuple[bool, dict[str, Any]]:
  p = protocol.paired(a, b)
  return p["n"] > 0 and p["median"] > 0 and p["wins"] >= MIN_WINS, p


def lambda_report(result: dict[str, Any], outdir: str) -> dict[str, str]:
  """Writes iqlearn_lambda.md and its plot; returns the verdicts."""
  s = result["settings"]
  decodings = ["greedy", "beam"] + [f"T{t:g}" for t in s["temperatures"]]
  table_of = settings_of(result)
  chosen = result["chosen"]
  mle = f"MLE lr {chosen['mle']['lr']:g}"
  iq = f"IQLearn lam {chosen['iqlearn']['lam']:g}"
  lines = ["# IQLearn's lam up to 2, against MLE, on few demonstrations", "",
           f"Students `{s['student']}` pretrained on the broad corpus ({s['pretrain_steps']} "
           f"steps), fine-tuned {s['finetune_steps']} steps on **{s['n_train']} "
           f"demonstrations** of {s['cont_len']} tokens (the imitation benchmark's teacher and "
           f"data otherwise). MLE's learning rate among {s['mle_lrs']}; IQLearn at lr "
           f"{s['iqlearn_lr']:g}, lam among {s['lams']}; every setting with {s['seeds']} seeds. "
           f"Quality: the teacher's mean log-likelihood per token of the student's own "
           f"continuations (higher is better); the expert's own scores "
           f"{result['data']['expert_quality']:.3f}. Cells: test median [IQR] (n).", "",
           f"Chosen on validation (mean quality over the decodings and seeds): {mle}, {iq}.", ""]
  body = [[k + (" (chosen)" if k in (mle, iq) else "")] +
          [protocol.fmt(list(v["test"][d].values()), 3) for d in decodings]
          for k, v in table_of.items()]
  lines += [table(["setting"] + decodings, body), ""]
  verdicts = {}
  rows = []
  for d in decodings:
    ok, p = _beats(table_of[iq]["test"][d], table_of[mle]["test"][d])
    rows.append((d, ok, p))
  won = [d for d, ok, _ in rows if ok]
  word = ("holds" if 3 * len(won) >= 2 * len(decodings) else "holds in part" if won
          else "does not hold")
  verdicts["beats_mle"] = (
      f"**{word}**: {iq} beats {mle} (median paired difference > 0 and >= {MIN_WINS} seeds) "
      f"at {len(won)} of {len(decodings)} decodings" + (f" ({', '.join(won)})" if won else "")
      + "; paired test differences: " + "; ".join(
          f"{d} {p['median']:+.4f} ({p['wins']}/{p['n']} seeds)" for d, _, p in rows))
  large = [k for k in table_of if k.startswith("IQLearn") and float(k.split()[-1]) >= 1]
  gains = [f"{k} at {d}" for k in large for d in decodings
           if _beats(table_of[k]["test"][d], table_of[mle]["test"][d])[0]]
  verdicts["large_lam"] = (
      f"**{'holds' if gains else 'does not hold'}**: lam >= 1 beats {mle} (same rule) at "
      + (", ".join(gains) if gains else "no decoding"))
  lines += ["- IQLearn (lam chosen on validation) beats MLE (lr chosen on validation): "
            + verdicts["beats_mle"],
            "- IQLearn at lam >= 1 beats MLE at some decoding: " + verdicts["large_lam"], ""]
  lines += [f"![{f}]({f})" for f in [_plot(table_of, decodings, mle, outdir)]]
  lines += ["", "## Every seed (test)", ""]
  lines += [table(["setting", "decoding", "every seed"],
                  [[k, d, ", ".join(f"{x:.3f}" for x in v["test"][d].values())]
                   for k, v in table_of.items() for d in decodings]), ""]
  lines += ["## Run health", "", health(result["tuning"], ("method", "lam", "lr"))]
  write_markdown(outdir, "iqlearn_lambda.md", "\n".join(lines))
  return verdicts


def _plot(table_of: dict[str, Any], decodings: list[str], mle: str, outdir: str) -> str:
  plt = pyplot()
  fig, axes = plt.subplots(1, len(decodings), figsize=(2.6 * len(decodings), 3.2), sharey=False)
  keys = sorted((k for k in table_of if k.startswith("IQLearn")), key=lambda k: float(k.split()[-1]))
  lams = [float(k.split()[-1]) for k in keys]
  for ax, d in zip(axes, decodings):
    for lam, k in zip(lams, keys):
      v = list(table_of[k]["test"][d].values())
      ax.scatter([lam] * len(v), v, s=8, color="C0", alpha=0.5)
    ax.plot(lams, [np.median(list(table_of[k]["test"][d].values())) for k in keys], "-o",
            color="C0", label="IQLearn (median)")
    m = list(table_of[mle]["test"][d].values())
    ax.axhline(np.median(m), color="C1", linestyle="--", label=f"{mle} (median)")
    ax.set_xscale("log")
    ax.set_xlabel("lam")
    ax.set_title(d)
  axes[0].set_ylabel("test quality (dots: seeds)")
  axes[0].legend(fontsize=6)
  return save(fig, outdir, "iqlearn_lambda.png")
