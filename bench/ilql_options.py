"""ILQL options: a separate value trunk (train step, decoding) and behaviour-policy filtering.

  python bench/ilql_options.py [--rounds=5] [--calls=3]

The model of bench/train_step.py (T5 v1.1 layout, ~30M parameters). Interleaved
rounds (see harness.py): the ILQL train step with the shared trunk against
``loss.ilql.separate_value_trunk=True``, and ILQL-guided decoding (beta 4,
target heads) without filtering, with trlx's ``top_k=20`` on the perturbed
scores, with ``behaviour_top_k=20``, with ``behaviour_top_p=0.95`` and with a
separate value trunk. Prints each case's
time per call and its ratio to the baseline (median and min-max over rounds);
writes bench/results/ilql_options.json.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import harness
import jax
import numpy as np
from train_step import MODEL, make_batch  # imports torch before irl_lm imports TensorFlow

from irl_lm.decoding import generate
from irl_lm.models import VALUE_TRUNK, build_model, init_params, q_heads, trunk_params
from irl_lm.training.builders import build_run
from irl_lm.training.config import base_config


def train_case(separate: bool, batch: dict[str, np.ndarray]) -> Callable[[], None]:
  """One ILQL train step per call (the state carries over)."""
  config = base_config()
  config.loss.name = "ilql"
  config.loss.ilql.separate_value_trunk = separate
  config.train.steps = 1000
  config.mesh.num_devices = 1
  config.data.batch_size, config.data.targets_length = batch["decoder_target_tokens"].shape
  config.data.inputs_length = batch["encoder_input_tokens"].shape[1]
  return harness.train_step_case(build_run(config, with_task=False, model_cfg=MODEL), batch)


def decode_case(model: Any, params: Any, batch: dict[str, np.ndarray], new: int,
                **kw: Any) -> Callable[[], None]:
  """One ILQL-guided greedy ``generate`` call (EOS never stops it)."""
  def call() -> None:
    jax.block_until_ready(generate(model, params, batch, max_new_tokens=new, eos_id=-1,
                                   ilql_beta=4.0, target_heads=q_heads(params), **kw).tokens)
  return call


def main() -> None:
  ap = harness.train_step_args()
  ap.add_argument("--decode_batch", type=int, default=8)
  ap.add_argument("--new_tokens", type=int, default=32)
  args = ap.parse_args()
  batch = make_batch(args.batch, args.inputs, args.targets, MODEL.vocab_size)
  train = {"shared trunk": train_case(False, batch), "separate trunk": train_case(True, batch)}
  model = build_model(MODEL)
  params = init_params(MODEL, jax.random.key(0), heads=True)
  separate = {**params, VALUE_TRUNK: jax.tree.map(lambda x: x * 1.01, trunk_params(params))}
  prompts = {"encoder_input_tokens": batch["encoder_input_tokens"][:args.decode_batch]}
  case = lambda p, **kw: decode_case(model, p, prompts, args.new_tokens, **kw)
  decode = {"trlx rule": case(params), "top_k=20 (trlx's default)": case(params, top_k=20),
            "behaviour_top_k=20": case(params, behaviour_top_k=20),
            "behaviour_top_p=0.95": case(params, behaviour_top_p=0.95),
            "separate trunk": case(separate)}
  times = {"train": harness.interleave(train, rounds=args.rounds, calls=args.calls),
           "decode": harness.interleave(decode, rounds=args.rounds, calls=args.calls)}
  info = harness.machine()
  setting = (f"T5 v1.1 layout ({MODEL.d_model} d_model, {MODEL.num_layers}+"
             f"{MODEL.num_encoder_layers} layers, vocab {MODEL.vocab_size}), float32, 1 CPU "
             f"device; train batch {args.batch} x ({args.inputs}, {args.targets}); greedy "
             f"decoding batch {args.decode_batch}, {args.new_tokens} new tokens, beta 4; "
             f"{args.rounds} rounds x {args.calls} calls")
  results = {}
  print(harness.describe(info))
  print(setting + "\n")
  print("| case | time/call (s) | vs baseline |")
  print("|---|---|---|")
  for kind, base in (("train", "shared trunk"), ("decode", "trlx rule")):
    for name, t in times[kind].items():
      results[f"{kind}: {name}"] = {"time_s": harness.spread(t),
                                    "ratio": harness.ratio(t, times[kind][base])}
      print(f"| {kind}: {name} | {harness.fmt(harness.spread(t), 's', 3)} | "
            f"{harness.fmt(harness.ratio(t, times[kind][base]))} |")
  harness.write("ilql_options", {"machine": info, "setting": setting, "results": results})


if __name__ == "__main__":
  main()
