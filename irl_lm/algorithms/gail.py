"""GAIL, the IQLearn paper's adversarial baseline: a discriminator head on the trunk tells
demonstrated actions from the policy's own samples, and the policy follows its reward by
policy gradient with a learned baseline.

Each step samples one continuation per prompt of the batch (``policy_samples``, on
policy), scores the demonstrations' and the samples' actions with the discriminator
``d(s, a)`` (a vocabulary-sized head indexed by the action, like ILQL's Q heads),
and trains three things at once: the discriminator (logistic loss), the baseline
``V(s)`` (squared error to the returns) and the policy (REINFORCE on the reward
``d``, minus ``kl_weight`` times the log-ratio to the starting policy when set).
The heads read the trunk's hidden states through a stop-gradient, so only the
policy gradient moves the LM.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from irl_lm import losses
from irl_lm import sharding as shd
from irl_lm.algorithms import policy_samples
from irl_lm.algorithms.base import (Algorithm, Batch, BatchShapes, Extra, LossFn, Metrics,
                                    PrepareFn)
from irl_lm.losses.softmax import gather_target, target_logit_and_lse
from irl_lm.models import AUX_HEADS, AuxHeads, ModelConfig, ScalarHead, TokenHead, trunk_params

POLICY = "policy"  # the key of the policy batch in the batch the loss sees
REFERENCE = "reference"  # the extra state's key of the starting policy (kl_weight > 0)
DISC, BASELINE = "discriminator", "baseline"  # the heads under params['aux_heads']


class GAIL(Algorithm):
  """Generative adversarial imitation learning (``loss.gail``)."""

  name = "gail"

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    g = config.loss.gail
    self.gamma, self.temperature = g.gamma, g.temperature
    self.weights = dict(value_weight=g.value_weight, disc_weight=g.disc_weight)
    self.kl_weight = g.kl_weight

  @classmethod
  def check_config(cls, flat: dict[str, Any]) -> None:
    policy_samples.check_sampling_config(flat, "config.loss.name", None, "GAIL")

  def aux_heads(self, cfg: ModelConfig) -> AuxHeads:
    return ((DISC, TokenHead(cfg)), (BASELINE, ScalarHead(cfg)))

  def extra_state(self, batch_shapes: BatchShapes, abstract_params: Any, param_shardings: Any,
                  mesh: Mesh, rules: shd.Rules) -> tuple[Extra, Extra]:
    if not self.kl_weight:
      return {}, {}
    return ({REFERENCE: trunk_params(abstract_params)},
            {REFERENCE: trunk_params(param_shardings)})

  def init_extra(self, params: Any, abstract: Extra, **startup: Any) -> Extra:
    if REFERENCE not in abstract:
      return {}
    return {REFERENCE: jax.tree.map(jnp.copy, trunk_params(params))}

  def make_loss(self, model: nn.Module, train: bool = True) -> LossFn:
    deterministic = self.deterministic(train)
    disc, baseline = self.aux_heads(model.cfg)

    def heads(params: Any, out: Any, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
      """(d(s_t, a_t), V(s_t)) from the trunk's hidden states, which they do not train."""
      h = jax.lax.stop_gradient(out.hidden)
      aux = params[AUX_HEADS]
      d = gather_target(disc[1].apply({"params": aux[DISC]}, h), targets)
      return d, baseline[1].apply({"params": aux[BASELINE]}, h)

    def loss_fn(params: Any, extra: Extra, batch: Batch, rng: jax.Array, updates: jax.Array):
      del updates
      lm = trunk_params(params)
      apply = lambda p, b, r: model.apply({"params": p}, b, deterministic=deterministic,
                                          rngs={"dropout": r})
      expert = apply(lm, batch, rng)
      expert_d, _ = heads(params, expert, batch["decoder_target_tokens"])
      if POLICY not in batch:  # evaluation: the discriminator on the demonstrations alone
        weights = batch["decoder_loss_weights"]
        d_loss = losses.masked_mean(jax.nn.softplus(-expert_d), weights)
        return d_loss, {"disc_loss": d_loss,
                        "reward_expert": losses.masked_mean(expert_d, weights)}
      policy = batch[POLICY]
      targets = policy["decoder_target_tokens"]
      out = apply(lm, policy, jax.random.fold_in(rng, 2))
      policy_d, values = heads(params, out, targets)
      picked, lse = target_logit_and_lse(out.logits, targets)
      logp = picked - lse
      kl = None
      if REFERENCE in extra:
        ref = model.apply({"params": extra[REFERENCE]}, policy, deterministic=True).logits
        ref_picked, ref_lse = target_logit_and_lse(jax.lax.stop_gradient(ref), targets)
        kl = logp - (ref_picked - ref_lse)
      return losses.gail_loss(expert_d, batch["decoder_loss_weights"], policy_d, logp, values,
                              policy["decoder_loss_weights"], gamma=self.gamma, kl=kl,
                              kl_weight=self.kl_weight, **self.weights)

    return loss_fn

  def make_prepare(self, model: nn.Module) -> PrepareFn:
    sample = policy_samples.make_sampler(model, self.targets_length, self.temperature)

    def prepare(extra: Extra, params: Any, batch: Batch, step: jax.Array, rng: jax.Array
                ) -> tuple[Extra, Batch, Metrics]:
      key, _ = policy_samples.online_keys(rng)
      policy = sample(trunk_params(params), batch, key)
      tokens = jnp.sum(policy["decoder_loss_weights"]).astype(jnp.float32)
      return extra, {**batch, POLICY: policy}, {"policy_tokens": tokens}

    return prepare
