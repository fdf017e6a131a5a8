"""Target devices for planning: TPU topologies (compile-only, via libtpu) or CPU stand-ins."""
from __future__ import annotations

import dataclasses
import re

import jax

from irl_lm.errors import ConfigError

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
  """A chip's published dense bfloat16 peak (TFLOP/s), memory bandwidth (GB/s) and memory."""

  peak_tflops: float
  hbm_gbps: float
  hbm_gib: int


# By the names libtpu's topology strings use (TPUs) and common GPU names.
CHIPS = {"v4": Chip(275, 1200, 32), "v5e": Chip(197, 819, 16), "v5litepod": Chip(197, 819, 16),
         "v5p": Chip(459, 2765, 95), "v6e": Chip(918, 1640, 32),
         "a100": Chip(312, 2039, 80), "h100": Chip(989, 3350, 80), "h200": Chip(989, 4800, 141)}
TPU_HBM_GIB = {name: c.hbm_gib for name, c in CHIPS.items() if name.startswith("v")}


@dataclasses.dataclass(frozen=True)
class Rates:
  """Peak FLOP/s and memory bytes/s of one device (a chip's share when it shows several)."""

  chip: str
  flops: float
  bandwidth: float
  devices_per_chip: int = 1


def chip_rates(chip: str, devices_per_chip: int = 1) -> Rates:
  """The per-device peaks of ``chip`` (a key of ``CHIPS``)."""
  if chip not in CHIPS:
    raise ConfigError("unknown chip", "--chip", expected=f"one of {sorted(CHIPS)}",
                      found=repr(chip))
  c = CHIPS[chip]
  return Rates(chip, c.peak_tflops * 1e12 / devices_per_chip,
               c.hbm_gbps * 1e9 / devices_per_chip, devices_per_chip)


def _chips(devices: list[jax.Device]) -> int:
  return len({tuple(getattr(d, "coords", (i,))) for i, d in enumerate(devices)})


def topology_rates(topology: str, devices: list[jax.Device]) -> Rates:
  """Per-device peaks of a TPU topology's devices (from ``tpu_devices``)."""
  return chip_rates(topology.split(":", 1)[0].lower(), len(devices) // _chips(devices))


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
  chips = _chips(devices)
  per_device = TPU_HBM_GIB[gen] * GIB * chips // len(devices)  # v4: 2 TensorCores per chip
  return devices, per_device, (f"TPU {topology} ({chips} chips, {len(devices)} devices, "
                               "compile-only)")
