"""Shared pieces of the experiment reports: markdown tables, run health and plot setup."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from experiments import protocol


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A markdown table."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def health(rows: Sequence[dict[str, Any]], group: Sequence[str]) -> str:
  """Failed or diverged runs, and runs whose final training loss is an outlier (> 3 MADs
  and > 2% from the median of their group), as markdown lines; "none" when all are healthy."""
  lines = []
  for r in rows:
    if not r["ok"]:
      kind = "diverged" if r.get("diverged") else "failed"
      lines.append(f"- `{r['name']}` {kind}: {r['error'][:300]}")
  groups: dict[tuple, dict[str, float]] = {}
  for r in rows:
    if r["ok"]:
      key = tuple(str(r.get(g)) for g in group)  # variants are dicts
      groups.setdefault(key, {})[r["name"]] = r.get("final_train_loss", float("nan"))
  for key, losses in groups.items():
    for name in protocol.outliers(losses):
      lines.append(f"- `{name}`: final training loss {losses[name]:.4g} is an outlier among "
                   f"its {len(losses)} seeds (median "
                   f"{protocol.summary(list(losses.values()))['median']:.4g})")
  return "\n".join(lines) if lines else "none: every run finished, no outlier final loss"


def pyplot():
  """matplotlib.pyplot with the file-only backend."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save(fig: Any, outdir: str, name: str) -> str:
  path = os.path.join(outdir, name)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  pyplot().close(fig)
  return name


def write_markdown(outdir: str, name: str, text: str) -> None:
  with open(os.path.join(outdir, name), "w") as f:
    f.write(text.rstrip() + "\n")
