"""Polyak (exponential moving average) update of target parameters."""
from typing import Union

import jax

Scalar = Union[float, jax.Array]


def polyak_update(target: object, online: object, rate: Scalar) -> object:
  """Return rate * online + (1 - rate) * target, leaf-wise over matching pytrees.

  Each new leaf keeps the dtype of its target leaf.
  """
  return jax.tree.map(lambda t, o: (rate * o + (1 - rate) * t).astype(t.dtype), target, online)
