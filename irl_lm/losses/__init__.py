"""Pure loss functions over [batch, length] arrays aligned with the targets (no irl_lm imports)."""
from irl_lm.losses.gail import gail_loss, returns_to_go
from irl_lm.losses.ilql import ilql_loss
from irl_lm.losses.iqlearn import implied_rewards, iqlearn_loss, iqlearn_online_loss
from irl_lm.losses.masking import masked_mean
from irl_lm.losses.mle import mle_loss
from irl_lm.losses.next_state import next_state, next_value
from irl_lm.losses.polyak import polyak_update
from irl_lm.losses.reward_norm import (ReturnStats, batch_return_stats, empty_return_stats,
                                      merge_return_stats, normalize_rewards, return_stats,
                                      return_std)
from irl_lm.losses.schedule import lam_schedule

__all__ = [
  "ReturnStats",
  "batch_return_stats",
  "empty_return_stats",
  "gail_loss",
  "ilql_loss",
  "implied_rewards",
  "iqlearn_loss",
  "iqlearn_online_loss",
  "lam_schedule",
  "masked_mean",
  "merge_return_stats",
  "mle_loss",
  "next_state",
  "next_value",
  "normalize_rewards",
  "polyak_update",
  "return_stats",
  "return_std",
  "returns_to_go",
]
