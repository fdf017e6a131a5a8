"""Blockwise attention equals the materialised kind (values and gradients) for every mask,
bias and model family feature, and never builds a [queries x keys] array."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm.models import attention as A
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


def test_auto_attends_blockwise_from_long_sequences_and_bad_names_are_refused():
  assert A.resolve("auto", A.AUTO_CHUNKED_LENGTH) == "chunked"
  assert A.resolve("auto", A.AUTO_CHUNKED_LENGTH - 1) == "xla"
  assert A.resolve("xla", 10 ** 6) == "xla"
  c = base_config()
  c.model.attention = "flash"
  with pytest.raises(ValueError, match=r"invalid choice \(config.model.attention\): expected "
                     r"one of \['auto', 'chunked', 'xla'\] vs found 'flash'"):
    validate(c, data=False)
