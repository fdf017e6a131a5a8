"""Blockwise attention and the fused kernels (splash in interpret mode here, cuDNN where a GPU
is at hand) equal the materialised kind, values and gradients, for every mask, bias and model
family feature they take; blockwise never builds a [queries x keys] array; what a kernel
cannot run is refused naming the feature."""
import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm.models import attention as A
from irl_lm import sharding as shd
from irl_lm.models import from_pretrained
from irl_lm.training.config import base_config, validate

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "models")
B, T, H, G, D = 2, 24, 4, 2, 8
SEG = jnp.asarray([[1] * 10 + [2] * 10 + [0] * 4, [1] * 24])  # packed + padded, and a full row
POS = jnp.asarray([list(range(10)) * 2 + [0] * 4, list(range(24))])


def table(seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(32, H)), jnp.float32)


CASES = {
    "causal, packed and padded": (A.CausalMask(SEG, SEG, POS, POS, np.int32(0)), None, 0.0),
    "sliding window and softcap": (A.CausalMask(SEG, SEG, POS, POS, np.int32(5)), None, 20.0),
    "bidirectional with T5 bias": (A.PaddingMask(SEG, SEG),
                                   A.RelativeBias(table(), POS, POS, True, 32, 128), 0.0),
    "causal with T5 bias": (A.CausalMask(SEG, SEG, POS, POS, np.int32(0)),
                            A.RelativeBias(table(), POS, POS, False, 32, 128), 0.0),
    "a mask given whole": (A.DenseMask(A.PaddingMask(SEG, SEG).full()), None, 0.0),
}


def qkv(seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(B, T, H, D)), jnp.float32),
          jnp.asarray(rng.normal(size=(B, G, T, D)), jnp.float32),
          jnp.asarray(rng.normal(size=(B, G, T, D)), jnp.float32))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("block", [8, 5, 64])  # 5: blocks of 4 (the largest divisor of 24)
def test_chunked_equals_xla_values_and_gradients(case, block):
  mask, bias, cap = CASES[case]
  q, k, v = qkv()

  def loss(q, k, v, impl):
    return jnp.sum(jnp.sin(A.attend(q, k, v, mask, bias, 0.3, cap, impl, block)))

  want = A.attend(q, k, v, mask, bias, 0.3, cap, "xla")
  got = A.attend(q, k, v, mask, bias, 0.3, cap, "chunked", block)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  for g_want, g_got in zip(jax.grad(loss, (0, 1, 2))(q, k, v, "xla"),
                           jax.grad(loss, (0, 1, 2))(q, k, v, "chunked")):
    np.testing.assert_allclose(g_got, g_want, atol=1e-5, rtol=1e-5)


def test_chunked_compiles_without_a_queries_by_keys_array():
  """Forward and backward: no intermediate of the compiled program is [.., 64, 64]."""
  t = 64
  seg = jnp.ones((1, t), jnp.int32)
  pos = jnp.arange(t)[None]
  mask = A.CausalMask(seg, seg, pos, pos, np.int32(0))
  bias = A.RelativeBias(table(), pos, pos, False, 32, 128)
  q = jnp.zeros((1, t, H, D))
  k = v = jnp.zeros((1, G, t, D))

  def loss(q, k, v, impl):
    return jnp.sum(A.attend(q, k, v, mask, bias, 0.3, 0.0, impl, 16))

  hlo = lambda impl: jax.jit(jax.grad(loss, (0, 1, 2)), static_argnums=3).lower(
      q, k, v, impl).compile().as_text()
  square = re.compile(r"\[[0-9,]*\b64,64\]")
  assert square.search(hlo("xla"))  # the check can fail: the materialised kind has them
  assert not square.search(hlo("chunked"))


@pytest.mark.parametrize("family", ["llama_gqa", "gemma2", "gpt2", "t5_v1_1", "umt5"])
def test_each_family_computes_the_same_logits_and_gradients(family):
  """Whole models (GQA, Gemma 2's sliding windows and soft-caps, GPT-2, T5's shared and
  UMT5's per-layer relative biases) with blocks of 4 against the materialised kind."""
  path = os.path.join(MODELS, family)
  model, params = from_pretrained(path)
  chunked, _ = from_pretrained(path, attention="chunked", attention_block=4)
  assert (chunked.cfg.attention, chunked.cfg.attention_block) == ("chunked", 4)
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, model.cfg.vocab_size, (2, 12)).astype(np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_segment_ids": np.ones_like(tokens)}
  batch["decoder_segment_ids"][0, 8:] = 0
  if model.cfg.kind == "encdec":
    batch["encoder_input_tokens"] = tokens[:, ::-1].copy()
  else:
    batch["decoder_positions"] = np.broadcast_to(np.arange(12), tokens.shape).copy()

  def loss(p, m):
    return jnp.mean(jnp.sin(m.apply({"params": p}, batch).logits))

  want, got = model.apply({"params": params}, batch), chunked.apply({"params": params}, batch)
  np.testing.assert_allclose(got.logits, want.logits, atol=1e-5, rtol=1e-5)
  g_want, g_got = jax.grad(loss)(params, model), jax.grad(loss)(params, chunked)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-4), g_want,
               g_got)


