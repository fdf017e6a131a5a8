"""IQLearn against MLE on an imitation benchmark with a known expert.

  python -m experiments.run_imitation [--teacher=HF_DIR] [--quick] [--outdir=DIR]

(the same as ``python -m experiments.run --suite=imitation``).

* **Teacher** (the expert): any Hugging Face causal-LM directory (`teacher.py`);
  by default a ``gpt2-mini`` the benchmark trains on the embedded documents.
  Everything is token ids: no tokenizer is read.
* **Data**: prompts are teacher samples of ``prompt_len`` tokens (temperature
  1); demonstrations are the teacher's continuations of ``cont_len`` tokens at
  the expert temperature; a broad corpus (whole sequences at a high temperature)
  pretrains the students.
* **Students** (``gpt2-tiny``, the teacher's vocabulary), one per seed and
  method: pretrained by MLE on the broad corpus, then fine-tuned on the
  demonstrations by MLE, IQLearn (``lam`` sweep) and online IQLearn; MLE and
  IQLearn are also trained from scratch.
* **Quality** is exact: the teacher's mean log-likelihood per token, at the
  expert temperature, of the student's own continuations (and per position:
  compounding error). **Diversity**: Self-BLEU over the samples of a prompt
  (lower = more diverse), distinct bigrams and bigram entropy. Decoding: greedy,
  beam search and sampling at each of ``temperatures``.
* **Protocol**: the learning rate and ``lam`` of each method are chosen on the
  validation prompts with the first ``tune_seeds`` seeds (mean quality over the
  decoding settings); every seed of the chosen settings is reported on the test
  prompts.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from experiments.jobs import Job, run_stage

DEMOS, BROAD = "imitation_demos", "imitation_broad"
METHODS = ("mle", "iqlearn", "online", "gail")  # fine-tuned from the pretrained student
SCRATCH = ("mle", "iqlearn")  # also trained from scratch


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes, temperatures, grids and budgets of one benchmark run."""

  prompt_len: int = 8
  cont_len: int = 24
  n_train: int = 4000
  n_broad: int = 8000
  n_eval: int = 100  # prompts per validation / test split
  samples: int = 5  # per prompt, for Self-BLEU
  expert_temperature: float = 0.7
  broad_temperature: float = 1.5
  temperatures: tuple[float, ...] = (0.3, 0.5, 0.7, 1.0)
  beams: int = 4
  student: str = "gpt2-tiny"
  teacher_steps: int = 1500
  pretrain_steps: int = 1500
  finetune_steps: int = 600
  scratch_steps: int = 1000
  # The demonstrations are cut from the teacher's stream, not finished answers: their last
  # action bootstraps from the state after it (a weight-0 slot), as a truncated episode's does.
  demos_truncated: bool = True
  mle_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # MLE's grid: its learning rate
  lams: tuple[float, ...] = (0.03, 0.1, 0.3)  # (online) IQLearn's grid: lam at iqlearn_lr
  iqlearn_lr: float = 3e-3
  gail_lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)  # GAIL's grid: its learning rate
  # Online IQLearn: with gamma = 1 its value term over the samples telescopes to V of the
  # prompt (docs/losses.md), so the samples would only count through their lengths.
  online_gamma: float = 0.9
  online_every: int = 4
  tune_seeds: int = 2
  seeds: int = 5
  methods: tuple[str, ...] = METHODS  # fine-tuned from the pretrained students
  scratch: tuple[str, ...] = SCRATCH  # also trained from scratch

  def decodings(self) -> tuple[str, ...]:
    return ("greedy", "beam") + tuple(f"T{t:g}" for t in self.temperatures)


QUICK = Settings(n_train=64, n_broad=64, n_eval=4, samples=2, temperatures=(0.5, 1.0),
                 teacher_steps=30, pretrain_steps=8, finetune_steps=8, scratch_steps=8,
                 mle_lrs=(3e-3,), lams=(0.3,), gail_lrs=(3e-4,), tune_seeds=1, seeds=1)
# The lam sweep (`--suite=iqlearn_lambda`): IQLearn up to lam 2 (IQ-Learn's default alpha 0.5
# is lam 0.5) against MLE, fine-tuned on an eighth of the demonstrations, where MLE has room to
# lose (and overfits: its learning-rate grid reaches down to 1e-4); every setting is trained and
# reported with every seed.
LAMBDA = Settings(n_train=500, lams=(0.1, 0.5, 1.0, 2.0), methods=("mle", "iqlearn"), scratch=(),
                  mle_lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), tune_seeds=5)
LAMBDA_QUICK = dataclasses.replace(QUICK, n_train=32, lams=(0.5, 2.0), methods=("mle", "iqlearn"),
                                   scratch=())


