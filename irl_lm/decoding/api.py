"""``generate``: jitted, sharded decoding for T5 and decoder-only models."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from irl_lm import sharding as shd
from irl_lm.decoding.beam import beam_search
from irl_lm.decoding.sampling import METHODS, Settings, ilql_values
from irl_lm.decoding.search import sample_or_greedy
from irl_lm.decoding.session import session_for
from irl_lm.errors import ConfigError, InputError
from irl_lm.models import (HEADS, VALUE_TRUNK, ModelConfig, build_model, param_shardings,
                           q_heads, trunk_params)


class GenerateOutput(NamedTuple):
  """Decoded continuations; ``n`` is ``num_beams`` for beam search, else ``num_samples``.

  Attributes:
    tokens: [batch, n, max_new_tokens] int32, 0 after each row's EOS.
    scores: [batch, n] summed log-probabilities of the chosen tokens under the
      decoding distribution (beam search: the beam score), EOS included; None
      when greedy or sampled with ``with_scores=False``.
    lengths: [batch, n] generated tokens up to and including EOS.
  """

  tokens: jax.Array
  scores: jax.Array | None
  lengths: jax.Array


def generate(model: nn.Module, params: Any, batch: Mapping[str, Any], *, max_new_tokens: int,
             method: str = "greedy", temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, num_beams: int = 1, num_samples: int = 1,
             eos_id: int | None = None, rng: jax.Array | None = None, ilql_beta: float = 0.0,
             behaviour_top_k: int = 0, behaviour_top_p: float = 1.0,
             target_heads: Any | None = None, use_target_heads: bool = True,
             with_scores: bool = True, mesh: Mesh | None = None,
             rules: shd.Rules = shd.DEFAULT_RULES) -> GenerateOutput:
  """Generates continuations with a key/value cache in one jitted loop.

  Args:
    model: a ``T5`` or ``Decoder`` from ``irl_lm.models``.
    params: its parameters (with the ILQL value heads under ``params['heads']``
      for ``ilql_beta``, and a separate value trunk under ``params['value_trunk']``
      when ILQL trained one: both trunks then decode in lockstep, a cache each).
    batch: T5: ``encoder_input_tokens`` [b, t] right-padded with 0. Decoder-only:
      ``decoder_input_tokens`` [b, p], prompts right-padded, and optionally
      ``prompt_lengths`` [b] (default: up to the last non-zero token); every
      prompt needs at least one token. Prompts of any lengths can share a batch.
    max_new_tokens: tokens to generate per row (fewer if every row hits EOS).
    method: ``greedy``, ``sample`` or ``beam``.
    temperature, top_k, top_p: applied in that order to the per-token scores;
      they define the distribution that ``sample`` draws from and whose
      log-probabilities ``scores`` and ``beam`` sum (``top_k=0``, ``top_p=1``: off).
    num_beams: beams for ``beam``; all are returned, best first.
    num_samples: samples per input for ``sample``.
    eos_id: stop token (default the model's); a negative id never stops.
    rng: sampling key (default ``jax.random.key(0)``).
    ilql_beta: ILQL guidance, trlx's rule: the scores are
      ``log_softmax(logits) + ilql_beta * (min(Q1, Q2) - V)``; 0 is the
      behaviour policy. Needs value heads in ``params``.
    behaviour_top_k, behaviour_top_p: Snell's rule: keep only the behaviour
      policy's top-k / top-p tokens (on its log-probabilities, before the
      ILQL perturbation; the others get -inf); 0 and 1 are off.
    target_heads: ILQL target Q heads ``{"q1", "q2"}`` (a train state's
      ``target_q``), used when ``use_target_heads`` (else the online heads are).
    with_scores: sum the chosen tokens' log-probabilities into ``scores`` (greedy and
      sample; off, the token choice skips the normaliser greedy decoding does not need).
    mesh: shard the batch over the mesh's batch axes (and the parameters by
      ``rules``); the batch is padded to a multiple of the batch shards.
    rules: logical axis rules used with ``mesh``.
  """
  cfg: ModelConfig = model.cfg
  s = _settings(cfg, method, max_new_tokens, temperature, top_k, top_p, num_beams, num_samples,
                eos_id, ilql_beta, HEADS in params, target_heads, use_target_heads,
                behaviour_top_k, behaviour_top_p, VALUE_TRUNK in params)
  s = dataclasses.replace(s, scores=with_scores or method == "beam")
  if not s.ilql:
    params = trunk_params(params)
  inputs = _inputs(cfg, batch, max_new_tokens)
  b = next(iter(inputs.values())).shape[0]
  shards = 1 if mesh is None else shd.batch_shards(mesh, rules)
  padded = -b % shards
  if padded:
    inputs = {k: np.concatenate([v, np.repeat(v[:1], padded, 0)]) for k, v in inputs.items()}
  target = target_heads if s.ilql and s.use_target_heads else None
  beta = jnp.float32(ilql_beta)
  rng = jax.random.key(0) if rng is None else rng
  rules = tuple((name, tuple(ax) if isinstance(ax, list) else ax) for name, ax in rules)
  fn = _compiled(cfg, s, mesh, rules, tuple(sorted(inputs)))
  tokens, scores, lengths = fn(params, inputs, target, beta, rng)
  per = s.rows_per_input
  return GenerateOutput(tokens.reshape(-1, per, max_new_tokens)[:b],
                        None if scores is None else scores.reshape(-1, per)[:b],
                        lengths.reshape(-1, per)[:b])


def _settings(cfg: ModelConfig, method: str, max_new_tokens: int, temperature: float,
              top_k: int, top_p: float, num_beams: int, num_samples: int, eos_id: int | None,
              ilql_beta: float, has_heads: bool, target_heads: Any, use_target_heads: bool,
              behaviour_top_k: int, behaviour_top_p: float, has_value_trunk: bool
              ) -> Settings:
  if method not in METHODS:
    raise ConfigError(f"decoding.method={method!r}: expected one of {METHODS}")
  checks = [(max_new_tokens >= 1, f"decoding.max_new_tokens={max_new_tokens}: must be >= 1"),
            (temperature > 0, f"decoding.temperature={temperature}: must be > 0"),
            (0 <= top_k <= cfg.vocab_size,
             f"decoding.top_k={top_k}: must be in [0, vocab_size={cfg.vocab_size}]"),
            (0 < top_p <= 1, f"decoding.top_p={top_p}: must be in (0, 1]"),
            (0 <= behaviour_top_k <= cfg.vocab_size, f"decoding.behaviour_top_k="
             f"{behaviour_top_k}: must be in [0, vocab_size={cfg.vocab_size}]"),
            (0 < behaviour_top_p <= 1,
             f"decoding.behaviour_top_p={behaviour_top_p}: must be in (0, 1]"),
            (num_beams >= 1, f"decoding.num_beams={num_beams}: must be >= 1"),
            (num_samples >= 1, f"decoding.num_samples={num_samples}: must be >= 1"),
            (method == "sample" or num_samples == 1,
             f"decoding.num_samples={num_samples}: only method='sample' draws several"),
            (method == "beam" or num_beams == 1,
             f"decoding.num_beams={num_beams}: only method='beam' uses beams"),
            (not ilql_beta or has_heads,
             f"decoding.ilql_beta={ilql_beta}: the model has no value heads"),
            (not ilql_beta or not use_target_heads or target_heads is not None,
             f"decoding.ilql_beta={ilql_beta} with use_target_heads=True needs "
             "target_heads (or set use_target_heads=False for the online heads)")]
  for ok, msg in checks:
    if not ok:
      raise ConfigError(msg)
  return Settings(method=method, max_new_tokens=max_new_tokens,
                  eos_id=cfg.eos_id if eos_id is None else eos_id, temperature=temperature,
                  top_k=top_k, top_p=top_p, num_beams=num_beams, num_samples=num_samples,
                  ilql=bool(ilql_beta), use_target_heads=use_target_heads,
                  behaviour_top_k=behaviour_top_k, behaviour_top_p=behaviour_top_p,
                  value_trunk=bool(ilql_beta) and has_value_trunk)


def _inputs(cfg: ModelConfig, batch: Mapping[str, Any], max_new_tokens: int
            ) -> dict[str, np.ndarray]:
  """Host-side input arrays: T5 encoder tokens, or decoder prompts and their lengths."""
  if cfg.kind == "encdec":
    return {"encoder_input_tokens": np.asarray(batch["encoder_input_tokens"], np.int32)}
  tokens = np.asarray(batch["decoder_input_tokens"], np.int32)
  if "prompt_lengths" in batch:
    lengths = np.asarray(batch["prompt_lengths"], np.int32)
  else:
    nonpad = tokens != cfg.pad_id
    lengths = np.where(nonpad.any(1), tokens.shape[1] - np.argmax(nonpad[:, ::-1], 1), 0)
  if lengths.min(initial=1) < 1:
    raise InputError("generate: every decoder-only prompt needs at least one token "
                     f"(prompt lengths {lengths.tolist()})")
  longest = int(lengths.max(initial=0)) + max_new_tokens - 1
  if cfg.position == "learned" and longest > cfg.max_position_embeddings:
    raise ConfigError(f"generate: prompt plus max_new_tokens needs {longest} positions; "
                      f"the model has {cfg.max_position_embeddings}")
  return {"decoder_input_tokens": tokens, "prompt_lengths": lengths.astype(np.int32)}


@functools.lru_cache(maxsize=64)
def _compiled(cfg: ModelConfig, s: Settings, mesh: Mesh | None, rules: tuple[Any, ...],
              input_names: tuple[str, ...]):
  """The jitted decoding function for one model config, settings and mesh."""
  model = build_model(cfg)
  session = session_for(model, s.max_new_tokens, s.rows_per_input, s.value_trunk)

  def run(params, inputs, target, beta, rng):
    guide = ilql_values(cfg, params, target, s) if s.ilql else None
    trunks = params if s.value_trunk else trunk_params(params)  # what the session runs
    if s.method == "beam":
      return beam_search(session, s, trunks, inputs, guide, beta)
    return sample_or_greedy(session, s, trunks, inputs, guide, beta, rng)

  if mesh is None:
    return jax.jit(run)
  _, _, p_sh = param_shardings(cfg, mesh, rules, heads=s.ilql, value_trunk=s.value_trunk)
  target_sh = q_heads(p_sh) if s.ilql and s.use_target_heads else None
  in_sh = {k: shd.batch_sharding(mesh, rules, 1 if k == "prompt_lengths" else 2)
           for k in input_names}
  rep = shd.replicated(mesh)
  out_sh = (shd.batch_sharding(mesh, rules, 2),
            shd.batch_sharding(mesh, rules, 1) if s.scores else None,
            shd.batch_sharding(mesh, rules, 1))
  jitted = shd.jit(run, mesh, rules, in_shardings=(p_sh, in_sh, target_sh, rep, rep),
                   out_shardings=out_sh)

  def call(params, inputs, target, beta, rng):
    params = jax.device_put(params, p_sh)
    if target_sh is not None:
      target = jax.device_put(target, target_sh)
    return jitted(params, inputs, target, beta, rng)
  return call