# Splash: lengths of 128s, a row packed with two segments and padding, and a full row.
TS = 256
SEG_S = jnp.asarray([[1] * 100 + [2] * 130 + [0] * 26, [1] * TS])
POS_S = jnp.asarray([list(range(100)) + list(range(130)) + [0] * 26, list(range(TS))])
VALID_S = (SEG_S > 0)[:, :, None, None]


@pytest.mark.parametrize("window,cap", [(0, 0.0), (40, 20.0)])
def test_splash_equals_xla_values_and_gradients(window, cap):
  """Packed, padded, grouped-query; a sliding layer (window 40) soft-capped, and a full
  layer of a model that has sliding ones (window 0 picks the causal kernel)."""
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(B, TS, H, 32)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(B, G, TS, 32)), jnp.float32) for _ in range(2))
  mask = A.CausalMask(SEG_S, SEG_S, POS_S, POS_S, jnp.int32(window))
  xla = lambda q, k, v: A.dense_attention(q, k, v, mask, None, 0.3, cap)
  splash = lambda q, k, v: A.splash_attention(q, k, v, mask, 0.3, cap, sliding_window=40,
                                              block=128, interpret=True)

  def loss(q, k, v, f):  # padding rows' outputs are never read
    return jnp.sum(jnp.where(VALID_S, jnp.sin(f(q, k, v)), 0.0))

  np.testing.assert_allclose(jnp.where(VALID_S, splash(q, k, v), 0),
                             jnp.where(VALID_S, xla(q, k, v), 0), atol=1e-5)
  for want, got in zip(jax.grad(loss, (0, 1, 2))(q, k, v, xla),
                       jax.grad(loss, (0, 1, 2))(q, k, v, splash)):
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("family,mesh_shape", [("llama_gqa", (2, 2, 2)), ("gemma2", None)])
def test_splash_runs_whole_models_and_splits_over_the_mesh(family, mesh_shape, monkeypatch):
  """Logits and gradients of whole models with ``attention='splash'`` (the kernel
  interpreted on CPU): Gemma 2's sliding and full layers with soft-caps, and a GQA model
  whose rows and heads are split over a (data, fsdp, tensor) mesh by ``shard_map``."""
  monkeypatch.setattr(A, "splash_attention",
                      functools.partial(A.splash_attention, interpret=True))
  path = os.path.join(MODELS, family)
  model, params = from_pretrained(path)
  splash, _ = from_pretrained(path, attention="splash", attention_block=128)
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, model.cfg.vocab_size, (2, 128)).astype(np.int32)
  seg = np.ones_like(tokens)
  seg[0, 100:] = 0
  batch = {"decoder_input_tokens": tokens, "decoder_segment_ids": seg,
           "decoder_positions": np.broadcast_to(np.arange(128), tokens.shape).copy()}
  valid = seg[..., None] > 0

  def loss(p, m):
    return jnp.mean(jnp.where(valid, jnp.sin(m.apply({"params": p}, batch).logits), 0.0))

  def run(m):
    out = lambda p: (m.apply({"params": p}, batch).logits, jax.grad(loss)(p, m))
    if mesh_shape is None:
      return jax.jit(out)(params)
    mesh = shd.make_mesh(mesh_shape)
    return shd.jit(out, mesh, shd.DEFAULT_RULES)(params)

  (want, g_want), (got, g_got) = run(model), run(splash)
  np.testing.assert_allclose(np.where(valid, got, 0), np.where(valid, want, 0), atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-4), g_want,
               g_got)


FEATURES = dict(platform="gpu", dtype="bfloat16", softcap=0.0, relative_bias=False,
                head_dim=64, lengths=(1024,))