# ---- data --------------------------------------------------------------------------------------

def make_data(workdir: str, teacher_path: str, start_id: int, settings: Settings,
              seed: int = 0) -> dict[str, Any]:
  """Samples prompts, demonstrations and the broad corpus from the teacher (job)."""
  from experiments import teacher as T
  t = T.load_teacher(teacher_path, start_id)
  s = settings
  none = np.zeros((0,), np.int32)
  prompts = lambda n, k: T.sample(t, np.tile(none, (n, 1)), s.prompt_len, 1.0, seed * 10 + k)
  arrays: dict[str, np.ndarray] = {}
  for split, n, k in (("train", s.n_train, 1), ("validation", s.n_eval, 2), ("test", s.n_eval, 3)):
    p = prompts(n, k)
    arrays[f"{split}_prompts"] = p
    arrays[f"{split}_conts"] = T.sample(t, p, s.cont_len, s.expert_temperature, seed * 10 + k + 5)
  broad = T.sample(t, np.tile(none, (s.n_broad, 1)), s.prompt_len + s.cont_len,
                   s.broad_temperature, seed * 10 + 9)
  arrays["broad_prompts"], arrays["broad_conts"] = np.split(broad, [s.prompt_len], axis=1)
  path = os.path.join(workdir, "data.npz")
  np.savez(path, **arrays)
  quality = lambda split: float(T.token_log_likelihood(
      t, arrays[f"{split}_prompts"][:s.n_eval], arrays[f"{split}_conts"][:s.n_eval],
      s.expert_temperature).mean())
  return {"path": path, "vocab_size": t.vocab_size, "eos_id": t.eos_id,
          "expert_quality": quality("test"), "broad_quality": quality("broad")}


def register(data: dict[str, Any], s: Settings) -> dict[str, np.ndarray]:
  """Registers the demonstration and broad-corpus tasks in this process; returns the arrays."""
  from irl_lm import data as D
  arrays = dict(np.load(data["path"]))
  vocab = D.IdVocabulary(data["vocab_size"], data["eos_id"])
  val = (arrays["validation_prompts"], arrays["validation_conts"])
  D.register_id_task(DEMOS, {"train": (arrays["train_prompts"], arrays["train_conts"]),
                             "validation": val}, vocab, finished=not s.demos_truncated)
  D.register_id_task(BROAD, {"train": (arrays["broad_prompts"], arrays["broad_conts"]),
                             "validation": val}, vocab)
  return arrays


# ---- students -----------------------------------------------------------------------------------

def student_config(s: Settings, task: str, method: str, lam: float, lr: float, steps: int,
                   seed: int, init: str, vocab_size: int):
  """The training config of one student, whose vocabulary is exactly the teacher's (not
  rounded up: a sampled id the teacher lacks would have no quality)."""
  from experiments.run_config import single_run_config
  slot = int(task == DEMOS and s.demos_truncated)  # the state after the last action
  loss = {"mle": "mle", "pretrain": "mle", "gail": "gail"}.get(method, "iqlearn")
  c = single_run_config(task=task, loss=loss,
                        model=s.student, lengths=(s.prompt_len, s.cont_len + slot), steps=steps,
                        learning_rate=lr, seed=seed, eval_examples=s.n_eval)
  c.model.init_from = init
  c.model.vocab_size = vocab_size
  c.loss.iqlearn.lam = lam
  if method == "online":
    c.loss.iqlearn.gamma = s.online_gamma
    c.loss.iqlearn.online.enable = True
    c.loss.iqlearn.online.every = s.online_every
  return c


def train_student(workdir: str, data: dict[str, Any], teacher: dict[str, Any],
                  settings: Settings, method: str, lam: float, lr: float, steps: int,
                  seed: int, init: str = "") -> dict[str, Any]:
  """Trains one student (job); a ``pretrain`` run is exported for the fine-tunes, any
  other is measured on the validation and test prompts."""
  from experiments.curves import read_scalars
  from irl_lm.workdir import restore_params
  from irl_lm.training.trainer import train_and_evaluate
  arrays = register(data, settings)
  task = BROAD if method == "pretrain" else DEMOS
  run_dir = os.path.join(workdir, "run")
  last = train_and_evaluate(
      student_config(settings, task, method, lam, lr, steps, seed, init, data["vocab_size"]),
      run_dir)
  model, params, _, _ = restore_params(run_dir)
  out = {"method": method, "lam": lam, "lr": lr, "steps": steps, "seed": seed,
         "init": "pretrained" if init else "scratch", "final_train_loss": last.get("train/loss"),
         "eval_loss": last.get("eval/loss"), "loss_curve": read_scalars(run_dir, "train/loss")}
  if method == "pretrain":
    from irl_lm.models import save_pretrained
    out["path"] = os.path.join(workdir, "hf")
    save_pretrained(model, params, out["path"])
    return out
  from experiments import teacher as T
  t = T.load_teacher(teacher["path"], teacher["start_id"])
  out["splits"] = {split: measure(model, params, t, arrays[f"{split}_prompts"], settings, seed)
                   for split in ("validation", "test")}
  return out


