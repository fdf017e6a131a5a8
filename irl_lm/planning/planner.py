"""AOT-compile the real train step (and a decode step) for a mesh, without running it.

Reports per-device memory (parameters, optimizer state, activations and
temporaries from XLA's ``memory_analysis``), the share of device memory and
the model FLOPs per step, and says whether the plan fits.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from irl_lm import sharding as shd
from irl_lm.errors import ConfigError
from irl_lm.models import trunks
from irl_lm.planning.devices import GIB, Rates, parse_memory
from irl_lm.training import flops
from irl_lm.training.builders import Run, build_run


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
  note: str = ""  # e.g. the TPU compiler's refusal, when it would not compile the step
  bytes_accessed: float = float("nan")  # per device, XLA's cost analysis
  tokens: int = 0  # per step, all devices
  devices: int = 1
  hardware_flops: float = 0.0  # FLOPs the step runs (full remat: + a forward; LoRA: no
  # frozen-weight gradients; see _hardware_share); 0: the model FLOPs

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

  def roofline(self, rates: Rates) -> dict[str, Any]:
    """A lower bound on the step time from the compiled module's cost and the chip's peaks.

    Compute time: the per-device FLOPs over the peak FLOP/s. Memory time: the bytes moved
    over the memory bandwidth. The step takes at least the larger (an estimate: it assumes
    perfect overlap and no communication). XLA's cost analysis counts a loop's body once
    (a scanned layer stack: one layer), so each side takes the larger of XLA's count and a
    count that loops cannot hide: the hardware FLOPs (``_hardware_share`` of the model
    FLOPs) split evenly over the devices, and every argument read and every output written
    once. Also the tokens/s per chip and the MFU that bound implies.
    """
    flop = max(self.xla_flops, (self.hardware_flops or self.model_flops) / self.devices)
    moved = max(self.bytes_accessed, self.arguments + self.outputs)
    compute, memory = flop / rates.flops, moved / rates.bandwidth
    step = max(compute, memory)
    chips = self.devices / rates.devices_per_chip
    return {"chip": rates.chip, "compute_s": compute, "memory_s": memory, "step_s": step,
            "bound": "compute" if compute >= memory else "memory",
            "tokens_per_s_per_chip": self.tokens / step / chips,
            "mfu": self.model_flops / (self.devices * rates.flops * step)}

  def _roofline_or_none(self, rates: Rates | None) -> dict[str, Any] | None:
    """``roofline(rates)``, or None without a chip or a cost analysis (a refused compile)."""
    if rates is None or not (np.isfinite(self.xla_flops) and np.isfinite(self.bytes_accessed)):
      return None
    return self.roofline(rates)

  def table(self, rates: Rates | None = None) -> str:
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
    if self.note:
      rows.append(("  note", self.note))
    r = self._roofline_or_none(rates)
    if r is not None:
      rows += [(f"  roofline estimate on {rates.chip} (a lower bound, not a measurement)", ""),
               ("    compute time (hardware or XLA FLOPs / peak)",
                f"{1e3 * r['compute_s']:.2f} ms"),
               ("    memory time (bytes moved / bandwidth)", f"{1e3 * r['memory_s']:.2f} ms"),
               ("    step time at least", f"{1e3 * r['step_s']:.2f} ms ({r['bound']}-bound)"),
               ("    tokens/s per chip at most", f"{r['tokens_per_s_per_chip']:,.0f}"),
               ("    MFU at most", f"{100 * r['mfu']:.1f}%")]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a.ljust(w)}  {b}" for a, b in rows)

  def as_dict(self, rates: Rates | None = None) -> dict[str, Any]:
    out = {**dataclasses.asdict(self), "total": self.total, "share": self.share}
    r = self._roofline_or_none(rates)
    return {**out, "roofline": r} if r is not None else out


def _shard_bytes(tree: Any, shardings: Any) -> int:
  total = 0
  for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    total += int(np.prod(s.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize
  return total


def _memory(compiled: Any) -> tuple[int, int, int, int]:
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes, m.output_size_in_bytes, m.temp_size_in_bytes,
          m.alias_size_in_bytes)


_REFUSED = re.compile(r"RESOURCE_EXHAUSTED.*?HLO temporaries \(([\d.]+[KMGT]?)\)", re.S)
# The compiler's shorter form names only the total it would have used.
_REFUSED_TOTAL = re.compile(r"RESOURCE_EXHAUSTED.*?Used ([\d.]+[KMGT]?) of [\d.]+[KMGT]? hbm",
                            re.S)


def _compile(lowered: jax.stages.Lowered, arguments: int, donated: int
             ) -> tuple[tuple[int, int, int, int], tuple[float, float], str]:
  """``(memory, (xla_flops, bytes_accessed), note)`` of the compiled step.

  A TPU compiler refuses a program whose temporaries exceed the chip's memory;
  the plan then takes the temporaries from its message and the other terms
  from the shardings (``arguments`` per device, of which ``donated`` come back
  as outputs in place), so it reports "does not fit" instead of failing.
  """
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    m = _REFUSED.search(str(e))
    total = _REFUSED_TOTAL.search(str(e))
    if m is None and total is None:
      raise
    temp = parse_memory(m.group(1)) if m else max(0, parse_memory(total.group(1)) - arguments)
    nan = float("nan")
    return (arguments, donated, temp, donated), (nan, nan), str(e).split("\n")[0][:200]
  return _memory(compiled), _cost(compiled), ""


def _hardware_share(cfg: Any) -> float:
  """The FLOPs a train step runs per model FLOP (forward, activation gradients and weight
  gradients, a third each): full remat runs the forward twice (+1/3); LoRA skips the frozen
  weights' gradients (-1/3, an underestimate by the adapters' and heads' own, as a lower
  bound may be)."""
  return (3 + (cfg.remat == "full") - bool(cfg.lora_rank)) / 3


def _cost(compiled: Any) -> tuple[float, float]:
  """Per-device FLOPs and bytes accessed from XLA's cost analysis."""
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", float("nan")))