@pytest.mark.parametrize("impl,change,why", [
    ("cudnn", dict(platform="cpu"), "cuDNN's fused attention needs a GPU (this run's devices "
     "are cpu)"),
    ("cudnn", dict(dtype="float32"), "cuDNN's fused attention has no float32: set "
     "model.dtype='bfloat16'"),
    ("cudnn", dict(softcap=50.0), "cuDNN's fused attention has no score soft-cap "
     "(model.attn_softcap=50.0)"),
    ("cudnn", dict(relative_bias=True), "cuDNN's fused attention would need T5's relative "
     "bias as a whole [T, T] array"),
    ("cudnn", dict(head_dim=260), "cuDNN's fused attention needs a head_dim that is a multiple "
     "of 8 up to 256 (found 260)"),
    ("cudnn", dict(lengths=(511, 64)), "cuDNN's fused attention trains on even lengths only "
     "(found (511, 64))"),
    ("splash", {}, "the splash kernel runs on TPUs only (this run's devices are gpu)"),
    ("splash", dict(platform="tpu", relative_bias=True), "the splash kernel has no additive "
     "bias, so no T5 relative-position bias"),
    ("splash", dict(platform="tpu", lengths=(1000,)), "the splash kernel needs lengths that "
     "are multiples of 128 (found (1000,))"),
])
def test_a_kernel_that_cannot_run_the_model_names_the_feature(impl, change, why):
  assert A.unsupported(impl, **{**FEATURES, **change}) == why
  assert A.unsupported(impl, **{**FEATURES, "platform": "tpu" if impl == "splash" else "gpu"}) \
      is None


def test_auto_picks_the_fused_kernel_the_backend_and_model_allow():
  assert A.resolve("auto", 1024, **FEATURES) == "cudnn"
  assert A.resolve("auto", 1024, **{**FEATURES, "platform": "tpu"}) == "splash"
  assert A.resolve("auto", 4096, **{**FEATURES, "dtype": "float32"}) == "chunked"
  assert A.resolve("auto", 1024, **{**FEATURES, "platform": "tpu", "relative_bias": True}) \
      == "xla"
  assert A.resolve("auto", 1024, **{**FEATURES, "platform": "cpu"}) == "xla"


def test_cudnn_run_on_cpu_is_refused_before_anything_compiles():
  from irl_lm.training.builders import build_run
  c = base_config()
  c.model.attention = "cudnn"
  c.model.dtype = "bfloat16"
  with pytest.raises(ValueError, match=re.escape(
      "cuDNN's fused attention needs a GPU (this run's devices are cpu) "
      "(config.model.attention='cudnn')")):
    build_run(c, with_task=False)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN's kernel needs a GPU; "
                    "checked on an H200 (docs/benchmarks.md)")
@pytest.mark.parametrize("case", ["causal, packed and padded", "a mask given whole"])
def test_cudnn_is_as_exact_as_xla_in_bfloat16(case):
  """cuDNN takes bfloat16 only: its error against float32 attention on the same inputs is
  no larger than the materialised bfloat16 kind's (values and gradients)."""
  mask, _, _ = CASES[case]
  rng = np.random.default_rng(0)
  q32 = jnp.asarray(rng.normal(size=(B, T, H, 64)), jnp.bfloat16).astype(jnp.float32)
  k32, v32 = (jnp.asarray(rng.normal(size=(B, G, T, 64)), jnp.bfloat16).astype(jnp.float32)
              for _ in range(2))
  valid = (SEG > 0)[:, :, None, None]

  def loss(q, k, v, f):
    return jnp.sum(jnp.where(valid, jnp.sin(f(q, k, v).astype(jnp.float32)), 0.0))

  fns = {"exact": lambda q, k, v: A.dense_attention(q, k, v, mask, None, 0.125),
         "xla": lambda q, k, v: A.dense_attention(q, k, v, mask, None, 0.125),
         "cudnn": lambda q, k, v: A.cudnn_attention(q, k, v, mask, 0.125)}
  out = {}
  for name, f in fns.items():
    args = (q32, k32, v32) if name == "exact" else \
        tuple(x.astype(jnp.bfloat16) for x in (q32, k32, v32))
    y = jnp.where(valid, f(*args).astype(jnp.float32), 0.0)  # padding rows are never read
    out[name] = [y, *(g.astype(jnp.float32) for g in jax.grad(loss, (0, 1, 2))(*args, f))]
  for want, xla, cudnn in zip(out["exact"], out["xla"], out["cudnn"]):
    err = lambda x: float(jnp.max(jnp.abs(x - want)))
    assert err(cudnn) <= 2 * err(xla) + 1e-3, (err(cudnn), err(xla))


def test_auto_attends_blockwise_from_long_sequences_and_bad_names_are_refused():
  assert A.resolve("auto", A.AUTO_CHUNKED_LENGTH) == "chunked"
  assert A.resolve("auto", A.AUTO_CHUNKED_LENGTH - 1) == "xla"
  assert A.resolve("xla", 10 ** 6) == "xla"
  c = base_config()
  c.model.attention = "flash"
  with pytest.raises(ValueError, match=r"invalid choice \(config.model.attention\): expected "
                     r"one of \['auto', 'chunked', 'cudnn', 'splash', 'xla'\] vs found 'flash'"):
    validate(c, data=False)