def decode(model: Any, params: Any, prompts: np.ndarray, name: str, s: Settings,
           seed: int) -> np.ndarray:
  """``s.samples`` continuations per prompt under one decoding setting: [n, k, L]."""
  import jax
  from irl_lm.decoding import generate
  n = len(prompts)
  batch = {"decoder_input_tokens": np.concatenate(
      [np.zeros((n, 1), np.int32), prompts], 1).astype(np.int32),
           "prompt_lengths": np.full((n,), prompts.shape[1] + 1, np.int32)}
  kw = dict(max_new_tokens=s.cont_len, eos_id=-1, rng=jax.random.key(seed))
  if name == "greedy":
    res = generate(model, params, batch, method="greedy", **kw)
  elif name == "beam":
    res = generate(model, params, batch, method="beam", num_beams=s.beams, **kw)
  else:
    res = generate(model, params, batch, method="sample", temperature=float(name[1:]),
                   num_samples=s.samples, **kw)
  tokens = np.asarray(res.tokens)
  if name in ("greedy", "beam"):  # deterministic: k identical copies of the best row
    tokens = np.repeat(tokens[:, :1], s.samples, axis=1)
  return tokens


def implied_returns(model: Any, params: Any, prompts: np.ndarray, conts: np.ndarray,
                    gamma: float = 1.0, batch_size: int = 256) -> np.ndarray:
  """Per-sequence sum of IQLearn's implied rewards under ``model`` ([n] for [n, P], [n, L])."""
  import jax
  import jax.numpy as jnp
  from irl_lm import losses
  targets = np.concatenate([prompts, conts], 1).astype(np.int32)
  inputs = np.concatenate([np.zeros((len(targets), 1), np.int32), targets[:, :-1]], 1)
  weights = np.concatenate([np.zeros_like(prompts), np.ones_like(conts)], 1).astype(np.int32)
  fn = jax.jit(lambda p, b: jnp.sum(losses.implied_rewards(
      model.apply({"params": p}, b).logits, b["decoder_target_tokens"],
      b["decoder_loss_weights"], gamma=gamma), axis=1))
  out = []
  for i in range(0, len(targets), batch_size):
    b = {"decoder_input_tokens": inputs[i:i + batch_size],
         "decoder_target_tokens": targets[i:i + batch_size],
         "decoder_loss_weights": weights[i:i + batch_size]}
    pad = batch_size - len(b["decoder_input_tokens"])
    b = {k: np.pad(v, ((0, pad), (0, 0))) for k, v in b.items()}
    out.append(np.asarray(fn(params, b))[:batch_size - pad])
  return np.concatenate(out)


def measure(model: Any, params: Any, teacher: Any, prompts: np.ndarray, s: Settings,
            seed: int) -> dict[str, Any]:
  """Quality, diversity and implied-reward correlation of one student per decoding."""
  from irl_lm import metrics
  from experiments import protocol
  from experiments.teacher import token_log_likelihood
  n, k = len(prompts), s.samples
  owner = np.repeat(np.arange(n), k)
  out = {}
  for name in s.decodings():
    conts = decode(model, params, prompts, name, s, seed)
    flat = conts.reshape(n * k, -1)
    ll = token_log_likelihood(teacher, prompts[owner], flat, s.expert_temperature)
    texts = [[" ".join(map(str, c)) for c in row] for row in conts]
    row = {"quality": float(ll.mean()), "by_position": ll.mean(0).tolist(),
           "self_bleu": metrics.self_bleu(None, texts)["self_bleu"],
           "distinct_2": float(np.mean([metrics.distinct_n(r, 2) for r in conts])),
           "entropy_2": metrics.ngram_entropy(list(flat), 2)}
    if name.startswith("T"):
      ret = implied_returns(model, params, prompts[owner], flat)
      row["implied_reward"] = protocol.correlations(ret, ll.sum(1), owner)
    out[name] = row
  return out


# ---- the benchmark ------------------------------------------------------------------------------

def _name(method: str, lam: float, lr: float, seed: int, init: str) -> str:
  lam_part = f"_lam{lam:g}" if method not in ("mle", "gail") else ""
  return f"student_{init}_{method}{lam_part}_lr{lr:g}_seed{seed}"


