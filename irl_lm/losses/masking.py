"""Masked reductions over the action positions of a [batch, length] array."""
import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, weights: jax.Array) -> jax.Array:
  """float32 sum(x * weights) / max(1, sum(weights)); weight-0 entries never reach the sum.

  Weight-0 entries are selected away (not multiplied by 0), so non-finite values at
  prompt/pad positions cannot leak into the result.
  """
  w = weights.astype(jnp.float32)
  total = jnp.sum(jnp.where(w > 0, x.astype(jnp.float32) * w, 0.0))
  return total / jnp.maximum(1.0, jnp.sum(w))
