"""Target devices for planning: TPU topologies (compile-only, via libtpu) or CPU stand-ins."""
from __future__ import annotations

import re

import jax

from irl_lm.errors import ConfigError

GIB = 1024 ** 3
# HBM per chip by TPU generation (the name libtpu's topology strings use).
TPU_HBM_GIB = {"v4": 32, "v5e": 16, "v5litepod": 16, "v5p": 95, "v6e": 32}


def parse_memory(text: str) -> int:
  """'80GiB', '16G', '512MiB' -> bytes."""
  m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B?|)\s*", text, flags=re.I)
  if not m:
    raise ConfigError("not a memory size", "--device_memory", expected="a size like 80GiB or 16G",
                      found=repr(text))
  scale = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}[m.group(2)[:1].lower()]
  return int(float(m.group(1)) * scale)


def tpu_devices(topology: str) -> tuple[list[jax.Device], int, str]:
  """Compile-only devices of a TPU topology such as ``v5e:4x4`` or ``v4:2x2x4``.

  Returns (devices, HBM bytes per device, description); a chip's HBM is split
  evenly among its devices (v4 shows each of its two TensorCores as a device). Needs libtpu
  (``pip install irl_lm[tpu]``), not a TPU.
  """
  gen = topology.split(":", 1)[0].lower()
  if gen not in TPU_HBM_GIB or ":" not in topology:
    raise ConfigError("not a TPU topology", "--topology",
                      expected=f"GENERATION:SHAPE with generation one of {sorted(TPU_HBM_GIB)}, "
                      "e.g. v5e:4x4 or v4:2x2x4", found=repr(topology))
  from jax.experimental import topologies
  try:
    desc = topologies.get_topology_desc(topology_name=topology, platform="tpu")
  except Exception as e:  # libtpu missing or unknown shape
    raise ConfigError(f"could not build the TPU topology ({' '.join(str(e).split())[:160]}); "
                      "it needs libtpu: pip install 'irl_lm[tpu]'", f"--topology={topology}"
                      ) from e
  devices = list(desc.devices)
  chips = len({tuple(getattr(d, "coords", (i,))) for i, d in enumerate(devices)})
  per_device = TPU_HBM_GIB[gen] * GIB * chips // len(devices)  # v4: 2 TensorCores per chip
  return devices, per_device, (f"TPU {topology} ({chips} chips, {len(devices)} devices, "
                               "compile-only)")
