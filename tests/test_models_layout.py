"""The compiled forward and backward pass materialises no transposes of its own making: every
dense layer's three products read their operands in place, and attention moves only the
queries and its output between layouts, never a score-sized array (read from the HLO)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irl_lm.models import build_model, preset
from irl_lm.models.attention import dense_attention
from irl_lm.models.layers import matmul

COPY = re.compile(r"^\s*(?:ROOT )?%?\S+ = \w+\[([\d,]*)\]\{[\d,]*\} (?:copy|transpose)"
                  r"\(%?(\S+?)\)(.*)$", re.M)


def layout_copies(fn, *args) -> list[tuple[tuple[int, ...], str]]:
  """(shape, op_name) of every copy or transpose in ``fn``'s compiled (CPU) module, less
  the copies of a broadcast constant (zero gradients handed out as separate buffers)."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  out = []
  for m in COPY.finditer(text):
    if "broadcast" in m.group(2) or "constant" in m.group(2):
      continue
    name = re.search(r'op_name="([^"]*)"', m.group(3))
    out.append((tuple(int(d) for d in m.group(1).split(",") if d), name.group(1) if name else ""))
  return out


def test_matmul_gradients_need_no_copies():
  """A [batch, length, d] input through two dense layers: no copy in either pass. (The
  plain dot_general over [b, t, d] this replaced made XLA:CPU transpose four arrays.)"""
  x = jnp.ones((4, 16, 32))
  w = {"i": jnp.ones((32, 2, 24)), "o": jnp.ones((2, 24, 32))}

  def loss(w, x):
    return jnp.sum(matmul(jax.nn.relu(matmul(x, w["i"], 1)), w["o"], 2) ** 2)
  assert layout_copies(jax.grad(loss, argnums=(0, 1)), w, x) == []
  got = matmul(x, w["i"], 1)
  np.testing.assert_allclose(got, jnp.einsum("btd,dhk->bthk", x, w["i"]), rtol=1e-6)


@pytest.mark.parametrize("g", [4, 2])
def test_attention_copies_are_query_and_output_sized(g):
  """Multi-head and grouped-query: only [b, t, h, d]-sized arrays change layout."""
  b, t, h, d = 2, 32, 4, 8
  q, k, v = jnp.ones((b, t, h, d)), jnp.ones((b, g, t, d)), jnp.ones((b, g, t, d))

  def loss(q, k, v):
    return jnp.sum(dense_attention(q, k, v, None, None, 0.5) ** 2)
  sizes = {int(np.prod(shape)) for shape, _ in layout_copies(jax.grad(loss, (0, 1, 2)), q, k, v)}
  assert sizes <= {b * t * h * d}, sizes


@pytest.mark.parametrize("family", ["llama-1b", "t5-small"])
def test_model_step_copies_no_weights_or_mlp(family):
  """A whole model's loss gradient: no copy inside an MLP or a dense projection, and none
  weight-shaped (the kernels' gradients come straight out of their GEMMs)."""
  cfg = preset(family, vocab_size=64, d_model=32, d_ff=48, num_heads=4, head_dim=8,
               num_layers=2, **({"num_encoder_layers": 2} if family.startswith("t5") else
                                {"num_kv_heads": 2}))
  model = build_model(cfg)
  batch = {"decoder_input_tokens": jnp.ones((2, 16), jnp.int32)}
  if cfg.kind == "encdec":
    batch["encoder_input_tokens"] = jnp.ones((2, 16), jnp.int32)
  params = model.init(jax.random.key(0), batch)["params"]

  def loss(p):
    return jnp.sum(jax.nn.log_softmax(model.apply({"params": p}, batch).logits)[..., 0])
  copies = layout_copies(jax.grad(loss), params)
  kernels = {tuple(x.shape) for x in jax.tree.leaves(params) if x.ndim > 1}
  assert [c for c in copies if "/mlp/" in c[1] or c[0] in kernels] == []
