"""``model.fused_projections``: q/k/v and gate/up as one kernel each, joined at load and split at
export. Every family computes the separate projections' logits and gradients, and exports the
same bytes."""
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file

from irl_lm.errors import ConfigError
from irl_lm.models import from_pretrained, fused, hf_io, preset, save_pretrained

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "models")
FAMILIES = ["gemma", "gemma3", "gpt2", "llama_gqa", "qwen2", "t5_v1_1", "umt5"]


def _batch(cfg):
  tokens = np.array([[3, 4, 5, 6, 7, 8], [9, 10, 11, 0, 0, 0]], np.int32)
  batch = {"decoder_input_tokens": tokens}
  if cfg.kind == "encdec":
    batch["encoder_input_tokens"] = tokens[::-1].copy()
  return batch


@pytest.mark.parametrize("name", FAMILIES)
def test_fused_model_equals_the_separate_one_and_exports_the_same_bytes(name):
  path = os.path.join(FIXTURES, name)
  plain, p0 = from_pretrained(path)
  joined, p1 = from_pretrained(path, fused_projections=True, scan_layers=True)
  kinds = {k[-2] for k in traverse_util.flatten_dict(p1)}
  assert "qkv" in kinds and not kinds & {"query", "key"} - ({"query", "key"} if
                                                            plain.cfg.kind == "encdec" else set())
  assert ("wi_gate_up" in kinds) == plain.cfg.gated_mlp and "wi_0" not in kinds
  batch = _batch(plain.cfg)

  def loss(model, params):
    out = model.apply({"params": params}, batch).logits
    return jnp.sum(jax.nn.log_softmax(out)[..., 5]), out
  (l0, out0), g0 = jax.value_and_grad(loss, argnums=1, has_aux=True)(plain, p0)
  (l1, out1), g1 = jax.value_and_grad(loss, argnums=1, has_aux=True)(joined, p1)
  np.testing.assert_allclose(out1, out0, atol=2e-5)
  # Gradients: the fused ones, unstacked and split, are the separate projections'.
  unstacked = hf_io._unstack_layers(traverse_util.flatten_dict(jax.tree.map(np.asarray, g1)))
  got = fused.split(unstacked, joined.cfg)
  want = traverse_util.flatten_dict(jax.tree.map(np.asarray, g0))
  assert got.keys() == want.keys()
  for k in want:  # float32 rounding, relative to each gradient's scale (up to 1e5 here)
    scale = float(np.max(np.abs(want[k]))) + 1e-6
    assert float(np.max(np.abs(got[k] - want[k]))) <= 1e-4 * scale, k
  with tempfile.TemporaryDirectory() as d:
    save_pretrained(joined, p1, os.path.join(d, "fused"))
    save_pretrained(plain, p0, os.path.join(d, "plain"))
    a, b = (load_file(os.path.join(d, x, "model.safetensors")) for x in ("fused", "plain"))
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_join_then_split_is_exact_and_orders_queries_by_kv_head():
  cfg = preset("llama-1b", num_heads=4, num_kv_heads=2, head_dim=3, d_model=5, d_ff=7,
               fused_projections=True)
  rng = np.random.default_rng(0)
  m = ("decoder", "layers_0", "attn")
  flat = {m + ("query", "kernel"): rng.normal(size=(5, 4, 3)),
          m + ("key", "kernel"): rng.normal(size=(5, 2, 3)),
          m + ("value", "kernel"): rng.normal(size=(5, 2, 3)),
          m + ("out", "kernel"): rng.normal(size=(4, 3, 5)),
          ("decoder", "layers_0", "mlp", "wi_0", "kernel"): rng.normal(size=(5, 7)),
          ("decoder", "layers_0", "mlp", "wi_1", "kernel"): rng.normal(size=(5, 7))}
  joined = fused.join(flat, cfg)
  qkv = joined[m + ("qkv", "kernel")]
  assert qkv.shape == (5, 2, 4, 3)
  # kv head 1 holds query heads 2 and 3 (Hugging Face's grouping), then its key and value.
  np.testing.assert_array_equal(qkv[:, 1, :2], flat[m + ("query", "kernel")][:, 2:])
  np.testing.assert_array_equal(qkv[:, 1, 2], flat[m + ("key", "kernel")][:, 1])
  back = fused.split(joined, cfg)
  assert back.keys() == flat.keys()
  assert all(np.array_equal(back[k], flat[k]) for k in flat)


def test_lora_on_a_joined_projection_is_refused_and_on_the_others_allowed():
  with pytest.raises(ConfigError, match=r"model.fused_projections joins q/k/v and gate/up into "
                     r"one kernel each, and LoRA adapts them separately \(model.lora.targets "
                     r"names \('q', 'gate'\)\)"):
    preset("llama-1b", fused_projections=True, lora_rank=4, lora_targets=("q", "o", "gate"))
  assert preset("llama-1b", fused_projections=True, lora_rank=4,
                lora_targets=("o", "down")).lora_rank == 4


def test_a_fused_run_from_a_checkpoint_trains_as_the_separate_one():
  """``--config.model.fused_projections=True`` with ``init_from``: one MLE step has the same
  loss, and its updated weights, split, are the separate run's."""
  from irl_lm.training import builders
  from test_data_framing import jsonl_config, validation_batch
  batch = validation_batch()
  results = []
  for joined in (False, True):
    c = jsonl_config("mle")
    c.model.fused_projections = joined
    c.model.scan_layers = joined
    run = builders.build_run(c)
    state, metrics = run.train_step(run.init_state(run.initial_params()), run.shard_batch(batch))
    results.append((float(metrics["loss"]), run.model, state.params))
  (l0, plain, p0), (l1, model, p1) = results
  np.testing.assert_allclose(l1, l0, rtol=1e-5)
  with tempfile.TemporaryDirectory() as d:  # export splits and unstacks: compare there
    save_pretrained(plain, jax.device_get(p0), os.path.join(d, "plain"))
    save_pretrained(model, jax.device_get(p1), os.path.join(d, "fused"))
    a, b = (load_file(os.path.join(d, x, "model.safetensors")) for x in ("fused", "plain"))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
