"""The networks' forward passes inside the update and for sampling: labels, batch norm, DiffAugment.

`GAN._update` (gan_jax/core/gan.py) draws a `Batch` per phase and runs G and D through `g_train` and
`d_train`; with every component off these are exactly `GAN.generate` and `GAN.discriminate`, so the
update computes what it always did.

Batch norm (`model.g_norm`, `model.d_norm`; gan_jax/models/norm.py): a network with batch norm is
applied to the whole batch in training mode, its running statistics in `GANState.g_batch_stats` /
`d_batch_stats`. Under pmap the module is cloned with the pmap axis as `bn_axis_name`, so its
statistics are those of the global batch. Running statistics advance only in the phase that trains
the network: D's in D's steps (first on the real batch, then on the generated one: D normalises each
with its own statistics, as the DCGAN reference code does), G's in G's step (and both in the
simultaneous update). A D with batch norm scores batches, not examples: it cannot have per-example
dropout, and gradient penalties (per-example input gradients) are refused with it.

Sampling (`GAN.generate`) with batch norm in G follows `model.sample_bn`: 'train' normalises with the
sample batch's own statistics (what the DCGAN reference code does when it draws samples), 'eval'
with the running averages.

Labels (`model.num_classes > 0`): the real examples' labels come from the data with the same
indices as the images; a generated example's label is uniform over the classes, drawn from its own
key (the LABEL stream of gan_jax/core/rng.py).
"""

from typing import Any, NamedTuple

import jax

from gan_jax import models
from gan_jax.core import augment, penalties, regularizers, rng


class Batch(NamedTuple):
  """One phase's draws; labels are None for an unconditional GAN."""

  x: Any  # real examples [b, ...]
  z: Any  # noise [b, noise_dim]
  drop_real: Any  # per-example dropout keys of D on the real / generated examples
  drop_fake: Any
  keys: Any  # the examples' own keys [b, 2] (augmentations, labels)
  y_real: Any = None  # int32 [b]
  y_fake: Any = None


class DOut(NamedTuple):
  """D's outputs on one batch."""

  logits: Any  # [b]
  classes: Any  # ACGAN's class logits [b, num_classes], else None
  seen: Any  # the input D scored (after DiffAugment)


def sample_labels(gan, keys):
  """Uniform class labels int32 [b], example i's from fold_in(keys[i], LABEL)."""
  return jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, rng.LABEL), (), 0, gan.num_classes))(keys)


def grid_labels(num_classes: int, n: int):
  """Labels of an n-sample grid with one row per class: (labels int32 [n], columns), or (None, None).

  Sample i has class i // columns, columns = ceil(n / num_classes); the last row may be short.
  """
  if num_classes <= 0:
    return None, None
  cols = -(-n // num_classes)
  return jax.numpy.minimum(jax.numpy.arange(n) // cols, num_classes - 1).astype("int32"), cols


def _labels(gan, labels) -> dict:
  return {"labels": labels} if gan.num_classes else {}


def _on_axis(module, axis_name):
  """`module`, cloned to take batch statistics over pmap axis `axis_name` when it has batch norm."""
  if axis_name is not None and models.uses_batch_norm(module):
    return module.clone(bn_axis_name=axis_name)
  return module


def g_sample(gan, g_params, z, labels=None, batch_stats=None):
  """G(z) for sampling (batch norm per `gan.sample_bn`)."""
  kw = _labels(gan, labels)
  if not gan.g_bn:
    return gan.generator.apply({"params": g_params}, z, **kw)
  variables = {"params": g_params, "batch_stats": batch_stats}
  if gan.sample_bn == "eval":
    return gan.generator.apply(variables, z, train=False, **kw)
  return gan.generator.apply(variables, z, train=True, mutable=["batch_stats"], **kw)[0]


def g_train(gan, g_params, g_stats, z, labels, axis_name):
  """G in training mode: (samples, G's running statistics after this batch)."""
  if not gan.g_bn:
    return gan.generate(g_params, z, labels), g_stats
  out, updates = _on_axis(gan.generator, axis_name).apply(
      {"params": g_params, "batch_stats": g_stats}, z, train=True, mutable=["batch_stats"], **_labels(gan, labels))
  return out, updates["batch_stats"]


def split_classes(gan, out):
  """(logits [b], class logits [b, C] or None) of D's raw output."""
  if gan.acgan_weight:
    return out[:, 0], out[:, 1:]
  return out, None


def d_apply(gan, d_params, d_stats, x, labels, drop_keys, axis_name):
  """D's raw output on `x` in training mode and its running statistics after this batch."""
  if not gan.d_bn:
    return gan.discriminate_raw(d_params, x, drop_keys, labels), d_stats
  if gan.d_spectral_norm:
    d_params = penalties.spectral_normalize(d_params)
  out, updates = _on_axis(gan.discriminator, axis_name).apply(
      {"params": d_params, "batch_stats": d_stats}, x, train=True, mutable=["batch_stats"], **_labels(gan, labels))
  return out, updates["batch_stats"]


def d_eval(gan, d_params, x, labels, batch_stats):
  """D's raw output outside training for a D with batch norm: normalised with `batch_stats` (the
  running averages), or with `x`'s own statistics when they are None."""
  if gan.d_spectral_norm:
    d_params = penalties.spectral_normalize(d_params)
  if batch_stats is None:
    return gan.discriminator.apply({"params": d_params}, x, train=True, mutable=["batch_stats"],
                                   **_labels(gan, labels))[0]
  return gan.discriminator.apply({"params": d_params, "batch_stats": batch_stats}, x, train=False,
                                 **_labels(gan, labels))


def d_train(gan, d_params, d_stats, x, labels, drop_keys, keys, aug_stream: int, axis_name):
  """D in training mode on `x` (DiffAugmented when `loss.augment` is set): (`DOut`, statistics)."""
  if gan.augment:
    aug_keys = jax.vmap(lambda k: jax.random.fold_in(k, aug_stream))(keys)
    x = augment.augment_batch(gan.augment, x, aug_keys)
  out, d_stats = d_apply(gan, d_params, d_stats, x, labels, drop_keys, axis_name)
  logits, classes = split_classes(gan, out)
  return DOut(logits, classes, x), d_stats


def has_d_extras(gan) -> bool:
  return bool(gan.bcr_real or gan.bcr_fake or gan.acgan_weight)


def d_extras(gan, d_params, d_stats, bt: Batch, real: DOut, fake: DOut, axis_name):
  """The bCR and ACGAN terms of D's loss (gan_jax/core/regularizers.py); call when `has_d_extras`."""
  total = 0.0
  for weight, out, labels, drop, stream in ((gan.bcr_real, real, bt.y_real, bt.drop_real, rng.BCR_REAL),
                                            (gan.bcr_fake, fake, bt.y_fake, bt.drop_fake, rng.BCR_FAKE)):
    if weight:
      d_fn = lambda xa, labels=labels, drop=drop: split_classes(
          gan, d_apply(gan, d_params, d_stats, xa, labels, drop, axis_name)[0])[0]
      total = total + weight * regularizers.consistency(d_fn, out.seen, out.logits, bt.keys, stream, gan.bcr_augment)
  if gan.acgan_weight:
    total = total + gan.acgan_weight * regularizers.acgan_d_loss(real.classes, bt.y_real, fake.classes, bt.y_fake)
  return total


def g_extras(gan, fake: DOut, bt: Batch):
  """ACGAN's term of G's loss (0.0 without ACGAN)."""
  if gan.acgan_weight:
    return gan.acgan_weight * regularizers.acgan_g_loss(fake.classes, bt.y_fake)
  return 0.0
