"""Maximum-likelihood (token cross-entropy) loss."""
from typing import Optional

import jax
import jax.numpy as jnp

from irl_lm.losses.masking import masked_mean
from irl_lm.losses.softmax import token_nll


def mle_loss(
  logits: jax.Array,
  targets: jax.Array,
  weights: jax.Array,
  *,
  segment_ids: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean token cross-entropy over weight-1 positions.

  segment_ids is accepted for a uniform loss signature; MLE has no next-state term.
  Metrics: nll, accuracy (argmax == target), num_tokens (sum of weights).
  """
  del segment_ids
  nll = masked_mean(token_nll(logits, targets), weights)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  metrics = {
    "nll": nll,
    "accuracy": masked_mean(correct, weights),
    "num_tokens": jnp.sum(weights.astype(jnp.float32)),
  }
  return nll, metrics
