"""Scan / remat / dtype switches, packing, decode cache and config errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from irl_lm.models import ModelConfig, build_model, init_params, preset
from irl_lm.models.hf_io import _stack_layers, _unstack_layers

TINY = {n: preset(n, vocab_size=64) for n in ("t5-tiny", "gpt2-tiny", "llama-tiny")}


def batch_for(cfg, b=2, t=6, seed=0):
  rng = np.random.default_rng(seed)
  out = {"decoder_input_tokens": rng.integers(2, cfg.vocab_size, (b, t)).astype(np.int32)}
  if cfg.kind == "encdec":
    enc = rng.integers(2, cfg.vocab_size, (b, t + 1)).astype(np.int32)
    enc[0, -2:] = 0
    out["encoder_input_tokens"] = enc
  return jax.tree.map(jnp.asarray, out)


def as_scanned(params):
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict(_stack_layers({k: np.asarray(v) for k, v in flat.items()}))


def loss_fn(model, batch):
  return lambda p: jnp.mean(model.apply({"params": p}, batch).logits ** 2)


@pytest.mark.parametrize("name", sorted(TINY))
def test_scan_and_remat_match_unrolled(name):
  cfg = TINY[name]
  params = init_params(cfg, jax.random.key(0))
  batch = batch_for(cfg)
  ref_loss, ref_grad = jax.value_and_grad(loss_fn(build_model(cfg), batch))(params)
  scanned = as_scanned(params)
  for remat in ("none", "full", "save_dots"):
    model = build_model(cfg.replace(scan_layers=True, remat=remat))
    loss, grad = jax.jit(jax.value_and_grad(loss_fn(model, batch)))(scanned)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    got = traverse_util.unflatten_dict(_unstack_layers(
        {k: np.asarray(v) for k, v in traverse_util.flatten_dict(grad).items()}))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4),
                 got, jax.tree.map(np.asarray, ref_grad))


@pytest.mark.parametrize("name", sorted(TINY))
def test_bfloat16_compute_close_to_float32(name):
  cfg = TINY[name]
  params = init_params(cfg, jax.random.key(1))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  batch = batch_for(cfg)
  f32 = build_model(cfg).apply({"params": params}, batch).logits
  bf16 = build_model(cfg.replace(dtype="bfloat16")).apply({"params": params}, batch).logits
  assert bf16.dtype == jnp.float32
  scale = float(jnp.abs(f32).max())
  assert float(jnp.abs(bf16 - f32).max()) < 0.05 * scale


@pytest.mark.parametrize("name", ["t5-tiny", "llama-tiny", "gpt2-tiny"])
def test_packed_rows_equal_separate_rows(name):
  """Two examples packed in one row give the logits each gives alone."""
  cfg = TINY[name]
  model, params = build_model(cfg), init_params(cfg, jax.random.key(2))
  a, b = batch_for(cfg, 1, 4, seed=3), batch_for(cfg, 1, 3, seed=4)
  packed = {"decoder_input_tokens": jnp.concatenate([a["decoder_input_tokens"],
                                                     b["decoder_input_tokens"]], 1),
            "decoder_segment_ids": jnp.array([[1, 1, 1, 1, 2, 2, 2]]),
            "decoder_positions": jnp.array([[0, 1, 2, 3, 0, 1, 2]])}
  if cfg.kind == "encdec":
    ea = jnp.array([[3, 9, 4, 12]])
    eb = jnp.array([[7, 5, 20]])
    a["encoder_input_tokens"], b["encoder_input_tokens"] = ea, eb
    packed.update(encoder_input_tokens=jnp.concatenate([ea, eb], 1),
                  encoder_segment_ids=jnp.array([[1, 1, 1, 1, 2, 2, 2]]),
                  encoder_positions=jnp.array([[0, 1, 2, 3, 0, 1, 2]]))
  got = model.apply({"params": params}, packed).logits
  np.testing.assert_allclose(got[:, :4], model.apply({"params": params}, a).logits, atol=1e-5)
  np.testing.assert_allclose(got[:, 4:], model.apply({"params": params}, b).logits, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("scan", [False, True])
def test_decode_cache_matches_full_forward(name, scan):
  """Prefill then one token at a time through the cache equals one full pass."""
  cfg = TINY[name].replace(scan_layers=scan)
  model, params = build_model(cfg), init_params(cfg, jax.random.key(4))
  batch = batch_for(cfg, 2, 6)
  full = model.apply({"params": params}, batch)
  dec = batch["decoder_input_tokens"]
  pos = jnp.broadcast_to(jnp.arange(6), dec.shape)
  if cfg.kind == "encdec":
    enc = model.apply({"params": params}, batch, method="encode")
    init = model.init(jax.random.key(0), batch, enc, decode=True, method="decode")
    step = lambda c, sl, e: model.apply({"params": params, "cache": c},
                                        {**batch, "decoder_input_tokens": dec[:, sl]}, e,
                                        decode=True, method="decode", mutable=["cache"])
    out, v = step(init["cache"], slice(0, 3), enc)
    outs = [out]
    for t in range(3, 6):
      out, v = step(v["cache"], slice(t, t + 1), None)
      outs.append(out)
  else:
    init = model.init(jax.random.key(0), {"decoder_input_tokens": dec, "decoder_positions": pos},
                      decode=True)
    step = lambda c, sl: model.apply({"params": params, "cache": c},
                                     {"decoder_input_tokens": dec[:, sl],
                                      "decoder_positions": pos[:, sl]},
                                     decode=True, mutable=["cache"])
    out, v = step(init["cache"], slice(0, 3))
    outs = [out]
    for t in range(3, 6):
      out, v = step(v["cache"], slice(t, t + 1))
      outs.append(out)
  for field in ("logits", "hidden"):  # the value heads read the hidden states
    got = jnp.concatenate([getattr(o, field) for o in outs], 1)
    np.testing.assert_allclose(got, getattr(full, field), atol=2e-5, err_msg=field)


def test_left_padded_prompt_decodes_like_unpadded():
  cfg = TINY["llama-tiny"]
  model, params = build_model(cfg), init_params(cfg, jax.random.key(5))
  toks = jnp.array([[5, 6, 7]])
  alone = model.apply({"params": params}, {"decoder_input_tokens": toks}).logits[:, -1]
  padded = {"decoder_input_tokens": jnp.array([[0, 0, 5, 6, 7]]),
            "decoder_positions": jnp.array([[0, 0, 0, 1, 2]]),
            "decoder_segment_ids": jnp.array([[0, 0, 1, 1, 1]])}
  init = model.init(jax.random.key(0), padded, decode=True)
  out, _ = model.apply({"params": params, "cache": init["cache"]}, padded, decode=True,
                       mutable=["cache"])
  np.testing.assert_allclose(out.logits[:, -1], alone, atol=1e-5)


@pytest.mark.parametrize("kw,msg", [
    (dict(kind="rnn"), "model.kind='rnn'"),
    (dict(layout="gpt2"), "model.layout='gpt2'"),
    (dict(remat="some"), "model.remat='some'"),
    (dict(dtype="float16"), "model.dtype='float16'"),
    (dict(kind="decoder", layout="llama", num_heads=4, num_kv_heads=3), "num_kv_heads=3"),
])
def test_config_errors_name_the_key(kw, msg):
  with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
    ModelConfig(**kw)


def test_unknown_preset():
  with pytest.raises(ValueError, match="model.size='t5-huge'"):
    preset("t5-huge")
