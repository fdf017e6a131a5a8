"""Hugging Face parity, round trips and weight-loading errors (no torch needed)."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from irl_lm.models import (apply_heads, apply_q_heads, from_pretrained, q_heads, save_pretrained,
                           trunk_params)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "models")
NAMES = sorted(os.listdir(FIXTURES))


def golden(name):
  g = dict(np.load(os.path.join(FIXTURES, name, "golden.npz")))
  return g.pop("logits"), {k: jnp.asarray(v) for k, v in g.items()}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scan", [False, True])
def test_logits_match_transformers(name, scan):
  ref, batch = golden(name)
  model, params = from_pretrained(os.path.join(FIXTURES, name), scan_layers=scan)
  got = model.apply({"params": params}, batch).logits
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4, rtol=0)


def test_layouts_read_from_config():
  cfgs = {n: from_pretrained(os.path.join(FIXTURES, n))[0].cfg for n in NAMES}
  assert (cfgs["t5_v1_1"].layout, cfgs["t5_v1_1"].tie_word_embeddings) == ("v1_1", False)
  assert (cfgs["t5_original"].layout, cfgs["t5_original"].tie_word_embeddings) == ("original", True)
  assert cfgs["gpt2"].layout == "gpt2" and cfgs["gpt2"].tie_word_embeddings
  assert cfgs["llama_gqa"].layout == "llama" and cfgs["llama_gqa"].kv_heads == 2


@pytest.mark.parametrize("name", NAMES)
def test_save_pretrained_round_trip(name, tmp_path):
  src = os.path.join(FIXTURES, name)
  model, params = from_pretrained(src, scan_layers=True)
  save_pretrained(model, params, str(tmp_path))
  orig, back = load_file(os.path.join(src, "model.safetensors")), load_file(
      str(tmp_path / "model.safetensors"))
  assert set(back) == set(orig)
  for k in orig:
    np.testing.assert_array_equal(back[k], orig[k], err_msg=k)
  _, params2 = from_pretrained(str(tmp_path), scan_layers=True)
  jax.tree.map(np.testing.assert_array_equal, params, params2)


def test_value_heads_saved_beside_and_read_back(tmp_path):
  src = os.path.join(FIXTURES, "gpt2")
  model, params = from_pretrained(src, value_heads=True, rng=jax.random.key(3))
  ref, batch = golden("gpt2")
  out = model.apply({"params": trunk_params(params)}, batch)
  np.testing.assert_allclose(np.asarray(out.logits), ref, atol=1e-4)
  q1, q2, v = apply_heads(model.cfg, params, out.hidden)
  assert q1.shape == q2.shape == ref.shape and v.shape == ref.shape[:2]
  assert q1.dtype == v.dtype == jnp.float32
  save_pretrained(model, params, str(tmp_path))
  assert os.path.exists(tmp_path / "value_heads.safetensors")
  assert not any(k.startswith("heads") for k in load_file(str(tmp_path / "model.safetensors")))
  _, params2 = from_pretrained(str(tmp_path), value_heads=True)
  jax.tree.map(np.testing.assert_array_equal, params["heads"], params2["heads"])


def test_value_trunk_starts_as_a_copy_and_is_saved_beside(tmp_path):
  src = os.path.join(FIXTURES, "llama_gqa")
  model, params = from_pretrained(src, value_heads=True, value_trunk=True, scan_layers=True)
  trunk = trunk_params(params)
  jax.tree.map(np.testing.assert_array_equal, params["value_trunk"], trunk)
  moved = {**params, "value_trunk": jax.tree.map(lambda x: x + 1.0, trunk)}
  save_pretrained(model, moved, str(tmp_path))
  orig, policy, value = (load_file(os.path.join(d, f)) for d, f in (
      (src, "model.safetensors"), (tmp_path, "model.safetensors"),
      (tmp_path, "value_trunk.safetensors")))
  assert set(policy) == set(value) == set(orig)
  for k in orig:
    np.testing.assert_array_equal(policy[k], orig[k], err_msg=k)
  _, back = from_pretrained(str(tmp_path), value_heads=True, value_trunk=True, scan_layers=True)
  jax.tree.map(np.testing.assert_array_equal, back, moved)
  _, policy_only = from_pretrained(str(tmp_path), scan_layers=True)
  jax.tree.map(np.testing.assert_array_equal, policy_only, trunk)


def test_q_heads_applied_from_separate_parameters():
  model, params = from_pretrained(os.path.join(FIXTURES, "t5_v1_1"), value_heads=True)
  _, batch = golden("t5_v1_1")
  h = model.apply({"params": trunk_params(params)}, batch).hidden
  q1, q2, _ = apply_heads(model.cfg, params, h)
  t1, t2 = apply_q_heads(model.cfg, q_heads(params), h)
  np.testing.assert_array_equal(np.asarray(t1), np.asarray(q1))
  np.testing.assert_array_equal(np.asarray(t2), np.asarray(q2))
  _, t2 = apply_q_heads(model.cfg, jax.tree.map(lambda x: x * 0.5, q_heads(params)), h)
  assert not np.allclose(np.asarray(t2), np.asarray(q2))


def _copy(name, tmp_path):
  dst = tmp_path / name
  shutil.copytree(os.path.join(FIXTURES, name), dst)
  return dst


def test_unknown_model_type(tmp_path):
  d = _copy("gpt2", tmp_path)
  cfg = json.loads((d / "config.json").read_text())
  cfg["model_type"] = "bloom"
  (d / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match=r"model_type='bloom' is not supported"):
    from_pretrained(str(d))


def test_missing_weight(tmp_path):
  d = _copy("llama_gqa", tmp_path)
  w = load_file(str(d / "model.safetensors"))
  del w["model.layers.1.mlp.up_proj.weight"]
  save_file(w, str(d / "model.safetensors"))
  with pytest.raises(ValueError, match=r"missing weight 'model.layers.1.mlp.up_proj.weight'"):
    from_pretrained(str(d))


def test_unexpected_weight(tmp_path):
  d = _copy("llama_gqa", tmp_path)
  w = load_file(str(d / "model.safetensors"))
  w["model.layers.9.extra.weight"] = np.zeros((2,), np.float32)
  save_file(w, str(d / "model.safetensors"))
  with pytest.raises(ValueError, match=r"unexpected weight 'model.layers.9.extra.weight'"):
    from_pretrained(str(d))


def test_shape_mismatch_names_key_and_shapes(tmp_path):
  d = _copy("t5_v1_1", tmp_path)
  w = load_file(str(d / "model.safetensors"))
  w["encoder.block.1.layer.1.DenseReluDense.wo.weight"] = np.zeros((32, 40), np.float32)
  save_file(w, str(d / "model.safetensors"))
  with pytest.raises(ValueError, match=r"'encoder.block.1.layer.1.DenseReluDense.wo.weight' "
                     r"has shape \(32, 40\), expected \(32, 48\)"):
    from_pretrained(str(d))


def test_sharded_index_and_bfloat16(tmp_path):
  """A two-file sharded checkpoint stored in bfloat16 loads (as float32)."""
  import ml_dtypes
  src = os.path.join(FIXTURES, "gpt2")
  w = load_file(os.path.join(src, "model.safetensors"))
  keys = sorted(w)
  half = {k: w[k].astype(ml_dtypes.bfloat16) for k in keys}
  d = tmp_path / "ckpt"
  d.mkdir()
  shutil.copy(os.path.join(src, "config.json"), d)
  names = {}
  for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):
    fn = f"model-0000{i + 1}-of-00002.safetensors"
    _save_bf16({k: half[k] for k in part}, str(d / fn))
    names.update({k: fn for k in part})
  (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": names}))
  model, params = from_pretrained(str(d))
  ref, batch = golden("gpt2")
  got = np.asarray(model.apply({"params": params}, batch).logits)
  np.testing.assert_allclose(got, ref, atol=0.1)  # bf16 weights
  emb = params["embed"]["embedding"]
  np.testing.assert_array_equal(np.asarray(emb), half["transformer.wte.weight"].astype(np.float32))


def _save_bf16(tensors, path):
  """Minimal safetensors writer for bfloat16 (safetensors.numpy lacks bf16)."""
  header, blobs, off = {}, [], 0
  for k, v in tensors.items():
    b = np.ascontiguousarray(v).tobytes()
    header[k] = {"dtype": "BF16", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
  h = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
