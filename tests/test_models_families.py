"""Every model family: switches read from config.json, greedy decoding equal to transformers,
exports transformers reads back, one train step of each algorithm, refusals in one line."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
import seqio
import transformers

from irl_lm import data
from irl_lm.decoding.api import generate
from irl_lm.errors import InputError
from irl_lm.models import from_pretrained, save_pretrained
from irl_lm.models.hf_io import load_hf_config
from irl_lm.training import builders
from training_utils import tiny_config

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "models")
FAMILIES = sorted(os.listdir(FIXTURES))
ENCDEC = ("t5_v1_1", "t5_original", "mt5", "umt5")
PROMPT_LEN = 6
NEEDS_TRANSFORMERS = {"qwen3": "4.51", "gemma3_text": "4.50", "qwen2": "4.37", "gemma2": "4.42"}


def _golden(name):
  return dict(np.load(os.path.join(FIXTURES, name, "golden.npz")))


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_equals_transformers_generate(name):
  """The KV-cache decoder continues the prompts (longer than the sliding windows of 4)
  token for token as transformers' generate did, EOS included."""
  g = _golden(name)
  model, params = from_pretrained(os.path.join(FIXTURES, name))
  batch = ({"encoder_input_tokens": g["encoder_input_tokens"]} if name in ENCDEC
           else {"decoder_input_tokens": g["decoder_input_tokens"][:, :PROMPT_LEN]})
  out = generate(model, params, batch, max_new_tokens=g["greedy"].shape[1])
  np.testing.assert_array_equal(np.asarray(out.tokens[:, 0]), g["greedy"])


# What each fixture's config.json switches on (the parity tests check the numbers).
SWITCHES = {
    "llama3": dict(layout="llama", rope_type="llama3", rope_factor=8.0, rope_original_max=16,
                   tie_word_embeddings=True, qkv_bias=True, out_bias=True, mlp_bias=True),
    "llama_yarn": dict(rope_type="yarn", rope_factor=4.0, rope_original_max=16),
    "llama_dynamic": dict(rope_type="dynamic", rope_factor=2.0, max_position_embeddings=6),
    "llama_linear": dict(rope_type="linear", rope_factor=2.0),
    "mistral": dict(layout="mistral", sliding_window=4, layer_types=("sliding",) * 2),
    "qwen2": dict(layout="qwen2", qkv_bias=True, out_bias=False, sliding_window=4,
                  layer_types=("full", "sliding"), tie_word_embeddings=True),
    "qwen3": dict(layout="qwen3", qk_norm=True, head_dim=16, layer_types=()),
    "gemma": dict(layout="gemma", norm="rms_1p", embed_scale=True, activation="gelu_new",
                  kv_heads=1, tie_word_embeddings=True),
    "gemma2": dict(layout="gemma2", sandwich_norms=True, query_scale=0.25, attn_softcap=5.0,
                   final_softcap=3.0, layer_types=("sliding", "full")),
    "gemma3": dict(layout="gemma3", qk_norm=True, sandwich_norms=True, rope_type="linear",
                   rope_factor=8.0, rope_theta=1e6, rope_local_theta=1e4, attn_softcap=0.0,
                   layer_types=("sliding", "full", "sliding")),
    "gpt2_scaled": dict(scale_by_layer=True, scaled_attention=False),
    "mt5": dict(layout="mt5", tie_word_embeddings=False, head_rescale=False),
    "umt5": dict(layout="umt5", rel_bias_per_layer=True, tie_word_embeddings=True,
                 head_rescale=True),
    "t5_original": dict(layout="original", tie_word_embeddings=True, head_rescale=True),
    "t5_v1_1": dict(layout="v1_1", tie_word_embeddings=False, head_rescale=False),
}


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_switches_read_from_config_json(name):
  cfg = load_hf_config(os.path.join(FIXTURES, name))
  got = {k: getattr(cfg, k) for k in SWITCHES[name]}
  assert got == SWITCHES[name]


@pytest.mark.parametrize("name", FAMILIES)
def test_export_reloads_in_transformers_and_irl_lm(name, tmp_path):
  """The export's config.json is read by transformers' own config class into the same
  settings, and by irl_lm into the same ModelConfig; the weights are the same tensors."""
  src = os.path.join(FIXTURES, name)
  model, params = from_pretrained(src, scan_layers=True)
  save_pretrained(model, params, str(tmp_path))
  assert load_hf_config(str(tmp_path), scan_layers=True) == model.cfg
  model_type = json.loads((tmp_path / "config.json").read_text())["model_type"]
  if model_type not in transformers.CONFIG_MAPPING:  # the fixtures were made with 5.25.0
    pytest.skip(f"transformers {transformers.__version__} has no {model_type!r} config class "
                f"(needs >= {NEEDS_TRANSFORMERS.get(model_type, '5.25.0')})")
  theirs = transformers.AutoConfig.from_pretrained(src).to_dict()
  back = transformers.AutoConfig.from_pretrained(str(tmp_path)).to_dict()
  for key in ("model_type", "rope_parameters", "layer_types", "sliding_window", "head_dim",
              "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping",
              "scale_attn_by_inverse_layer_idx", "scale_attn_weights", "scale_decoder_outputs",
              "attention_bias", "mlp_bias", "tie_word_embeddings", "feed_forward_proj",
              "num_key_value_heads", "max_position_embeddings"):
    assert back.get(key) == theirs.get(key), key


