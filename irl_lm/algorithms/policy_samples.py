"""Policy samples decoded inside the train step into a FIFO replay buffer (online
IQLearn's value term, GAIL's discriminator and policy gradient).

Every ``every`` steps (step 0 included) the step samples one
continuation per prompt of its expert batch with the KV-cache decoder, lays the
samples out as training rows and writes them into the buffer; every step then
draws a policy batch from the buffer's filled part. The buffer is part of the
train state: ``{'rows': {feature: [slots, batch, ...]}, 'count': refreshes so
far}``, one slot per refresh, sharded along the batch axes like a batch, so it is
checkpointed and restored with the rest of the state.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from irl_lm import sharding as shd
from irl_lm.data.features import POLICY_FEATURES
from irl_lm.decoding.sampling import Settings
from irl_lm.decoding.search import sample_or_greedy
from irl_lm.decoding.session import session_for
from irl_lm.errors import ConfigError

Array = jax.Array
Batch = Mapping[str, Array]
Replay = dict[str, Any]

POLICY = "policy"  # the key of the policy batch in the batch the loss sees


def replay_abstract(batch_shapes: Mapping[str, tuple[tuple[int, ...], Any]],
                    buffer_size: int) -> Replay:
  """The buffer as ``ShapeDtypeStruct``s, from one batch's ``{feature: (shape, dtype)}``."""
  rows = {}
  for k, (shape, dtype) in batch_shapes.items():
    if k in POLICY_FEATURES:
      rows[k] = jax.ShapeDtypeStruct((buffer_size // shape[0],) + shape, dtype)
  return {"rows": rows, "count": jax.ShapeDtypeStruct((), jnp.int32)}


def replay_shardings(abstract: Replay, mesh: Mesh, rules: shd.Rules) -> Replay:
  """Rows split over the batch axes (their second axis), the counter replicated."""
  def rows(x: jax.ShapeDtypeStruct) -> NamedSharding:
    names = (None, "batch") + (None,) * (x.ndim - 2)
    return NamedSharding(mesh, shd.logical_to_spec(names, rules, mesh, x.shape))
  return {"rows": jax.tree.map(rows, abstract["rows"]), "count": shd.replicated(mesh)}


def empty_replay(abstract: Replay) -> Replay:
  """An empty buffer of ``abstract``'s shapes (None, the offline state's, stays None)."""
  return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)


def online_keys(rng: Array) -> tuple[Array, Array]:
  """(sampling key, draw key) of a step from its rng (``fold_in(state.rng, step)``)."""
  gen, draw = jax.random.split(jax.random.fold_in(rng, 1))
  return gen, draw


def first_action(weights: Array) -> Array:
  """Per row, the position of the first weight-1 target (0 if none): where a prompt ends."""
  return jnp.argmax(weights > 0, axis=1).astype(jnp.int32)


def cut_samples(tokens: Array, lengths: Array, room: Array, eos_id: int
                ) -> tuple[Array, Array]:
  """(kept, cut) per sample: the tokens a row keeps, and whether the sample is an episode
  cut short (no EOS within ``room``): then its last kept token is a weight-0 slot, the
  state after its last action, which the loss bootstraps from (as the input pipeline
  treats a cut row)."""
  last = jnp.take_along_axis(tokens, jnp.clip(lengths - 1, 0, tokens.shape[1] - 1)[:, None],
                             axis=1)[:, 0]
  kept = jnp.minimum(lengths, room)
  cut = (kept > 0) & ~((lengths <= room) & (last == eos_id))
  return kept, cut


def decoder_rows(batch: Batch, tokens: Array, lengths: Array, eos_id: int) -> dict[str, Array]:
  """Decoder-only rows: the expert row up to its first action, then the samples.

  ``tokens`` [b, n] and ``lengths`` [b] are the decoder's output; samples past the
  row's end are cut (`cut_samples`). A row without actions stays empty (all padding).
  """
  weights = batch["decoder_loss_weights"]
  width = weights.shape[1]
  start = first_action(weights)
  lengths = jnp.where(jnp.any(weights > 0, axis=1), lengths, 0)
  kept, cut = cut_samples(tokens, lengths, width - start, eos_id)
  start, kept, cut = start[:, None], kept[:, None], cut[:, None]
  pos = jnp.arange(width, dtype=jnp.int32)[None]
  j = pos - start
  sampled = jnp.take_along_axis(tokens, jnp.clip(j, 0, tokens.shape[1] - 1), axis=1)
  inside = (j >= 0) & (j < kept)
  seg = (pos < start + kept).astype(jnp.int32)
  targets = jnp.where(j < 0, batch["decoder_target_tokens"], jnp.where(inside, sampled, 0)) * seg
  # The row's first input is its framing's start (BOS, or the first prompt token).
  shifted = jnp.concatenate([batch["decoder_input_tokens"][:, :1], targets[:, :-1]], axis=1)
  return {"decoder_input_tokens": shifted * seg, "decoder_target_tokens": targets,
          "decoder_loss_weights": (inside & (j < kept - cut)).astype(jnp.int32),
          "decoder_segment_ids": seg, "decoder_positions": pos * seg,
          "decoder_truncated": (inside & cut).astype(jnp.int32)}


def encdec_rows(batch: Batch, tokens: Array, lengths: Array, start_id: int, eos_id: int
                ) -> dict[str, Array]:
  """T5 rows: the expert's encoder inputs, the samples as decoder targets (`cut_samples`)."""
  kept, cut = cut_samples(tokens, lengths, jnp.full_like(lengths, tokens.shape[1]), eos_id)
  j = jnp.arange(tokens.shape[1], dtype=jnp.int32)[None]
  inside = j < kept[:, None]
  shifted = jnp.concatenate([jnp.full_like(tokens[:, :1], start_id), tokens[:, :-1]], axis=1)
  return {"encoder_input_tokens": batch["encoder_input_tokens"],
          "decoder_input_tokens": jnp.where(inside, shifted, 0), "decoder_target_tokens": tokens,
          "decoder_loss_weights": (inside & (j < (kept - cut)[:, None])).astype(jnp.int32),
          "decoder_truncated": (inside & cut[:, None]).astype(jnp.int32)}


def write(replay: Replay, rows: Mapping[str, Array]) -> Replay:
  """The buffer with ``rows`` in the next slot (FIFO: the oldest slot once full)."""
  slots = next(iter(replay["rows"].values())).shape[0]
  slot = replay["count"] % slots
  new = {k: jax.lax.dynamic_update_index_in_dim(v, rows[k].astype(v.dtype), slot, 0)
         for k, v in replay["rows"].items()}
  return {"rows": new, "count": replay["count"] + 1}


def draw(replay: Replay, key: Array) -> dict[str, Array]:
  """A policy batch: row ``i`` is row ``i`` of a filled slot drawn uniformly.

  Each row only moves along the slot axis, so the draw stays on its device.
  """
  some = next(iter(replay["rows"].values()))
  slots, rows = some.shape[:2]
  pick = jax.random.randint(key, (rows,), 0, jnp.minimum(replay["count"], slots))
  chosen = jnp.arange(slots)[:, None] == pick[None]  # [slots, rows]

  def take(x: Array) -> Array:
    mask = chosen.reshape(chosen.shape + (1,) * (x.ndim - 2))
    return jnp.sum(jnp.where(mask, x, 0), axis=0).astype(x.dtype)
  return {k: take(v) for k, v in replay["rows"].items()}


def make_sampler(model: nn.Module, length: int, temperature: float
                 ) -> Callable[[Any, Batch, Array], dict[str, Array]]:
  """``(params, expert batch, key) -> policy rows``: one sample per prompt, laid out as rows.

  Prompts: T5's encoder inputs; decoder-only, each row's decoder inputs up to and
  including its first action's position. Decodes ``length`` tokens at
  ``temperature`` with ``params``, the network's own parameters.
  """
  cfg, n = model.cfg, length
  settings = Settings(method="sample", max_new_tokens=n, eos_id=cfg.eos_id,
                      temperature=temperature, scores=False)
  session = session_for(model, n, 1)

  def sample(params: Any, batch: Batch, key: Array) -> dict[str, Array]:
    if cfg.kind == "encdec":
      prompts = {"encoder_input_tokens": batch["encoder_input_tokens"]}
    else:
      prompts = {"decoder_input_tokens": batch["decoder_input_tokens"],
                 "prompt_lengths": first_action(batch["decoder_loss_weights"]) + 1}
    tokens, _, lengths = sample_or_greedy(session, settings, params, prompts,
                                          None, jnp.float32(0.0), key)
    if cfg.kind == "encdec":
      return encdec_rows(batch, tokens, lengths, cfg.decoder_start_id, cfg.eos_id)
    return decoder_rows(batch, tokens, lengths, cfg.eos_id)

  return sample


def make_policy_batch(model: nn.Module, length: int, temperature: float, every: int
                      ) -> Callable[[Replay, Any, Batch, Array, Array], tuple[Replay, dict]]:
  """``(replay, params, batch, step, rng) -> (replay, policy batch)`` for the train step.

  Refreshes the buffer under ``lax.cond`` when ``step % every == 0``, then draws
  (``make_sampler`` decodes). ``rng`` is the step's rng; the keys come from
  ``online_keys``.
  """
  sample = make_sampler(model, length, temperature)

  def policy_batch(replay: Replay, params: Any, batch: Batch, step: Array, rng: Array
                   ) -> tuple[Replay, dict[str, Array]]:
    gen, pick = online_keys(rng)
    replay = jax.lax.cond(step % every == 0, lambda r: write(r, sample(params, batch, gen)),
                          lambda r: r, replay)
    return replay, draw(replay, pick)

  return policy_batch


def check_sampling_config(flat: dict[str, Any], key: str, buffer_key: str | None,
                          what: str) -> None:
  """What drawing policy samples in the step needs of the config (``flat``: dotted keys).

  The buffer over the mesh follows from ``data.batch_size``, which the run builder
  checks against the batch shards.
  """
  if flat["data.pack"]:
    raise ConfigError(f"{what} lays out one example per row", key,
                      expected="config.data.pack=False", found="True")
  if flat["optimizer.grad_accum_mode"] == "microbatch" and flat["optimizer.grad_accum_steps"] > 1:
    raise ConfigError(f"{what} does not split its policy batch into micro-batches", key,
                      expected="config.optimizer.grad_accum_steps=1 or grad_accum_mode="
                      "'multisteps'", found=f"grad_accum_steps={flat['optimizer.grad_accum_steps']}"
                      " with grad_accum_mode='microbatch'")
  if buffer_key is None:  # samples used as drawn, no buffer
    return
  size, batch = flat[buffer_key], flat["data.batch_size"]
  if size % batch:
    raise ConfigError("replay buffer not a whole number of batches", f"config.{buffer_key}",
                      expected=f"a multiple of config.data.batch_size={batch}", found=size)
