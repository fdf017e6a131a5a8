"""The AOT planner on a small config with simulated devices."""
import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from irl_lm.models import trunk_params
from irl_lm.planning import parse_memory, plan_decode, plan_train, planner
from irl_lm.training.builders import build_run
from training_utils import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_memory():
  assert parse_memory("80GiB") == 80 * 2 ** 30
  assert parse_memory("16G") == 16 * 2 ** 30
  assert parse_memory("512MiB") == 512 * 2 ** 20


def test_plan_train_and_decode_on_simulated_devices():
  c = tiny_config("ilql", mesh=(2, 4, 1), num_devices=0)
  c.model.vocab_size = 512
  plan = plan_train(c, jax.devices(), 2 ** 30)
  n_params = sum(x.size for x in jax.tree.leaves(build_run(c, with_task=False).state_abstract.params))
  # fsdp=4 splits every large array four ways: per-device params are about a quarter.
  assert 0.24 * 4 * n_params < plan.params < 0.5 * 4 * n_params
  assert abs(plan.optimizer - 2 * plan.params) <= 64  # AdamW: two moments (+ step counts)
  assert plan.other_state > 0  # the ILQL target heads
  assert plan.temporaries > 0 and plan.total > plan.params + plan.optimizer
  assert plan.model_flops > 0 and plan.fits(0.15)
  assert not plan.fits(1.0 - plan.share / 2)
  decode = plan_decode(c, jax.devices(), 2 ** 30)
  assert decode.optimizer == 0 and decode.other_state > 0  # the KV cache
  assert decode.total < plan.total


def test_separate_value_trunk_adds_a_trunk_and_a_cache_to_the_plans():
  c = tiny_config("ilql", mesh=(1, 4, 1), num_devices=4)
  c.model.vocab_size = 512
  devices = jax.devices()[:4]
  run = build_run(c, devices=devices, with_task=False)
  trunk = planner._shard_bytes(trunk_params(run.state_abstract.params),
                               trunk_params(run.shardings.params))
  train, decode = plan_train(c, devices, 2 ** 30), plan_decode(c, devices, 2 ** 30)
  c.loss.ilql.separate_value_trunk = True
  train2, decode2 = plan_train(c, devices, 2 ** 30), plan_decode(c, devices, 2 ** 30)
  assert train2.params == train.params + trunk  # sharded as the policy trunk
  assert train2.optimizer == train.optimizer + 2 * trunk  # AdamW's two moments
  assert train2.other_state == train.other_state
  assert train2.total > train.total and train2.model_flops > train.model_flops
  assert decode2.params == decode.params + trunk
  assert decode2.other_state == 2 * decode.other_state  # a KV cache per trunk


def test_cli_exits_nonzero_and_names_the_largest_term():
  proc = subprocess.run(
      [sys.executable, "-m", "irl_lm.plan", f"--config={ROOT}/configs/quickstart.py",
       "--devices=4", "--device_memory=2MiB", "--nodecode", "--config.mesh.shape=(1,4,1)"],
      capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert "DOES NOT FIT" in proc.stdout
  assert "does not fit" in proc.stderr and "The largest term is" in proc.stderr
  assert "parameters" in proc.stdout and "activations and temporaries" in proc.stdout


class _Refusing:
  """A lowered step whose compile fails as a TPU compiler's does when it runs out of HBM."""

  def __init__(self, message: str):
    self.message = message

  def compile(self):
    raise jax.errors.JaxRuntimeError(self.message)


def test_a_step_the_tpu_compiler_refuses_is_planned_as_not_fitting():
  msg = ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
         "temporaries (17.36G) exceeds available HBM (15.75G).\nmore detail")
  memory, (xla_flops, accessed), note = planner._compile(_Refusing(msg), arguments=3 * 2**30,
                                                         donated=2**30)
  temp = int(17.36 * 2**30)
  assert memory == (3 * 2**30, 2**30, temp, 2**30)
  assert np.isnan(xla_flops) and np.isnan(accessed) and note == msg.split("\n")[0]
  plan = planner.Plan("train step", 16 * 2**30, 2**29, 2**29, 0, *memory, 1.0, xla_flops, note)
  assert plan.total == 3 * 2**30 + temp and not plan.fits(0.15)
  from irl_lm.planning import chip_rates  # no cost analysis: no roofline, the note stays last
  assert plan.table(chip_rates("v5e")).splitlines()[-1].split(None, 1) == ["note", note]
  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
    planner._compile(_Refusing("INTERNAL: something else"), arguments=1, donated=0)
  short = ("RESOURCE_EXHAUSTED: E1000: CompileTimeHbmOom: XLA:TPU compile permanent error. Ran "
           "out of memory in memory space hbm. Used 15.77G of 15.75G hbm. Exceeded hbm "
           "capacity by 21.58M.")
  memory, _, _ = planner._compile(_Refusing(short), arguments=3 * 2**30, donated=2**30)
  assert memory[2] == int(15.77 * 2**30) - 3 * 2**30  # the total is what the compiler used


