"""MLE: token-level cross-entropy on the demonstrations (behaviour cloning)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from irl_lm import losses
from irl_lm.algorithms.base import Algorithm, Batch, Extra, LossFn


class MLE(Algorithm):
  """Maximum likelihood: no state beyond parameters and optimizer."""

  name = "mle"

  def make_loss(self, model: nn.Module, train: bool = True) -> LossFn:
    deterministic = self.deterministic(train)

    def loss_fn(params: Any, extra: Extra, batch: Batch, rng: jax.Array, updates: jax.Array):
      del extra, updates
      out = model.apply({"params": params}, batch, deterministic=deterministic,
                        rngs={"dropout": rng})
      return losses.mle_loss(out.logits, batch["decoder_target_tokens"],
                             batch["decoder_loss_weights"],
                             segment_ids=batch.get("decoder_segment_ids"))

    return loss_fn
