"""Training algorithms behind one protocol (``Algorithm``), chosen by ``config.loss.name``.

The registry below is the one place that maps names to algorithms.
"""
from __future__ import annotations

import ml_collections

from irl_lm.algorithms.base import Algorithm
from irl_lm.algorithms.gail import GAIL
from irl_lm.algorithms.ilql import ILQL
from irl_lm.algorithms.iqlearn import IQLearn
from irl_lm.algorithms.mle import MLE

ALGORITHMS: dict[str, type[Algorithm]] = {a.name: a for a in (MLE, IQLearn, ILQL, GAIL)}


def algorithm_class(name: str) -> type[Algorithm]:
  """The algorithm registered as ``name`` (``KeyError`` if none)."""
  return ALGORITHMS[name]


def make_algorithm(config: ml_collections.ConfigDict) -> Algorithm:
  """The algorithm ``config.loss.name`` selects, configured from ``config``."""
  return ALGORITHMS[config.loss.name](config)


__all__ = ["ALGORITHMS", "Algorithm", "GAIL", "ILQL", "IQLearn", "MLE", "algorithm_class",
           "make_algorithm"]
