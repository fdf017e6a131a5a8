"""Check that a config fits: ``python -m irl_lm.plan --config=CONFIG --topology=v5e:4x4``.

AOT-compiles the real train step (and one decode step) for the target mesh
without running it, prints per-device memory and FLOPs, and exits 1 when the
plan does not fit within the device memory less ``--headroom``. With a chip
(the topology's, or ``--chip``) it also prints a roofline estimate: the step
time's lower bound from the compiled module's FLOPs and bytes accessed at the
chip's published peaks, and the tokens/s per chip and MFU that bound allows.

  --topology=v5e:4x4 | v4:2x2x4 | ...   TPU chips via libtpu (pip install 'irl_lm[tpu]')
  --devices=8 --device_memory=80GiB     simulated CPU devices standing in for a GPU node
  [--chip=h100]                         ... and the GPU whose peaks the roofline uses
"""
import json
import sys

from absl import flags
from ml_collections import config_flags

from irl_lm import cli
from irl_lm.errors import ConfigError

config_flags.DEFINE_config_file("config", None, "Config file to plan.", lock_config=True)
flags.DEFINE_string("topology", None, "TPU topology, e.g. v5e:4x4 or v4:2x2x4.")
flags.DEFINE_integer("devices", None, "Number of simulated devices (CPU stand-ins).")
flags.DEFINE_string("device_memory", "80GiB", "Memory per simulated device.")
flags.DEFINE_string("chip", None, "With --devices: the chip whose published peaks give the "
                    "roofline estimate (a100, h100, h200, v5e, ...); a topology names its own.")
flags.DEFINE_float("headroom", 0.15, "Fraction of device memory that must stay free.")
flags.DEFINE_bool("decode", True, "Also plan one cached decode step.")
flags.DEFINE_string("json_out", None, "Write the figures as JSON here.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  if (FLAGS.topology is None) == (FLAGS.devices is None):
    raise ConfigError("give exactly one of --topology and --devices", "command line")
  if FLAGS.topology is not None and FLAGS.chip is not None:
    raise ConfigError("--chip is for --devices: a topology's chips give the roofline", "--chip")
  if FLAGS.devices is not None and FLAGS.devices < 1:
    raise ConfigError("value out of range", "--devices", expected="value >= 1",
                      found=FLAGS.devices)
  if not 0 <= FLAGS.headroom < 1:
    raise ConfigError("value out of range", "--headroom", expected="0 <= value < 1",
                      found=FLAGS.headroom)
  import jax
  if FLAGS.devices:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", FLAGS.devices)
  from irl_lm.planning import (chip_rates, parse_memory, plan_decode, plan_train,
                               topology_rates, tpu_devices)
  from irl_lm.training.config import validate
  validate(FLAGS.config, data=False)  # a plan reads no data: no vocabulary file needed
  memory = parse_memory(FLAGS.device_memory)
  if memory <= 0:
    raise ConfigError("value out of range", "--device_memory", expected="a size > 0",
                      found=repr(FLAGS.device_memory))
  if FLAGS.topology:
    devices, memory, where = tpu_devices(FLAGS.topology)
    rates = topology_rates(FLAGS.topology, devices)
  else:
    devices = jax.devices()[:FLAGS.devices]
    where = f"{FLAGS.devices} simulated devices with {memory / 2**30:.0f} GiB each"
    rates = chip_rates(FLAGS.chip) if FLAGS.chip else None
  print(f"planning on {where}")
  plans = [plan_train(FLAGS.config, devices, memory)]
  if FLAGS.decode:
    plans.append(plan_decode(FLAGS.config, devices, memory))
  failed = []
  for p in plans:
    print(p.table(rates))
    verdict = "fits" if p.fits(FLAGS.headroom) else "DOES NOT FIT"
    print(f"  -> {verdict} with {100 * FLAGS.headroom:.0f}% headroom "
          f"({100 * (1 - p.share):.1f}% free)\n")
    if not p.fits(FLAGS.headroom):
      failed.append(p)
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w") as f:
      json.dump({"where": where, "headroom": FLAGS.headroom,
                 "plans": [p.as_dict(rates) for p in plans]}, f, indent=2)
  for p in failed:
    term, size = p.largest_term()
    print(f"{p.name} does not fit: {p.total / 2**30:.2f} GiB per device > "
          f"{(1 - FLAGS.headroom) * p.device_memory / 2**30:.2f} GiB allowed. The largest term "
          f"is {term} ({size / 2**30:.2f} GiB): try model.remat=full, a smaller data.batch_size "
          "with optimizer.grad_accum_steps, or a larger fsdp/tensor mesh axis.", file=sys.stderr)
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