@pytest.mark.parametrize("name", ["gemma3", "qwen2", "umt5"])
def test_export_from_a_source_keeps_its_config_and_files(name, tmp_path):
  """With the checkpoint a run started from, the export writes its config.json back unchanged
  (every field, e.g. max_position_embeddings and the token ids) and copies its generation
  config; another architecture gets irl_lm's own config.json."""
  src = os.path.join(FIXTURES, name)
  model, params = from_pretrained(src)
  save_pretrained(model, params, str(tmp_path / "same"), source=src)
  for f in ("config.json", "generation_config.json"):
    assert (tmp_path / "same" / f).read_text() == open(os.path.join(src, f)).read() or (
        json.loads((tmp_path / "same" / f).read_text()) == json.load(open(os.path.join(src, f))))
  other = model.clone(cfg=model.cfg.replace(vocab_size=model.cfg.vocab_size, eos_id=3))
  save_pretrained(other, params, str(tmp_path / "other"), source=src)
  assert load_hf_config(str(tmp_path / "other")).eos_id == 3


def test_export_refuses_a_switch_the_family_cannot_express(tmp_path):
  model, params = from_pretrained(os.path.join(FIXTURES, "qwen2"))
  capped = model.clone(cfg=model.cfg.replace(final_softcap=7.0))
  with pytest.raises(ValueError, match=r"model_type 'qwen2' cannot express final_softcap=7.0 "
                     r"\(its config.json would load as 0.0\)"):
    save_pretrained(capped, params, str(tmp_path))
  assert not os.path.exists(tmp_path / "config.json")


def _task(name: str, vocab: int, eos: int) -> str:
  """A tiny id task in the fixture's 96-token vocabulary, rewards on its last token."""
  task = f"family_ids_{vocab}_{eos}"
  if task not in seqio.TaskRegistry.names():
    rng = np.random.default_rng(0)
    prompts = rng.integers(3, vocab, (16, 5)).tolist()
    conts = rng.integers(3, vocab, (16, 4)).tolist()
    data.register_id_task(task, {"train": (prompts, conts), "validation": (prompts, conts)},
                          data.IdVocabulary(vocab, eos))
  return task


# Each model_type trains one step of one algorithm; the algorithms rotate over them
# (the RoPE variants of the Llama fixtures train as Llama does).
TRAINED = ["llama3", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gpt2_scaled",
           "t5_v1_1", "mt5", "umt5"]
ALGORITHMS = ("mle", "iqlearn", "ilql", "iqlearn_online")


@pytest.mark.parametrize("name", TRAINED)
def test_one_train_step(name):
  algorithm = ALGORITHMS[TRAINED.index(name) % len(ALGORITHMS)]
  loss = "iqlearn" if algorithm == "iqlearn_online" else algorithm
  c = tiny_config(loss)
  c.model.init_from = os.path.join(FIXTURES, name)
  cfg = load_hf_config(c.model.init_from)
  c.data.task = _task(name, 96, cfg.eos_id)
  c.data.inputs_length, c.data.targets_length, c.data.batch_size = 8, 8, 4
  if algorithm == "iqlearn_online":
    c.loss.iqlearn.online.enable = True
  run = builders.build_run(c)
  state = run.init_state()
  batch = next(data.BatchIterator(run.task, "train", run.kind,
                                  {"inputs": 8, "targets": 8}, 4, seed=0))
  before = jax.device_get(state.params)
  state, metrics = run.train_step(state, run.shard_batch(batch))
  assert np.isfinite(float(metrics["loss"])), algorithm
  moved = jax.tree.map(lambda a, b: not np.array_equal(np.asarray(a), b), state.params, before)
  assert all(jax.tree.leaves(moved)), algorithm


def _edit(name, tmp_path, edit):
  d = tmp_path / name
  shutil.copytree(os.path.join(FIXTURES, name), d)
  cfg = json.loads((d / "config.json").read_text())
  edit(cfg)
  (d / "config.json").write_text(json.dumps(cfg))
  return str(d)


