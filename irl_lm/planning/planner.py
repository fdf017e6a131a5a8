"""AOT-compile the real train step (and a decode step) for a mesh, without running it.

Reports per-device memory (parameters, optimizer state, activations and
temporaries from XLA's ``memory_analysis``), the share of device memory and
the model FLOPs per step, and says whether the plan fits.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from irl_lm import sharding as shd
from irl_lm.models import ModelConfig, build_model, param_logical_specs, preset
from irl_lm.models.hf_config import load_hf_config
from irl_lm.planning.devices import GIB
from irl_lm.training import flops
from irl_lm.training.optim import make_optimizer
from irl_lm.training.state import state_shardings
from irl_lm.training.step import make_train_step


@dataclasses.dataclass
class Plan:
  """Per-device bytes of one compiled step and whether it fits."""

  name: str
  device_memory: int
  params: int
  optimizer: int
  other_state: int
  arguments: int
  outputs: int
  temporaries: int
  aliased: int
  model_flops: float
  xla_flops: float

  @property
  def total(self) -> int:
    return self.arguments + self.outputs + self.temporaries - self.aliased

  @property
  def share(self) -> float:
    return self.total / self.device_memory

  def fits(self, headroom: float) -> bool:
    return self.total <= (1.0 - headroom) * self.device_memory

  def largest_term(self) -> tuple[str, int]:
    terms = {"parameters": self.params, "optimizer state": self.optimizer,
             "activations and temporaries": self.temporaries}
    return max(terms.items(), key=lambda kv: kv[1])

  def table(self) -> str:
    g = lambda b: f"{b / GIB:8.3f} GiB"
    rows = [(f"{self.name}: per device", ""),
            ("  parameters", g(self.params)), ("  optimizer state", g(self.optimizer)),
            ("  other state (target heads, rng, ...)", g(self.other_state)),
            ("  arguments (state + batch)", g(self.arguments)), ("  outputs", g(self.outputs)),
            ("  activations and temporaries", g(self.temporaries)),
            ("  aliased (donated)", g(self.aliased)),
            ("  total", f"{g(self.total)} = {100 * self.share:.1f}% of "
                        f"{self.device_memory / GIB:.1f} GiB"),
            ("  model FLOPs per step (all devices)", f"{self.model_flops:.3e}"),
            ("  XLA FLOPs per step (per device)", f"{self.xla_flops:.3e}")]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a.ljust(w)}  {b}" for a, b in rows)

  def as_dict(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "total": self.total, "share": self.share}


def planned_model_config(config: ml_collections.ConfigDict) -> ModelConfig:
  """The model a config trains, without reading any data (for planning)."""
  m = config.model
  kw = dict(value_heads=m.value_heads, dtype=m.dtype, remat=m.remat, scan_layers=m.scan_layers,
            dropout_rate=m.dropout_rate)
  if m.init_from:
    return load_hf_config(m.init_from, **kw)
  if m.vocab_size:
    kw["vocab_size"] = m.vocab_size
  return preset(m.size, **kw)


def _shard_bytes(tree: Any, shardings: Any) -> int:
  total = 0
  for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    total += int(np.prod(s.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize
  return total


def abstract_batch(cfg: ModelConfig, batch: int, inputs: int, targets: int
                   ) -> dict[str, jax.ShapeDtypeStruct]:
  """ShapeDtypeStructs of one global training batch."""
  i32 = lambda n: jax.ShapeDtypeStruct((batch, n), jnp.int32)
  if cfg.is_encoder_decoder:
    out = {"encoder_input_tokens": i32(inputs)}
    n = targets
  else:
    n = inputs + targets
    out = {"decoder_segment_ids": i32(n), "decoder_positions": i32(n)}
  out.update(decoder_input_tokens=i32(n), decoder_target_tokens=i32(n),
             decoder_loss_weights=i32(n),
             decoder_rewards=jax.ShapeDtypeStruct((batch, n), jnp.float32))
  return out


def _memory(compiled: Any) -> tuple[int, int, int, int]:
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes, m.output_size_in_bytes, m.temp_size_in_bytes,
          m.alias_size_in_bytes)


def _xla_flops(compiled: Any) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", 0.0))


def plan_train(config: ml_collections.ConfigDict, devices: list[jax.Device],
               device_memory: int) -> Plan:
  """Compiles the real train step of ``config`` for ``devices`` and measures it."""
  cfg = planned_model_config(config)
  mesh_shape = list(config.mesh.shape)
  mesh = shd.make_mesh(mesh_shape, devices=devices)
  rules = tuple(config.mesh.rules)
  tx, schedule = make_optimizer(config.optimizer, config.train.steps)
  with_tq = config.loss.name == "ilql"
  abstract, shardings = state_shardings(cfg, tx, mesh, rules, with_tq)
  d = config.data
  batch = abstract_batch(cfg, d.batch_size, d.inputs_length, d.targets_length)
  b_shard = shd.batch_sharding(mesh, rules)
  state_in = shd.with_shardings(abstract, shardings)
  batch_in = shd.with_shardings(batch, {k: b_shard for k in batch})
  with shd.activate(mesh, rules):
    step = jax.jit(make_train_step(build_model(cfg), config, tx, schedule),
                   in_shardings=(shardings, b_shard),
                   out_shardings=(shardings, shd.replicated(mesh)), donate_argnums=0)
    compiled = step.lower(state_in, batch_in).compile()
  args, outs, temp, alias = _memory(compiled)
  params = _shard_bytes(abstract.params, shardings.params)
  opt = _shard_bytes(abstract.opt_state, shardings.opt_state)
  everything = _shard_bytes(abstract, shardings)
  model_flops = flops.train_flops_per_step(cfg, d.batch_size, d.inputs_length, d.targets_length,
                                           with_tq)
  return Plan(f"train step ({dict(mesh.shape)})", device_memory, params, opt,
              everything - params - opt, args, outs, temp, alias, model_flops,
              _xla_flops(compiled))


def plan_decode(config: ml_collections.ConfigDict, devices: list[jax.Device],
                device_memory: int) -> Plan:
  """Compiles one cached decode step at ``eval.batch_size`` with a full-length cache."""
  cfg = planned_model_config(config)
  mesh = shd.make_mesh(list(config.mesh.shape), devices=devices)
  rules = tuple(config.mesh.rules)
  model = build_model(cfg)
  specs, abstract_params = param_logical_specs(cfg)
  p_shard = shd.logical_shardings(specs, abstract_params, mesh, rules)
  b = config.eval.batch_size
  d = config.data
  max_len = d.targets_length if cfg.is_encoder_decoder else d.inputs_length + d.targets_length
  tok = lambda n: jnp.zeros((b, n), jnp.int32)
  if cfg.is_encoder_decoder:
    enc = jax.ShapeDtypeStruct((b, d.inputs_length, cfg.d_model), model_dtype(cfg))
    full = {"decoder_input_tokens": tok(max_len), "encoder_input_tokens": tok(d.inputs_length)}
    cache = jax.eval_shape(lambda p, e: model.init(jax.random.PRNGKey(0), full, e, decode=True,
                                                   method="decode")["cache"], abstract_params, enc)
    apply = lambda p, c, t: model.apply({"params": p, "cache": c}, {"decoder_input_tokens": t},
                                        None, decode=True, method="decode", mutable=["cache"])
  else:
    full = {"decoder_input_tokens": tok(max_len), "decoder_positions": tok(max_len)}
    cache = jax.eval_shape(lambda p: model.init(jax.random.PRNGKey(0), full, decode=True)["cache"],
                           abstract_params)
    apply = lambda p, c, t: model.apply({"params": p, "cache": c},
                                        {"decoder_input_tokens": t, "decoder_positions": t},
                                        decode=True, mutable=["cache"])
  c_shard = jax.tree_util.tree_map_with_path(lambda path, x: _cache_sharding(path, x, mesh, rules),
                                             cache)
  b_shard = shd.batch_sharding(mesh, rules)
  with shd.activate(mesh, rules):
    step = jax.jit(lambda p, c, t: apply(p, c, t)[1]["cache"], donate_argnums=1,
                   out_shardings=c_shard)
    compiled = step.lower(shd.with_shardings(abstract_params, p_shard),
                          shd.with_shardings(cache, c_shard),
                          jax.ShapeDtypeStruct((b, 1), jnp.int32, sharding=b_shard)).compile()
  args, outs, temp, alias = _memory(compiled)
  params = _shard_bytes(abstract_params, p_shard)
  fwd = flops.forward_flops_per_example(cfg, 0, 1)  # one new token, attention over the cache omitted
  return Plan(f"decode step (batch {b}, cache length {max_len})", device_memory, params, 0,
              _shard_bytes(cache, c_shard), args, outs, temp, alias, b * fwd, _xla_flops(compiled))


def _cache_sharding(path: Any, x: Any, mesh: Mesh, rules: shd.Rules) -> Any:
  """Cache arrays split over the batch axes (after the layer axis of scanned stacks)."""
  if x.ndim < 2:
    return shd.replicated(mesh)
  stacked = any(getattr(k, "key", None) == "layers" for k in path)
  names = ((None,) if stacked else ()) + ("batch",)
  names += (None,) * (x.ndim - len(names))
  return jax.sharding.NamedSharding(mesh, shd.logical_to_spec(names, rules, mesh, x.shape))


def model_dtype(cfg: ModelConfig) -> Any:
  return jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32