def lower_train(config: ml_collections.ConfigDict, devices: list[jax.Device]
                ) -> tuple[Run, jax.stages.Lowered]:
  """The run (``builders.build_run``, no data read) and its train step lowered for ``devices``."""
  run = build_run(config, devices=devices, with_task=False)
  return run, run.train_step.lower(run.abstract_state(), run.abstract_batch())


def plan_train(config: ml_collections.ConfigDict, devices: list[jax.Device],
               device_memory: int) -> Plan:
  """Compiles the run's own train step for ``devices`` and measures it."""
  run, lowered = lower_train(config, devices)
  abstract, shardings = run.state_abstract, run.shardings
  params = _shard_bytes(abstract.params, shardings.params)
  opt = _shard_bytes(abstract.opt_state, shardings.opt_state)
  everything = _shard_bytes(abstract, shardings)
  batch = run.abstract_batch()
  batch_bytes = _shard_bytes(batch, jax.tree.map(lambda x: x.sharding, batch))
  (args, outs, temp, alias), (xla_flops, accessed), note = _compile(
      lowered, everything + batch_bytes, everything)
  d = config.data
  algo = run.algorithm
  model_flops = flops.train_flops_per_step(run.model_cfg, d.batch_size, d.inputs_length,
                                           d.targets_length, algo.value_heads, algo.value_trunk)
  return Plan(f"train step ({dict(run.mesh.shape)})", device_memory, params, opt,
              everything - params - opt, args, outs, temp, alias, model_flops, xla_flops, note,
              accessed, d.batch_size * (d.inputs_length + d.targets_length), len(devices),
              model_flops * _hardware_share(run.model_cfg))


