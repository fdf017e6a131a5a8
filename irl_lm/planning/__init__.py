"""Ahead-of-time planning: prove a configuration fits before renting the hardware."""
from irl_lm.planning.devices import parse_memory, tpu_devices
from irl_lm.planning.planner import Plan, plan_decode, plan_train

__all__ = ["Plan", "parse_memory", "plan_decode", "plan_train", "tpu_devices"]
