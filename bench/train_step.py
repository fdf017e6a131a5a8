"""Train-step benchmark: MLE, IQLearn, ILQL and GAIL against transformers' PyTorch T5, interleaved.

  python bench/train_step.py [--rounds=5] [--calls=3] [--batch=16]

One T5 (v1.1 layout, ~30M parameters) and one batch. irl_lm's losses,
PyTorch's MLE step on identical weights (exported with ``save_pretrained``) and
a float32 matmul (the peak stand-in for MFU) take turns within every round, so
each ratio and MFU is per round under the same load; the table shows the
median and min-max over rounds. GAIL's step also samples one continuation per
prompt and runs the LM on it, so it gets a time, not an MFU. Writes bench/results/train_step.json. Needs
the bench extra (torch).
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable

import harness
import jax
import numpy as np
import torch  # before irl_lm imports TensorFlow: triton's extension crashes when loaded after it
from transformers import T5ForConditionalGeneration

from irl_lm.models import preset, save_pretrained
from irl_lm.training import flops
from irl_lm.training.builders import Run, build_run
from irl_lm.training.config import base_config

MODEL = preset("t5-small", vocab_size=8192, num_layers=4, num_encoder_layers=4)
LOSSES = ("mle", "iqlearn", "ilql")  # with an MFU
TIMED = ("gail",)  # time only: the step decodes too


def make_batch(b: int, li: int, lt: int, vocab: int) -> dict[str, np.ndarray]:
  """Random tokens, every target weighted, a reward on each row's last token (which ends it)."""
  rng = np.random.default_rng(0)
  tgt = rng.integers(2, vocab, (b, lt)).astype(np.int32)
  return {"encoder_input_tokens": rng.integers(2, vocab, (b, li)).astype(np.int32),
          "decoder_input_tokens": np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], 1),
          "decoder_target_tokens": tgt, "decoder_loss_weights": np.ones((b, lt), np.int32),
          "decoder_rewards": np.where(np.arange(lt) == lt - 1, 1.0, 0.0)[None].repeat(b, 0)
          .astype(np.float32), "decoder_truncated": np.zeros((b, lt), np.int32)}


def jax_case(loss: str, batch: dict[str, np.ndarray]
             ) -> tuple[Callable[[], None], tuple[object, object], Run]:
  """One irl_lm train step per call (the state carries over), the initial params, and the run."""
  config = base_config()
  config.loss.name = loss
  config.train.steps = 1000
  config.mesh.num_devices = 1
  config.data.batch_size, config.data.targets_length = batch["decoder_target_tokens"].shape
  config.data.inputs_length = batch["encoder_input_tokens"].shape[1]
  run = build_run(config, with_task=False, model_cfg=MODEL)
  state = run.init_state()
  params = jax.tree.map(np.asarray, state.params)
  return harness.train_step_case(run, batch, state), (run.model, params), run


def torch_case(model, params, batch: dict[str, np.ndarray]) -> Callable[[], None]:
  """transformers' T5 MLE step on the same weights: AdamW and clipping, as irl_lm's."""
  with tempfile.TemporaryDirectory() as d:
    save_pretrained(model, params, d)
    tm = T5ForConditionalGeneration.from_pretrained(d)
  tm.train()
  opt = torch.optim.AdamW(tm.parameters(), lr=1e-4)
  enc = torch.tensor(batch["encoder_input_tokens"], dtype=torch.long)
  dec = torch.tensor(batch["decoder_input_tokens"], dtype=torch.long)
  labels = torch.tensor(batch["decoder_target_tokens"], dtype=torch.long)

  def call() -> None:
    opt.zero_grad()
    out = tm(input_ids=enc, decoder_input_ids=dec, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
    opt.step()
  return call


def main() -> None:
  ap = harness.train_step_args()
  args = ap.parse_args()
  batch = make_batch(args.batch, args.inputs, args.targets, MODEL.vocab_size)
  cases, step_flops = {}, {}
  for loss in LOSSES:
    cases[loss], init, _ = jax_case(loss, batch)
    step_flops[loss] = flops.train_flops_per_step(MODEL, args.batch, args.inputs, args.targets,
                                                  loss == "ilql")
    if loss == "mle":
      mle_init = init  # MLE params have no value heads, so transformers can load them
  for loss in TIMED:
    cases[loss] = jax_case(loss, batch)[0]
  cases["torch"] = torch_case(*mle_init, batch)
  cases["matmul"], mm_flops = harness.matmul_case()
  times = harness.interleave(cases, rounds=args.rounds, calls=args.calls)

  peak = [mm_flops / t for t in times["matmul"]]
  mfu = {loss: harness.spread([step_flops[loss] / t / p for t, p in zip(times[loss], peak)])
         for loss in LOSSES}
  ratios = {"torch/mle": harness.ratio(times["torch"], times["mle"]),
            "iqlearn/mle": harness.ratio(times["iqlearn"], times["mle"]),
            "ilql/mle": harness.ratio(times["ilql"], times["mle"]),
            "gail/mle": harness.ratio(times["gail"], times["mle"]),
            "ilql_mfu/mle_mfu": harness.ratio(mfu["ilql"]["rounds"], mfu["mle"]["rounds"])}
  n_params = sum(x.size for x in jax.tree.leaves(mle_init[1]))
  info = harness.machine(peak_flops=float(np.median(peak)))
  setting = (f"T5 v1.1 layout, {n_params / 1e6:.1f}M params, batch {args.batch}, inputs "
             f"{args.inputs}, targets {args.targets}, float32, 1 CPU device, {args.rounds} "
             f"rounds x {args.calls} steps")
  targets = [
      harness.target("train: irl_lm MLE speed vs PyTorch", ratios["torch/mle"], ">=", 1.0,
                     harness.fmt(ratios["torch/mle"])),
      harness.target("train: MLE MFU", mfu["mle"], ">=", 0.6, _pct(mfu["mle"])),
      harness.target("train: IQLearn step / MLE step", ratios["iqlearn/mle"], "<=", 1.05,
                     harness.fmt(ratios["iqlearn/mle"])),
      harness.target("train: ILQL MFU / MLE MFU", ratios["ilql_mfu/mle_mfu"], ">=", 1.0,
                     harness.fmt(ratios["ilql_mfu/mle_mfu"]))]
  harness.write("train_step", {
      "machine": info, "setting": setting, "times_s": {k: harness.spread(v) for k, v in
                                                       times.items()},
      "mfu": mfu, "ratios": ratios, "step_flops": step_flops, "targets": targets})
  print(harness.describe(info))
  print(setting + "\n")
  print("| step | time/step (s) | target tokens/s | MFU | time vs irl_lm mle |")
  print("|---|---|---|---|---|")
  tokens = args.batch * args.targets
  for name in (*LOSSES, *TIMED, "torch"):
    t = harness.spread(times[name])
    rel = harness.ratio(times[name], times["mle"])
    label = "PyTorch T5 (transformers), mle" if name == "torch" else name
    print(f"| {label} | {harness.fmt(t, 's', 3)} | {tokens / t['median']:.0f} | "
          f"{_pct(mfu[name]) if name in mfu else ''} | {harness.fmt(rel)} |")


def _pct(s: dict) -> str:
  return f"{100 * s['median']:.1f}% ({100 * s['min']:.1f}-{100 * s['max']:.1f})"


if __name__ == "__main__":
  main()
