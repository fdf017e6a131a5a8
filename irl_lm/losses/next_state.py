"""Next state of each action: the next weight-1 position of the same row and segment."""
from typing import Optional

import jax
import jax.numpy as jnp


def next_state(
  weights: jax.Array,
  segment_ids: Optional[jax.Array] = None,
  truncated: Optional[jax.Array] = None,
) -> tuple[jax.Array, jax.Array]:
  """Return (next_index, done), both [batch, length].

  next_index[b, t] is the smallest t' > t with weights[b, t'] > 0 and the same segment id
  (positions with weight 0, e.g. environment tokens between turns, are skipped). Where no
  such t' exists, done[b, t] = 1.0 and next_index[b, t] = t (a valid, unused index);
  otherwise done is 0.0. The end of the array is never an episode end by itself: an action
  is terminal only when no later action of its segment exists. Segments are assumed to be
  contiguous runs of equal ids (the usual packing layout); None means one segment per row.

  ``truncated`` ([batch, length], non-zero on the positions of an episode that did not end)
  makes the last action t of such a segment bootstrap: next_index = t + 1 (the state right
  after it) and done = 0, provided t + 1 is inside the array and the segment; otherwise it
  stays terminal. None (or all zeros) gives exactly the result without it.
  """
  length = weights.shape[1]
  pos = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), weights.shape)
  action_pos = jnp.where(weights > 0, pos, length)
  # First action at or after each position, then shifted by one to get "strictly after".
  first_from = jax.lax.cummin(action_pos, axis=1, reverse=True)
  after = jnp.concatenate([first_from[:, 1:], jnp.full_like(first_from[:, :1], length)], axis=1)
  done = after >= length
  safe = jnp.where(done, pos, after)
  if segment_ids is not None:
    same_segment = jnp.take_along_axis(segment_ids, safe, axis=1) == segment_ids
    done = done | ~same_segment
    safe = jnp.where(done, pos, safe)
  if truncated is not None:
    boot = done & (weights > 0) & (truncated > 0) & _continues(pos + 1, segment_ids)
    safe = jnp.where(boot, pos + 1, safe)
    done = done & ~boot
  return safe, done.astype(jnp.float32)


def _continues(index: jax.Array, segment_ids: Optional[jax.Array]) -> jax.Array:
  """Whether ``index`` (one per position) is inside the array and its position's segment."""
  length = index.shape[1]
  inside = index < length
  if segment_ids is None:
    return inside
  clipped = jnp.minimum(index, length - 1)
  return inside & (jnp.take_along_axis(segment_ids, clipped, axis=1) == segment_ids)


def next_value(values: jax.Array, next_index: jax.Array, done: jax.Array) -> jax.Array:
  """values[next_index] * (1 - done) in float32; exactly 0 where done, even if not finite."""
  gathered = jnp.take_along_axis(values.astype(jnp.float32), next_index, axis=1)
  return jnp.where(done > 0, 0.0, gathered)
