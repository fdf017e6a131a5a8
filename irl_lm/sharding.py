"""Device mesh and logical-axis sharding.

Every parameter and activation in irl_lm carries logical axis names (``batch``,
``length``, ``embed``, ``mlp``, ``heads``, ``kv``, ``vocab``, ...). A rules list,
kept in the config as plain data, maps each logical name onto zero or more of the
mesh axes ``(data, fsdp, tensor)``. This module builds the mesh and turns logical
names into ``NamedSharding`` objects.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from flax.linen import partitioning as nn_partitioning
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")

# Logical name -> mesh axis (or tuple of axes, or None = replicated).
# Batch is split over data and fsdp; weights are split over fsdp (ZeRO-3 style)
# on their model dimension and over tensor on heads / mlp / vocab.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    ("vocab", ("tensor", "fsdp")),
    ("layers", None),
    ("relpos_buckets", None),
    ("value", None),
)

Rules = Sequence[tuple[str, Any]]


def make_mesh(shape: Sequence[int] = (-1, 1, 1),
              axis_names: Sequence[str] = MESH_AXES,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds a mesh over all (global) devices; one entry of ``shape`` may be -1.

  Args:
    shape: mesh size per axis, -1 filled in from the device count.
    axis_names: the mesh axis names, default ``(data, fsdp, tensor)``.
    devices: devices to use (default: ``jax.devices()``, all hosts).

  Raises:
    ValueError: when the shape does not multiply out to the device count.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = list(shape)
  if len(shape) != len(axis_names):
    raise ValueError(f"mesh shape {tuple(shape)} has {len(shape)} entries but "
                     f"axis names {tuple(axis_names)} has {len(axis_names)}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {tuple(shape)}: at most one entry may be -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if known <= 0 or len(devices) % known:
      raise ValueError(f"mesh shape {tuple(shape)} does not divide {len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ValueError(f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices, "
                     f"found {len(devices)}")
  auto = (AxisType.Auto,) * len(axis_names)
  if len(devices) == len(jax.devices()) and devices == list(jax.devices()):
    return jax.make_mesh(tuple(shape), tuple(axis_names), axis_types=auto)
  return Mesh(np.asarray(devices).reshape(shape), tuple(axis_names), axis_types=auto)


def logical_to_spec(logical: Sequence[str | None] | None, rules: Rules,
                    mesh: Mesh | None = None,
                    shape: Sequence[int] | None = None) -> P:
  """Maps logical axis names to a PartitionSpec.

  A mesh axis is used at most once per array. When ``mesh`` and ``shape`` are
  given, mesh axes that do not divide the dimension are dropped (that dimension
  is then replicated over them), so any model size maps onto any mesh.
  """
  if logical is None:
    return P()
  table = dict(rules)
  used: set[str] = set()
  out = []
  for i, name in enumerate(logical):
    axes = table.get(name) if name is not None else None
    if axes is None:
      out.append(None)
      continue
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    kept = []
    size = 1
    for ax in axes:
      if ax in used:
        continue
      if mesh is not None:
        n = mesh.shape[ax]
        if shape is not None and shape[i] % (size * n):
          continue
        size *= n
      kept.append(ax)
    used.update(kept)
    out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
  return P(*out)


def logical_shardings(logical_tree: Any, abstract_tree: Any, mesh: Mesh,
                      rules: Rules) -> Any:
  """NamedShardings for a pytree, from its logical names and its shapes.

  Args:
    logical_tree: pytree of ``PartitionSpec`` of logical names (as returned by
      ``flax.linen.get_partition_spec``), matching ``abstract_tree``.
    abstract_tree: pytree of arrays or ``jax.ShapeDtypeStruct``.
  """
  def one(spec, x):
    names = tuple(spec) if isinstance(spec, P) else spec
    return NamedSharding(mesh, logical_to_spec(names, rules, mesh, x.shape))
  return jax.tree.map(one, logical_tree, abstract_tree,
                      is_leaf=lambda s: isinstance(s, P) or s is None)


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int = 2) -> NamedSharding:
  """Sharding for a ``[batch, ...]`` input array."""
  spec = logical_to_spec(("batch",) + (None,) * (ndim - 1), rules, mesh)
  return NamedSharding(mesh, spec)


def batch_axes(mesh: Mesh, rules: Rules) -> tuple[str, ...]:
  """The mesh axes a batch's rows are split over: where ``rules`` send logical ``batch``.

  The one source for the batch-size check, the data shard of each host and the
  batch sharding, so they cannot disagree.
  """
  axis = batch_sharding(mesh, rules, 1).spec[0]
  return () if axis is None else (axis,) if isinstance(axis, str) else tuple(axis)


def batch_shards(mesh: Mesh, rules: Rules) -> int:
  """How many pieces a batch's rows are split into (the global batch must divide by it)."""
  return math.prod(mesh.shape[a] for a in batch_axes(mesh, rules))


def with_shardings(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of ``tree`` carrying ``shardings`` (for AOT lowering and restores)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      tree, shardings)


def replicated(mesh: Mesh) -> NamedSharding:
  """A fully replicated sharding on ``mesh``."""
  return NamedSharding(mesh, P())


@contextlib.contextmanager
def _context(mesh: Mesh, rules: Rules) -> Iterator[None]:
  """The mesh and logical rules that ``constrain`` reads while a function is traced."""
  with jax.set_mesh(mesh), nn_partitioning.axis_rules(tuple(rules)):
    yield


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Sharding constraint on an activation from its logical axis names.

  Uses the mesh and rules of the enclosing ``jit`` (a no-op outside one), with
  the same resolver as the parameters: mesh axes that do not divide a
  dimension are dropped.
  """
  mesh = jax.sharding.get_abstract_mesh()
  rules = nn_partitioning.get_axis_rules()
  if mesh.empty or not rules:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(names, rules, mesh, x.shape))


class MeshFunction:
  """A jitted function bound to its mesh and logical rules.

  Calling or lowering it traces under that mesh and rules, so callers never
  set a context. ``lower`` takes arrays or ``ShapeDtypeStruct``s (AOT).
  """

  def __init__(self, fn: Any, mesh: Mesh, rules: Rules, **jit_kwargs: Any):
    self.mesh, self.rules = mesh, tuple(rules)
    self._jitted = jax.jit(fn, **jit_kwargs)

  def __call__(self, *args: Any) -> Any:
    with _context(self.mesh, self.rules):
      return self._jitted(*args)

  def lower(self, *args: Any) -> Any:
    with _context(self.mesh, self.rules):
      return self._jitted.lower(*args)


def jit(fn: Any, mesh: Mesh, rules: Rules, **jit_kwargs: Any) -> MeshFunction:
  """``jax.jit(fn, **jit_kwargs)`` that runs under ``mesh`` and ``rules``."""
  return MeshFunction(fn, mesh, rules, **jit_kwargs)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, rules: Rules) -> dict[str, jax.Array]:
  """This process's rows -> global arrays split over the mesh's batch axes."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, rules, v.ndim), v)
          for k, v in batch.items()}