REFUSED = [
    ("llama_gqa", lambda c: c.update(sliding_window=4),
     r"sliding_window=4 is not supported: transformers' Llama has no sliding window \(it "
     r"ignores this key\); for a Mistral checkpoint set model_type 'mistral' "
     r"\(model_type 'llama'\)"),
    ("llama_gqa", lambda c: c.update(rope_scaling={"rope_type": "longrope", "factor": 2.0}),
     r"rope_scaling rope_type='longrope' is not supported"),
    ("llama3", lambda c: c["rope_parameters"].update(partial_rotary_factor=0.5),
     r"rope_parameters partial_rotary_factor=0.5 is not supported \(only 1.0\)"),
    ("llama_linear", lambda c: c["rope_parameters"].update(beta_fast=8),
     r"rope_parameters key 'beta_fast' is not used by rope_type 'linear'"),
    ("llama_gqa", lambda c: c.update(hidden_act="relu2"),
     r"hidden_act='relu2' is not supported"),
    ("llama_gqa", lambda c: c.update(quantization_config={"bits": 4}),
     r"quantization_config=\{'bits': 4\} is not supported: load unquantised weights"),
    ("mistral", lambda c: c.update(logit_scale=2.0),
     r"logit_scale=2.0 is not supported: irl_lm does not implement it, and it may change "
     r"the numbers \(model_type 'mistral'\)"),
    ("gpt2", lambda c: c.update(activation_function="gelu_fast"),
     r"activation_function='gelu_fast' is not supported"),
    ("gpt2", lambda c: c.update(add_cross_attention=True),
     r"add_cross_attention=true is not supported"),
    ("gemma", lambda c: c.update(hidden_act="silu"),
     r"hidden_act='silu' is not supported \(expected 'gelu_pytorch_tanh'\)"),
    ("gemma3", lambda c: c.update(use_bidirectional_attention=True),
     r"use_bidirectional_attention=true \(an embedding model\) is not supported"),
    ("gemma3", lambda c: c["rope_parameters"]["sliding_attention"].update(
        rope_type="linear", factor=2.0),
     r"a scaled RoPE on the sliding layers is not supported"),
    ("gemma2", lambda c: c.update(layer_types=["sliding_attention"]),
     r"layer_types must list 'full_attention' or 'sliding_attention' for each of the 2 layers"),
    ("t5_v1_1", lambda c: c.update(feed_forward_proj="gated-relu-x"),
     r"feed_forward_proj='gated-relu-x' is not supported"),
    ("umt5", lambda c: c.update(tie_encoder_decoder=True),
     r"tie_encoder_decoder=true is not supported"),
]


@pytest.mark.parametrize("name,edit,error", REFUSED, ids=[f"{r[0]}-{i}" for i, r in
                                                         enumerate(REFUSED)])
def test_options_that_change_numbers_are_refused(name, edit, error, tmp_path):
  with pytest.raises(InputError, match=error):
    from_pretrained(_edit(name, tmp_path, edit))


def test_harmless_keys_load(tmp_path):
  """Dropout, metadata and empty values change no forward pass: accepted."""
  path = _edit("mistral", tmp_path, lambda c: c.update(
      attention_dropout=0.1, torch_dtype="bfloat16", some_future_flag=None,
      _name_or_path="x", layer_types=["full_attention"] * 2))
  assert load_hf_config(path).sliding_window == 4


# Families whose decoding differs in the cache path: windows, per-layer RoPE and scales,
# soft-caps, per-layer relative biases. (Dynamic NTK RoPE depends on a call's longest
# position, so a padded full-recompute reference differs from it by design.)
DECODE = ["mistral", "qwen2", "gemma2", "gemma3", "gpt2_scaled", "llama_yarn", "umt5"]


@pytest.mark.parametrize("name,scan", [(n, n in ("gemma3", "umt5")) for n in DECODE])
def test_ilql_guided_and_beam_decoding_equal_full_recompute(name, scan):
  """Mixed-length prompts (7 tokens: past the window of 4) decoded with ILQL guidance and
  by one-beam search match a full forward pass at every step."""
  from decoding_utils import reference_greedy
  model, params = from_pretrained(os.path.join(FIXTURES, name), value_heads=True,
                                  rng=jax.random.key(1), scan_layers=scan)
  toks = _golden(name)["encoder_input_tokens" if name in ENCDEC else "decoder_input_tokens"]
  lengths = [7, 3]
  toks = np.stack([np.where(np.arange(toks.shape[1]) < n, np.maximum(row, 1), 0)
                   for row, n in zip(toks, lengths)])[:, :7].astype(np.int32)
  batch = {"encoder_input_tokens" if name in ENCDEC else "decoder_input_tokens": toks}
  kw = dict(max_new_tokens=5, eos_id=-1)
  guided = generate(model, params, batch, ilql_beta=2.0, use_target_heads=False, **kw)
  for i, n in enumerate(lengths):
    want, _ = reference_greedy(model, params, toks[i, :n], 5, eos=-1, beta=2.0, target=False)
    np.testing.assert_array_equal(np.asarray(guided.tokens[i, 0]), want)
  greedy = generate(model, params, batch, **kw)
  beam = generate(model, params, batch, method="beam", num_beams=1, **kw)
  np.testing.assert_array_equal(np.asarray(beam.tokens), np.asarray(greedy.tokens))
