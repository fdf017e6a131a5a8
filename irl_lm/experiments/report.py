"""Result tables (markdown and JSON) and plots for the experiments."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np


def _fmt(values: list[float]) -> str:
  v = np.asarray(values, float)
  if len(v) == 1:
    return f"{v[0]:.2f}"
  return f"{v.mean():.2f} ± {v.std(ddof=1):.2f} [{v.min():.2f}, {v.max():.2f}]"


def group(rows: list[dict[str, Any]], keys: tuple[str, ...], value: str
          ) -> dict[tuple, list[float]]:
  out: dict[tuple, list[float]] = defaultdict(list)
  for r in rows:
    if value in r:
      out[tuple(r[k] for k in keys)].append(r[value])
  return dict(out)


def iqlearn_table(rows: list[dict[str, Any]]) -> str:
  lines = ["| task | method | metric (greedy) | Self-BLEU T=1.0 | Self-BLEU T=0.7 | "
           "metric of samples T=1.0 | seeds |", "|---|---|---|---|---|---|---|"]
  metric = group(rows, ("task", "method"), "greedy_metric")
  for (task, method), vals in metric.items():
    sel = [r for r in rows if r["task"] == task and r["method"] == method]
    name = sel[0]["metric_name"]
    lines.append(
        f"| {task} | {method} | {name} {_fmt(vals)} | "
        f"{_fmt([r['self_bleu_t1.0'] for r in sel])} | {_fmt([r['self_bleu_t0.7'] for r in sel])} | "
        f"{_fmt([r['sample_metric_t1.0'] for r in sel])} | {len(sel)} |")
  return "\n".join(lines)


def ilql_table(rows: list[dict[str, Any]], betas: tuple[float, ...]) -> str:
  head = " | ".join(f"beta={b:g}" for b in betas)
  lines = [f"| method | {head} | seeds |", "|---|" + "---|" * len(betas) + "---|"]
  for method in ("ILQL", "BC (MLE)"):
    sel = [r for r in rows if r["method"] == method]
    if not sel:
      continue
    cells = []
    for b in betas:
      key = f"reward_beta{b:g}"
      vals = [r[key] for r in sel if key in r]
      cells.append(_fmt(vals) if vals else "–")
    lines.append(f"| {method} | {' | '.join(cells)} | {len(sel)} |")
  return "\n".join(lines)


def reward_table(rows: list[dict[str, Any]]) -> str:
  lines = ["| task | method | Pearson | Spearman | Pearson within prompt | samples |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['task']} | {r['method']} seed {r['seed']} | {r['pearson']:.3f} | "
                 f"{r['spearman']:.3f} | {r['pearson_within_prompt']:.3f} | {r['n']} |")
  return "\n".join(lines)


def tradeoff_plot(rows: list[dict[str, Any]], path: str) -> None:
  """Task metric (greedy) against Self-BLEU at T=1.0, one point per seed: the paper's figure."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  tasks = sorted({r["task"] for r in rows})
  fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    for method in sorted({r["method"] for r in rows if r["task"] == task}):
      sel = [r for r in rows if r["task"] == task and r["method"] == method]
      for temp, marker in (("1.0", "o"), ("0.7", "^")):
        ax.scatter([r[f"self_bleu_t{temp}"] for r in sel], [r["greedy_metric"] for r in sel],
                   marker=marker, label=f"{method}, T={temp}")
    ax.set_xlabel("Self-BLEU of 5 samples (lower = more diverse)")
    ax.set_ylabel(f"{sel[0]['metric_name']} (greedy)")
    ax.set_title(task)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def ilql_plot(rows: list[dict[str, Any]], betas: tuple[float, ...], path: str) -> None:
  """Mean true reward against ilql_beta, one line per seed, BC as a band."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 4))
  for r in (r for r in rows if r["method"] == "ILQL"):
    ax.plot(betas, [r[f"reward_beta{b:g}"] for b in betas], marker="o",
            label=f"ILQL seed {r['seed']}")
  bc = [r["reward_beta0"] for r in rows if r["method"] == "BC (MLE)"]
  if bc:
    ax.axhspan(min(bc), max(bc), color="grey", alpha=0.3, label="BC (MLE), seed range")
  ax.set_xscale("symlog", linthresh=1)
  ax.set_xlabel("ilql_beta")
  ax.set_ylabel("mean true reward (greedy)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def reward_plot(points: dict[str, tuple[np.ndarray, np.ndarray]], path: str) -> None:
  """Per-sequence implied reward against the per-sample task metric."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 4), squeeze=False)
  for ax, (name, (x, y)) in zip(axes[0], points.items()):
    ax.scatter(x, y, s=6, alpha=0.5)
    ax.set_xlabel("sum of implied rewards")
    ax.set_ylabel("task metric of the sample")
    ax.set_title(name)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(outdir: str, name: str, markdown: str, payload: Any) -> None:
  with open(os.path.join(outdir, f"{name}.md"), "w") as f:
    f.write(markdown + "\n")
  with open(os.path.join(outdir, f"{name}.json"), "w") as f:
    json.dump(payload, f, indent=2)
