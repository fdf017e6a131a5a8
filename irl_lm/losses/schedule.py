"""Schedule of the IQLearn regulariser weight lam."""
from typing import Union

import jax
import jax.numpy as jnp


def lam_schedule(step: Union[int, jax.Array], *, lam: float, warmup_steps: int) -> jax.Array:
  """float32 lam at `step`: lam if warmup_steps == 0, else linear 0 -> lam over warmup_steps.

  `step` may be traced; lam and warmup_steps are static config values.
  """
  if warmup_steps == 0:
    return jnp.asarray(lam, jnp.float32)
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
  return jnp.float32(lam) * frac