def _grid(s: Settings, methods: tuple[str, ...]) -> list[tuple[str, float, float]]:
  """(method, lam, lr) of every tuning run: MLE and GAIL over their learning rates,
  IQLearn over lam."""
  lrs = {"mle": s.mle_lrs, "gail": s.gail_lrs}
  return [(m, lam, lr) for m in methods
          for lam, lr in ([(0.0, lr) for lr in lrs[m]] if m in lrs
                          else [(lam, s.iqlearn_lr) for lam in s.lams])]


def run_benchmark(*, teacher_dir: str | None, workroot: str, settings: Settings, workers: int,
                  progress=print) -> dict[str, Any]:
  """Runs (or resumes) every stage; returns the rows the report reads."""
  s = settings
  me = "experiments.imitation"
  t0 = time.time()
  if teacher_dir:
    teacher = {"path": teacher_dir, "start_id": None, "trained_here": False}
  else:
    progress("imitation: training the default teacher")
    res = run_stage([Job("teacher", "experiments.teacher:train_default_teacher",
                         {"steps": s.teacher_steps})], workroot, workers, progress)["teacher"]
    _check(res, "teacher")
    teacher = {"path": res["path"], "start_id": res["start_id"], "trained_here": True,
               "train_loss": res["train_loss"], "eval_loss": res["eval_loss"]}
  progress("imitation: sampling prompts, demonstrations and the broad corpus")
  data = run_stage([Job("data", f"{me}:make_data", {"teacher_path": teacher["path"],
                                                     "start_id": teacher["start_id"],
                                                     "settings": s})],
                   workroot, workers, progress)["data"]
  _check(data, "data")
  common = {"data": data, "teacher": teacher, "settings": s}
  progress("imitation: pretraining one student per seed on the broad corpus")
  pre = run_stage([Job(f"pretrain_seed{k}", f"{me}:train_student",
                       {**common, "method": "pretrain", "lam": 0.0, "lr": s.iqlearn_lr,
                        "steps": s.pretrain_steps, "seed": k}) for k in range(s.seeds)],
                  workroot, workers, progress)
  init = {k: pre[f"pretrain_seed{k}"].get("path", "") for k in range(s.seeds)}

  def job(method, lam, lr, seed, scratch=False):
    kind = "scratch" if scratch else "pre"
    return Job(_name(method, lam, lr, seed, kind), f"{me}:train_student",
               {**common, "method": method, "lam": lam, "lr": lr, "seed": seed,
                "steps": s.scratch_steps if scratch else s.finetune_steps,
                "init": "" if scratch else init[seed]})

  progress("imitation: tuning lr and lam on the validation prompts")
  tune = run_stage([job(m, lam, lr, k) for m, lam, lr in _grid(s, s.methods)
                    for k in range(s.tune_seeds) if init[k]], workroot, workers, progress)
  chosen = {m: _choose(tune, s, m, lambda m, lam, lr, k: _name(m, lam, lr, k, "pre"))
            for m in s.methods}
  progress(f"imitation: chosen {chosen}; training every seed")
  final = [job(m, *chosen[m], k) for m in s.methods for k in range(s.seeds) if init[k]]
  final += [job(m, *chosen[m], k, scratch=True) for m in s.scratch for k in range(s.seeds)]
  results = run_stage(final, workroot, workers, progress)
  rows = [dict(results[j.name], name=j.name) for j in final]
  return {"settings": dataclasses.asdict(s), "teacher": teacher, "data": data,
          "pretrain": [dict(pre[f"pretrain_seed{k}"], name=f"pretrain_seed{k}")
                       for k in range(s.seeds)],
          "tuning": [dict(tune[name], name=name) for name in sorted(tune)],
          "chosen": {m: {"lam": c[0], "lr": c[1]} for m, c in chosen.items()},
          "rows": rows, "seconds": round(time.time() - t0)}


def _check(result: dict[str, Any], what: str) -> None:
  if not result["ok"]:
    raise RuntimeError(f"imitation: the {what} job failed: {result['error']}")


def _choose(results: dict[str, dict[str, Any]], s: Settings, method: str, name) -> tuple:
  """The (lam, lr) of ``method`` with the best mean validation quality over the tuning
  seeds and decoding settings (a failed or diverged setting never wins)."""
  best, best_score = None, -np.inf
  for m, lam, lr in _grid(s, (method,)):
    scores = []
    for k in range(s.tune_seeds):
      r = results.get(name(m, lam, lr, k))
      ok = r is not None and r["ok"]
      scores.append(np.mean([d["quality"] for d in r["splits"]["validation"].values()])
                    if ok else -np.inf)
    score = float(np.mean(scores)) if scores else -np.inf
    if score > best_score:
      best, best_score = (lam, lr), score
  return best or _grid(s, (method,))[0][1:]
