"""Regularisers of the discriminator: gradient penalties and spectral normalisation.

Gradient penalties (`loss.penalty`, weighted by `loss.penalty_weight`, added to D's loss only):

  wgan_gp  E (||grad_x D(x_hat)|| - 1)^2 on x_hat = e x + (1 - e) G(z), e ~ U[0, 1] per example
           (Gulrajani et al. 2017; the weight is their lambda, usually 10).
  zero_gp  E ||grad_x D(x_hat)||^2 on the same interpolates: the zero-centred penalty of
           Thanh-Tung et al. (2019).
  r1       E ||grad_x D(x)||^2 on real examples (Mescheder et al. 2018). Their regulariser is
           (gamma / 2) E ||grad D||^2, so `penalty_weight = gamma / 2`.
  dragan   E (||grad_x D(x_hat)|| - 1)^2 on x_hat = x + a * 0.5 * std(x) * u around real examples,
           u ~ U[0, 1] per pixel, a ~ U[0, 1] per example, std over the whole global batch (Kodali
           et al. 2017, their reference code's perturbation; the weight is their lambda, 10).

`loss.penalty_every = N` makes any penalty lazy (Karras et al. 2020, StyleGAN2's lazy R1): it is
computed at every N-th D update only and multiplied by N there (gan_jax/core/regularizers.py).
With a class-conditional D the penalty's D sees each example's real label.

D is the logit (before any sigmoid) and gradients are taken per example. Under dropout, example i's
penalty uses the dropout mask of its real example (the same network that example saw in the loss),
and the interpolation weight e comes from that example's own key, so penalties keep the core's
per-example randomness: the numbers do not depend on how the batch is split across devices. The
generated samples enter through `stop_gradient`: the penalty trains D, never G.

Spectral normalisation (`model.d_spectral_norm`, Miyato et al. 2018) divides every weight matrix of
D by an estimate of its largest singular value, as a transform of the parameters inside D's apply:
the optimizer updates the raw weights W, D computes with W / sigma(W), and gradients flow through
both. sigma is estimated by `SN_POWER_ITERS` power iterations from a fixed start vector on every
call, with the singular vectors held constant for the gradient (as Miyato et al.). Power iteration
approaches sigma from below, so the normalised weights have a spectral norm of 1 or slightly more:
at most 1.6% more on the worst case measured (a random 64 x 1200 matrix, whose top singular values
are close together; trained weights separate them and converge faster). Miyato et al.
instead run one iteration per step and keep the vector u in the training state; the stateless
estimate trades a few extra matrix-vector products (cheap next to a batch of examples) for nothing
new to checkpoint, vmap or shard. Convolution kernels [h, w, in, out] are normalised as the matrix
[h * w * in, out], Miyato et al.'s choice (not the exact operator norm of the convolution).
"""

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.core import rng
from gan_jax.errors import UserError

PENALTIES = ("none", "wgan_gp", "zero_gp", "r1", "dragan")
SN_POWER_ITERS = 10  # sigma within 3% even for random matrices (small spectral gap; tests/test_losses_zoo.py)



def check_penalty(name: str) -> str:
  """Returns `name` if it is a known penalty, else raises a `UserError`."""
  if name not in PENALTIES:
    raise UserError(f"unknown loss.penalty {name!r}; choose one of {list(PENALTIES)}")
  return name


def per_example_grad_sq_norm(d_fn, x, keys, labels=None):
  """||grad_x D(x_i)||^2 for every example i.

  Args:
    d_fn: `d_fn(x_batch, keys_or_None) -> logits [b]`, e.g. `functools.partial(gan.discriminate, params)`;
      with `labels`, `d_fn(x_batch, keys, labels_batch)`.
    x: examples [b, ...].
    keys: per-example dropout keys [b, 2], or None for a deterministic D.
    labels: int32 [b] class labels for a conditional D, or None.

  Returns:
    float32 [b].
  """
  if labels is not None:
    grad = jax.vmap(jax.grad(lambda xi, ki, yi: d_fn(xi[None], ki[None], yi[None])[0]))(x, keys, labels)
  elif keys is None:
    grad = jax.vmap(jax.grad(lambda xi: d_fn(xi[None], None)[0]))(x)
  else:
    grad = jax.vmap(jax.grad(lambda xi, ki: d_fn(xi[None], ki[None])[0]))(x, keys)
  return jnp.sum(jnp.square(grad.reshape(grad.shape[0], -1).astype(jnp.float32)), axis=1)


