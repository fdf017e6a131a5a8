"""Per-token pieces of a softmax over the vocabulary, computed in float32."""
import jax
import jax.numpy as jnp


def gather_target(values: jax.Array, targets: jax.Array) -> jax.Array:
  """values[..., targets] as [batch, length] float32 (gathered before the cast)."""
  picked = jnp.take_along_axis(values, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return picked.astype(jnp.float32)


def target_logit_and_lse(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Return (logits[..., targets], logsumexp(logits)), both [batch, length] float32.

  The max is taken in the input dtype (exact), so the float32 cast has a single consumer,
  the exp-sum, which XLA can fuse it into. The target logit is gathered before its cast.
  """
  peak = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  peak = jnp.where(jnp.isfinite(peak), peak, 0).astype(jnp.float32)
  total = jnp.sum(jnp.exp(logits.astype(jnp.float32) - peak), axis=-1)
  return gather_target(logits, targets), jnp.log(total) + peak[..., 0]


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-token cross-entropy -log softmax(logits)[targets], [batch, length] float32."""
  picked, lse = target_logit_and_lse(logits, targets)
  return lse - picked
