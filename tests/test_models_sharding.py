"""Sharded forward passes on 8 simulated devices equal the single-device result."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm import sharding as shd
from irl_lm.models import (apply_heads, build_model, from_pretrained, init_params, param_shardings,
                           preset, trunk_params)

MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 8, 1)]
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "models")


def test_eight_devices():
  assert jax.device_count() == 8


@pytest.mark.parametrize("name", ["t5-tiny", "gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("mesh_shape", MESHES)
def test_sharded_forward_equals_single_device(name, mesh_shape):
  cfg = preset(name, vocab_size=128, scan_layers=name == "llama-tiny")
  model = build_model(cfg)

  def forward(p, b):
    out = model.apply({"params": trunk_params(p)}, b)
    q1, q2, v = apply_heads(cfg, p, out.hidden)
    return {"logits": out.logits, "q1": q1, "q2": q2, "v": v}

  rng = np.random.default_rng(0)
  batch = {"decoder_input_tokens": rng.integers(1, 128, (8, 8)).astype(np.int32)}
  if cfg.kind == "encdec":
    batch["encoder_input_tokens"] = rng.integers(1, 128, (8, 10)).astype(np.int32)
  params = init_params(cfg, jax.random.key(0), heads=True)
  ref = jax.jit(forward)(params, batch)

  mesh = shd.make_mesh(mesh_shape)
  _, _, p_sh = param_shardings(cfg, mesh, shd.DEFAULT_RULES, heads=True)
  b_sh = shd.batch_sharding(mesh, shd.DEFAULT_RULES)
  sharded_params = jax.device_put(params, p_sh)
  sharded_batch = jax.device_put(batch, b_sh)
  fwd = shd.jit(forward, mesh, shd.DEFAULT_RULES,
                in_shardings=(p_sh, jax.tree.map(lambda _: b_sh, batch)))
  got = fwd(sharded_params, sharded_batch)
  for field in ("logits", "q1", "q2", "v"):
    np.testing.assert_allclose(np.asarray(got[field]), np.asarray(ref[field]),
                               atol=1e-5, rtol=1e-5, err_msg=field)
  # The large arrays are split over fsdp x tensor (pure data parallelism replicates).
  model_par = mesh_shape[1] * mesh_shape[2]
  big = [x for x in jax.tree.leaves(sharded_params) if x.size >= 128 * cfg.d_model]
  assert big
  if model_par > 1:
    for x in big:
      assert x.addressable_shards[0].data.size < x.size, (x.shape, x.sharding)
  leaves = jax.tree.leaves(sharded_params)
  per_device = sum(x.addressable_shards[0].data.size for x in leaves)
  total = sum(x.size for x in leaves)
  assert per_device <= 1.5 * total / model_par
  assert got["logits"].addressable_shards[0].data.shape[0] == 8 // (mesh_shape[0] * mesh_shape[1])


def test_from_pretrained_places_params_into_sharding():
  mesh = shd.make_mesh((2, 2, 2))
  model, params = from_pretrained(os.path.join(FIXTURES, "llama_gqa"), mesh=mesh)
  emb = params["embed"]["embedding"]  # (vocab, embed): vocab over tensor x fsdp
  assert emb.sharding.spec == jax.sharding.PartitionSpec(("tensor", "fsdp"), None)
  assert emb.addressable_shards[0].data.shape == (emb.shape[0] // 4, emb.shape[1])
  g = dict(np.load(os.path.join(FIXTURES, "llama_gqa", "golden.npz")))
  got = shd.jit(lambda p, b: model.apply({"params": p}, b).logits, mesh, shd.DEFAULT_RULES)(
      params, {"decoder_input_tokens": jnp.asarray(g["decoder_input_tokens"])})
  np.testing.assert_allclose(np.asarray(got), g["logits"], atol=1e-4)


def test_mesh_errors():
  with pytest.raises(ValueError, match=r"mesh shape \(3, -1, 1\) does not divide 8 devices"):
    shd.make_mesh((3, -1, 1))
  with pytest.raises(ValueError, match=r"needs 4 devices, found 8"):
    shd.make_mesh((2, 2, 1))
  assert dict(shd.make_mesh((-1, 2, 1)).shape) == {"data": 4, "fsdp": 2, "tensor": 1}


def test_indivisible_dims_fall_back_to_replication():
  mesh = shd.make_mesh((1, 1, 8))
  spec = shd.logical_to_spec(("mlp", "vocab"), shd.DEFAULT_RULES, mesh, (12, 100))
  assert spec == jax.sharding.PartitionSpec(None, "fsdp")  # tensor=8 divides neither
  spec = shd.logical_to_spec(("mlp", "vocab"), shd.DEFAULT_RULES, mesh, (64, 96))
  assert spec == jax.sharding.PartitionSpec("tensor", "fsdp")