def gradient_penalty(name: str, d_fn, real, fake, keys, labels=None, pmean=None):
  """The unweighted penalty `name` (see the module docstring) on one batch.

  Args:
    name: one of `PENALTIES` other than 'none'.
    d_fn: D as a function of its input, as for `per_example_grad_sq_norm`.
    real: real examples [b, ...].
    fake: generated examples [b, ...] (gradients to G are stopped here).
    keys: per-example keys [b, 2] of the real examples (dropout masks and interpolation weights).
    labels: the real examples' labels [b] for a conditional D, or None.
    pmean: averages a local statistic over the devices sharing the batch (`lax.pmean` under pmap);
      None on one device. DRAGAN's std is taken over the global batch with it.

  Returns:
    A float32 scalar.
  """
  fake = jax.lax.stop_gradient(fake)
  if name == "r1":
    return jnp.mean(per_example_grad_sq_norm(d_fn, real, keys, labels))
  eps = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, rng.PENALTY), ()))(keys)
  eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
  if name == "dragan":
    sq = per_example_grad_sq_norm(d_fn, real + eps * dragan_perturbation(real, keys, pmean), keys, labels)
    return jnp.mean(jnp.square(jnp.sqrt(sq + 1e-12) - 1.0))
  x_hat = eps * real + (1.0 - eps) * fake
  sq = per_example_grad_sq_norm(d_fn, x_hat, keys, labels)
  if name == "wgan_gp":
    # sqrt has an infinite derivative at 0; the tiny offset keeps a flat D's gradient finite.
    return jnp.mean(jnp.square(jnp.sqrt(sq + 1e-12) - 1.0))
  if name == "zero_gp":
    return jnp.mean(sq)
  raise UserError(f"unknown loss.penalty {name!r}; choose one of {list(PENALTIES)}")


def dragan_perturbation(real, keys, pmean=None):
  """DRAGAN's delta = 0.5 * std(real) * u, u ~ U[0, 1] per pixel from each example's DRAGAN stream.

  std is over every pixel of the global batch (the mean and mean square averaged by `pmean` across
  devices), a constant for differentiation.
  """
  pmean = pmean or (lambda t: t)
  x = jax.lax.stop_gradient(real).astype(jnp.float32)
  mean, mean_sq = pmean(jnp.mean(x)), pmean(jnp.mean(jnp.square(x)))
  std = jnp.sqrt(jnp.maximum(mean_sq - jnp.square(mean), 0.0))
  u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, rng.DRAGAN), real.shape[1:]))(keys)
  return 0.5 * std * u


# ---------------------------------------------------------------------------- spectral normalisation
def _start_vector(n: int) -> np.ndarray:
  # A fixed, dense start vector: unlikely to be orthogonal to the top singular vector.
  v = np.random.RandomState(n).normal(size=n).astype(np.float32)
  return v / np.linalg.norm(v)


def spectral_norm_estimate(w, iters: int = SN_POWER_ITERS):
  """Largest singular value of `w` reshaped to [-1, w.shape[-1]], by power iteration.

  The singular vectors are constants for differentiation, so d sigma / d W = u v^T.
  """
  m = w.reshape(-1, w.shape[-1]).astype(jnp.float32)
  v = jnp.asarray(_start_vector(m.shape[1]))

  def body(_, v):
    u = m @ v
    u = u / (jnp.linalg.norm(u) + 1e-12)
    v = m.T @ u
    return v / (jnp.linalg.norm(v) + 1e-12)

  v = jax.lax.stop_gradient(jax.lax.fori_loop(0, iters, body, v))
  u = jax.lax.stop_gradient(m @ v)
  u = u / (jnp.linalg.norm(u) + 1e-12)
  return u @ (m @ v)


def spectral_normalize(params, iters: int = SN_POWER_ITERS):
  """`params` with every kernel of rank >= 2 divided by its estimated spectral norm (biases kept)."""

  def one(path, leaf):
    name = getattr(path[-1], "key", None)
    if name != "kernel" or leaf.ndim < 2:
      return leaf
    sigma = spectral_norm_estimate(leaf, iters)
    return (leaf / jnp.maximum(sigma, 1e-12)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(one, params)
