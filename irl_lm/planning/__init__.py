"""Ahead-of-time planning: prove a configuration fits before renting the hardware."""
from irl_lm.planning.devices import (CHIPS, Rates, chip_rates, parse_memory, topology_rates,
                                     tpu_devices)
from irl_lm.planning.planner import Plan, plan_decode, plan_train

__all__ = ["CHIPS", "Plan", "Rates", "chip_rates", "parse_memory", "plan_decode", "plan_train",
           "topology_rates", "tpu_devices"]
