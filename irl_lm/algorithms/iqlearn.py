"""IQLearn for language: MLE plus a temporal-difference regulariser on the LM's own logits.

Offline, the regulariser reads the demonstrations only. Online
(``loss.iqlearn.online.enable``), the step also samples continuations from the
policy into a replay buffer (``policy_samples``) and the value term mixes in a
batch drawn from it.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections
from jax.sharding import Mesh

from irl_lm import losses
from irl_lm import sharding as shd
from irl_lm.algorithms import policy_samples
from irl_lm.algorithms.base import (Algorithm, Batch, BatchShapes, Extra, LossFn, Metrics,
                                    PrepareFn)

POLICY = "policy"  # the key of the policy batch in the batch the loss sees
REPLAY = "replay"  # the extra state's key (and the checkpoint's) of the replay buffer


class IQLearn(Algorithm):
  """Offline or online IQLearn (``loss.iqlearn``)."""

  name = "iqlearn"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    iq = config.loss.iqlearn
    self.lam, self.lam_warmup_steps = iq.lam, iq.lam_warmup_steps
    self.gamma, self.stop_grad_next = iq.gamma, iq.stop_grad_next
    self.online = iq.online.enable
    self.mix, self.temperature = iq.online.mix, iq.online.temperature
    self.every, self.buffer_size = iq.online.every, iq.online.buffer_size

  @classmethod
  def check_config(cls, flat: dict[str, Any]) -> None:
    if flat["loss.iqlearn.online.enable"]:
      policy_samples.check_sampling_config(flat, "config.loss.iqlearn.online.enable",
                                           "loss.iqlearn.online.buffer_size", "online IQLearn")

  def extra_state(self, batch_shapes: BatchShapes, abstract_params: Any, param_shardings: Any,
                  mesh: Mesh, rules: shd.Rules) -> tuple[Extra, Extra]:
    if not self.online:
      return {}, {}
    replay = policy_samples.replay_abstract(batch_shapes, self.buffer_size)
    return {REPLAY: replay}, {REPLAY: policy_samples.replay_shardings(replay, mesh, rules)}

  def init_extra(self, params: Any, abstract: Extra, **startup: Any) -> Extra:
    return {k: policy_samples.empty_replay(v) for k, v in abstract.items()}

  def make_loss(self, model: nn.Module, train: bool = True) -> LossFn:
    deterministic = self.deterministic(train)

    def loss_fn(params: Any, extra: Extra, batch: Batch, rng: jax.Array, updates: jax.Array):
      del extra
      apply = lambda b, r: model.apply({"params": params}, b, deterministic=deterministic,
                                       rngs={"dropout": r})
      out = apply(batch, rng)
      targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
      seg, trunc = batch.get("decoder_segment_ids"), batch.get("decoder_truncated")
      lam = losses.lam_schedule(updates, lam=self.lam, warmup_steps=self.lam_warmup_steps)
      if POLICY in batch:  # online: ``prepare`` added the policy batch
        policy = batch[POLICY]
        p_out = apply(policy, jax.random.fold_in(rng, 2))
        loss, metrics = losses.iqlearn_online_loss(
            out.logits, targets, weights, p_out.logits, policy["decoder_target_tokens"],
            policy["decoder_loss_weights"], lam=lam, gamma=self.gamma, mix=self.mix,
            stop_grad_next=self.stop_grad_next, expert_segment_ids=seg,
            policy_segment_ids=policy.get("decoder_segment_ids"), expert_truncated=trunc,
            policy_truncated=policy.get("decoder_truncated"))
      else:
        loss, metrics = losses.iqlearn_loss(out.logits, targets, weights, lam=lam,
                                            gamma=self.gamma, stop_grad_next=self.stop_grad_next,
                                            segment_ids=seg, truncated=trunc)
      return loss, {**metrics, "lam": lam}

    return loss_fn

  def make_prepare(self, model: nn.Module) -> PrepareFn:
    if not self.online:
      return super().make_prepare(model)
    draw = policy_samples.make_policy_batch(model, self.targets_length, self.temperature,
                                            self.every)

    def prepare(extra: Extra, params: Any, batch: Batch, step: jax.Array, rng: jax.Array
                ) -> tuple[Extra, Batch, Metrics]:
      replay, policy = draw(extra[REPLAY], params, batch, step, rng)
      return {**extra, REPLAY: replay}, {**batch, POLICY: policy}, {}

    return prepare
