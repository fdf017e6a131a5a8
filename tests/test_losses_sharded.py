"""Every loss jits with the batch sharded over an 8-device mesh and matches one device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from irl_lm.losses import ilql_loss, implied_rewards, iqlearn_loss, mle_loss

BATCH, LENGTH, VOCAB = 8, 6, 16
HP = dict(tau=0.7, gamma=0.99, cql_weight=0.1, awac_weight=1.0, awac_beta=0.5)


def make_inputs():
  keys = jax.random.split(jax.random.key(0), 9)
  logits, q1, q2, tq1, tq2 = (jax.random.normal(k, (BATCH, LENGTH, VOCAB)) for k in keys[:5])
  v = jax.random.normal(keys[5], (BATCH, LENGTH))
  targets = jax.random.randint(keys[6], (BATCH, LENGTH), 0, VOCAB)
  weights = (jax.random.uniform(keys[7], (BATCH, LENGTH)) < 0.6).astype(jnp.int32)
  rewards = jax.random.normal(keys[8], (BATCH, LENGTH))
  segments = jnp.tile(jnp.array([[1, 1, 1, 2, 2, 2]]), (BATCH, 1))
  return dict(logits=logits, q1=q1, q2=q2, tq1=tq1, tq2=tq2, v=v, targets=targets,
        weights=weights, rewards=rewards, segments=segments)


LOSSES = {
  "mle": lambda d: mle_loss(d["logits"], d["targets"], d["weights"], segment_ids=d["segments"]),
  "iqlearn": lambda d: iqlearn_loss(
    d["logits"], d["targets"], d["weights"], lam=jnp.float32(0.3), gamma=1.0,
    segment_ids=d["segments"],
  ),
  "implied_rewards": lambda d: implied_rewards(
    d["logits"], d["targets"], d["weights"], gamma=0.99, segment_ids=d["segments"]
  ),
  "ilql": lambda d: ilql_loss(
    d["logits"], d["q1"], d["q2"], d["tq1"], d["tq2"], d["v"], d["targets"], d["weights"],
    d["rewards"], **HP, segment_ids=d["segments"],
  ),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sharded_jit_matches_single_device(name):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  inputs = make_inputs()
  sharded = jax.device_put(inputs, NamedSharding(mesh, PartitionSpec("data")))
  assert len(sharded["logits"].sharding.device_set) == 8
  fn = LOSSES[name]
  got = jax.jit(fn)(sharded)
  want = fn(jax.device_put(inputs, jax.devices()[0]))
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