def test_a_plan_needs_no_vocabulary_file():
  """`python -m irl_lm.plan --config=configs/t5_xl.py ...` as printed: a plan reads no data."""
  import importlib.util
  from irl_lm.errors import ConfigError
  from irl_lm.training.config import validate
  spec = importlib.util.spec_from_file_location("t5_xl", os.path.join(ROOT, "configs", "t5_xl.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  assert config.data.vocabulary == "sentencepiece" and not config.data.vocabulary_path
  with pytest.raises(ConfigError, match="needs config.data.vocabulary_path"):
    validate(config)
  validate(config, data=False)
  run = build_run(config, devices=jax.devices()[:8], with_task=False)
  assert run.task is None and run.model_cfg.d_model == 2048


def test_an_eval_batch_that_does_not_split_over_the_mesh_is_one_line():
  c = tiny_config("mle", mesh=(2, 1, 1), num_devices=2)
  c.eval.batch_size = 3
  with pytest.raises(ValueError, match=r"the eval batch does not split over the mesh "
                     r"\(config.eval.batch_size\): expected a multiple of 2 \(the devices the "
                     r"batch axes span\) vs found 3"):
    plan_decode(c, jax.devices()[:2], 2 ** 30)


def test_roofline_is_the_slower_of_compute_and_memory_at_the_chips_peaks():
  from irl_lm.planning import chip_rates, topology_rates
  c = tiny_config("mle", mesh=(2, 4, 1), num_devices=0)
  plan = plan_train(c, jax.devices(), 2 ** 30)
  assert plan.xla_flops > 0 and plan.bytes_accessed > 0 and plan.devices == 8
  assert plan.tokens == c.data.batch_size * (c.data.inputs_length + c.data.targets_length)
  h100 = chip_rates("h100")
  r = plan.roofline(h100)
  assert plan.hardware_flops == plan.model_flops  # no remat: one forward pass
  assert r["compute_s"] == max(plan.xla_flops, plan.model_flops / 8) / 989e12
  assert r["memory_s"] == max(plan.bytes_accessed, plan.arguments + plan.outputs) / 3350e9
  assert 0 < r["mfu"] <= 1.0
  assert r["step_s"] == max(r["compute_s"], r["memory_s"])
  assert r["bound"] == ("compute" if r["compute_s"] >= r["memory_s"] else "memory")
  assert r["tokens_per_s_per_chip"] == pytest.approx(plan.tokens / r["step_s"] / 8)
  assert r["mfu"] == pytest.approx(plan.model_flops / (8 * 989e12 * r["step_s"]))
  assert "roofline estimate on h100" in plan.table(h100) and "roofline" not in plan.table()
  c.model.lora.rank = 4  # no gradients for the frozen weights: 2/3, and the bound uses them
  lora = plan_train(c, jax.devices(), 2 ** 30)
  assert lora.hardware_flops == pytest.approx(lora.model_flops * 2 / 3)
  looped = dataclasses.replace(lora, xla_flops=0.0)  # as XLA's count of a scanned stack
  assert looped.roofline(h100)["compute_s"] == lora.hardware_flops / 8 / 989e12
  c.model.lora.rank = 0
  c.model.remat = "full"  # the forward pass runs twice: 4/3 of the model FLOPs
  assert plan_train(c, jax.devices(), 2 ** 30).hardware_flops == pytest.approx(
      plan.model_flops * 4 / 3)
  c.model.lora.rank = 4  # ... and the frozen weights get no gradients: 3/3
  assert plan_train(c, jax.devices(), 2 ** 30).hardware_flops == pytest.approx(plan.model_flops)
  # A v4 chip shows two devices: each gets half its peaks, and tokens count per chip.
  fake = [type("D", (), {"coords": (i // 2, 0, 0)})() for i in range(8)]
  v4 = topology_rates("v4:2x2x1", fake)
  assert (v4.flops, v4.bandwidth, v4.devices_per_chip) == (275e12 / 2, 1200e9 / 2, 2)
  assert plan.roofline(v4)["tokens_per_s_per_chip"] == pytest.approx(
      plan.tokens / plan.roofline(v4)["step_s"] / 4)
