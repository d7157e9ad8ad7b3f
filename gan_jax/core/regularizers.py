"""Regularisers and tricks of the GAN update that are not gradient penalties (gan_jax/core/penalties.py).

  bCR          balanced consistency regularisation (Zhao et al. 2020, "Improved consistency
               regularization for GANs"): D's loss gains
                 bcr_real * E (D(x) - D(T(x)))^2 + bcr_fake * E (D(G(z)) - D(T(G(z))))^2
               on logits, T a random augmentation (`loss.bcr_augment`, default flip + translation as
               in the paper), the augmented copy of example i drawn from its own key (BCR_REAL /
               BCR_FAKE streams). D(x) is the logit D gave the example in its loss; the term trains
               D only (G's samples are constants in it).
  lazy penalty `loss.penalty_every = N`: the gradient penalty at every N-th D update only, times N
               (StyleGAN2's lazy R1), counting D updates from 0: update u = step * k_disc_steps + j.
  clipping     `optimizer.d_clip = c`: every D parameter clipped to [-c, c] after each D update
               (Arjovsky et al. 2017's original WGAN, c = 0.01).
  ACGAN        `model.d_cond = 'acgan'` (Odena et al. 2017): D also predicts the class; D's loss gains
               w (CE(real) + CE(fake)) and G's loss w CE(fake), w = `loss.acgan_weight`.

Each is off by default and then adds no operation to the update.
"""

import jax
import jax.numpy as jnp
import optax
from jax import lax

from gan_jax.core import augment


def consistency(d_fn, x, logits, keys, stream: int, policy: tuple):
  """E (logits - D(T(x)))^2, the augmented copy of example i keyed by fold_in(keys[i], stream).

  Args:
    d_fn: `d_fn(x_batch) -> logits [b]` (D in training mode with the examples' own dropout masks).
    x: the examples [b, H, W, C] D scored as `logits`.
    logits: D's logits of `x` [b].
    keys: the examples' keys [b, 2].
    stream: the `gan_jax.core.rng` stream of the augmentation.
    policy: the augmentation's operations (`gan_jax.core.augment`).
  """
  aug_keys = jax.vmap(lambda k: jax.random.fold_in(k, stream))(keys)
  x_aug = augment.augment_batch(policy, jax.lax.stop_gradient(x), aug_keys)
  return jnp.mean(jnp.square(logits - d_fn(x_aug)))


def lazy(every: int, update_index, fn):
  """`fn()` when `every` is 1; else `every * fn()` at update indices divisible by `every`, 0 otherwise.

  `update_index` is a traced int32 shared by every device and vmapped member, so this is a real
  `lax.cond`: the skipped updates do not compute the penalty at all.
  """
  if every == 1:
    return fn()
  return lax.cond(update_index % every == 0, lambda: every * fn(), lambda: jnp.float32(0.0))


def clip_params(params, c: float):
  """Every parameter clipped to [-c, c]."""
  return jax.tree.map(lambda p: jnp.clip(p, -c, c), params)


def class_cross_entropy(class_logits, labels):
  """Mean cross-entropy of class logits [b, C] against int labels [b]."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits.astype(jnp.float32), labels))


def acgan_d_loss(class_real, labels_real, class_fake, labels_fake):
  """ACGAN's classification loss for D: the real and generated examples' classes."""
  return class_cross_entropy(class_real, labels_real) + class_cross_entropy(class_fake, labels_fake)


def acgan_g_loss(class_fake, labels_fake):
  """ACGAN's classification loss for G: its samples must be recognised as the asked-for class."""
  return class_cross_entropy(class_fake, labels_fake)