def plan_decode(config: ml_collections.ConfigDict, devices: list[jax.Device],
                device_memory: int) -> Plan:
  """Compiles one cached decode step at ``eval.batch_size`` with a full-length cache.

  With ILQL's separate value trunk both trunks step, a cache each, as guided
  decoding runs them.
  """
  run = build_run(config, devices=devices, with_task=False)
  cfg, model, mesh, rules = run.model_cfg, run.model, run.mesh, run.rules
  # ILQL decodes with its value heads in memory (the step below updates the trunks' caches).
  _, abstract_params, p_shard = run.algorithm.param_shardings(cfg, mesh, rules)
  b = config.eval.batch_size
  rows = shd.batch_shards(mesh, rules)
  if b % rows:
    raise ConfigError("the eval batch does not split over the mesh", "config.eval.batch_size",
                      expected=f"a multiple of {rows} (the devices the batch axes span)",
                      found=b)
  d = config.data
  encdec = cfg.kind == "encdec"
  max_len = d.targets_length if encdec else d.inputs_length + d.targets_length
  tok = lambda n: jnp.zeros((b, n), jnp.int32)
  if encdec:
    enc = jax.ShapeDtypeStruct((b, d.inputs_length, cfg.d_model), cfg.compute_dtype)
    full = {"decoder_input_tokens": tok(max_len), "encoder_input_tokens": tok(d.inputs_length)}
    cache = jax.eval_shape(lambda e: model.init(jax.random.PRNGKey(0), full, e, decode=True,
                                                method="decode")["cache"], enc)
    apply = lambda p, c, t: model.apply({"params": p, "cache": c},
                                        {"decoder_input_tokens": t}, None, decode=True,
                                        method="decode", mutable=["cache"])[1]["cache"]
  else:
    full = {"decoder_input_tokens": tok(max_len), "decoder_positions": tok(max_len)}
    cache = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), full, decode=True)["cache"])
    apply = lambda p, c, t: model.apply({"params": p, "cache": c},
                                        {"decoder_input_tokens": t, "decoder_positions": t},
                                        decode=True, mutable=["cache"])[1]["cache"]
  cache = {k: cache for k in trunks(abstract_params)}
  c_shard = jax.tree_util.tree_map_with_path(lambda path, x: _cache_sharding(path, x, mesh, rules),
                                             cache)
  step = shd.jit(lambda p, c, t: {k: apply(tp, c[k], t) for k, tp in trunks(p).items()}, mesh,
                 rules, donate_argnums=1, out_shardings=c_shard)
  lowered = step.lower(shd.with_shardings(abstract_params, p_shard),
                       shd.with_shardings(cache, c_shard),
                       jax.ShapeDtypeStruct((b, 1), jnp.int32, sharding=run.batch_sharding()))
  params = _shard_bytes(abstract_params, p_shard)
  cache_bytes = _shard_bytes(cache, c_shard)
  (args, outs, temp, alias), (xla_flops, accessed), note = _compile(
      lowered, params + cache_bytes, cache_bytes)
  # one new token (with ILQL's heads), attention over the cache omitted
  fwd = flops.forward_flops_per_example(cfg, 0, 1, run.algorithm.value_heads,
                                        value_trunk=run.algorithm.value_trunk)
  return Plan(f"decode step (batch {b}, cache length {max_len})", device_memory, params, 0,
              cache_bytes, args, outs, temp, alias, b * fwd, xla_flops, note, accessed, b,
              len(devices))


def _cache_sharding(path: Any, x: Any, mesh: Mesh, rules: shd.Rules) -> Any:
  """Cache arrays split over the batch axes (after the layer axis of scanned stacks)."""
  if x.ndim < 2:
    return shd.replicated(mesh)
  stacked = any(getattr(k, "key", None) == "layers" for k in path)
  names = ((None,) if stacked else ()) + ("batch",)
  names += (None,) * (x.ndim - len(names))
  return jax.sharding.NamedSharding(mesh, shd.logical_to_spec(names, rules, mesh, x.shape))
