"""Differentiable image augmentations, one example at a time, for DiffAugment and consistency regularisation.

DiffAugment (Zhao et al. 2020, `loss.augment`) augments every image D sees in training, real and
generated, in D's steps and in G's step: the operations are differentiable, so G's gradient flows
through them. Consistency regularisation (`loss.bcr_*`, gan_jax/core/regularizers.py) compares D's
output on an image with its output on an augmented copy (`loss.bcr_augment`).

A policy is a comma-separated list of operations, applied in order:

  translation  shift by integers in [-r, r] pixels on each axis, r = round(side / 8), zero fill
  cutout       zero a square of side round(side / 2) at a uniformly drawn centre (clipped at the edges)
  color        brightness + U(-0.5, 0.5); saturation: channels scaled about their mean by U(0, 2);
               contrast: pixels scaled about the image mean by U(0.5, 1.5)
  flip         a horizontal flip with probability 1/2

These are DiffAugment's operations and ratios (its reference code, for images in [-1, 1]). The
randomness is per example: example i draws from its own key (`gan_jax.core.rng` AUG_* streams of
its example key), operation j from `fold_in(key, j)`, so the augmentation of an example does not
depend on how the batch is split across devices.
"""

import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.errors import UserError

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def translate(x, key, ratio: float = TRANSLATION_RATIO):
  """[H, W, C] shifted by integers in [-r, r] on each axis (r = round(side * ratio)), zero filled."""
  h, w, _ = x.shape
  rh, rw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  kh, kw = jax.random.split(key)
  th = jax.random.randint(kh, (), -rh, rh + 1)
  tw = jax.random.randint(kw, (), -rw, rw + 1)
  padded = jnp.pad(x, ((rh, rh), (rw, rw), (0, 0)))
  # Output pixel (i, j) is input pixel (i - th, j - tw): the window starts at rh - th, rw - tw.
  return lax.dynamic_slice(padded, (rh - th, rw - tw, 0), x.shape)


def cutout(x, key, ratio: float = CUTOUT_RATIO):
  """[H, W, C] with a square of side round(side * ratio) set to 0 (DiffAugment's `rand_cutout`)."""
  h, w, _ = x.shape
  sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  kh, kw = jax.random.split(key)
  ch = jax.random.randint(kh, (), 0, h + (1 - sh % 2))
  cw = jax.random.randint(kw, (), 0, w + (1 - sw % 2))
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  inside = ((rows >= ch - sh // 2) & (rows < ch - sh // 2 + sh) &
            (cols >= cw - sw // 2) & (cols < cw - sw // 2 + sw))
  return x * (1.0 - inside[:, :, None].astype(x.dtype))


def color(x, key):
  """Brightness, saturation and contrast jitter of one [H, W, C] image (DiffAugment's `color`)."""
  kb, ks, kc = jax.random.split(key, 3)
  x = x + (jax.random.uniform(kb, ()) - 0.5)
  m = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - m) * (jax.random.uniform(ks, ()) * 2.0) + m
  m = jnp.mean(x)
  return (x - m) * (jax.random.uniform(kc, ()) + 0.5) + m


def flip(x, key):
  """[H, W, C] flipped left-right with probability 1/2."""
  return jnp.where(jax.random.uniform(key, ()) < 0.5, x[:, ::-1, :], x)


OPS = {"translation": translate, "cutout": cutout, "color": color, "flip": flip}


def parse_policy(policy: str, key_name: str = "loss.augment") -> tuple:
  """'translation,cutout' -> ('translation', 'cutout'); '' -> (); unknown names are a UserError."""
  names = tuple(p.strip() for p in str(policy or "").split(",") if p.strip())
  bad = [n for n in names if n not in OPS]
  if bad:
    raise UserError(f"unknown {key_name} operation {bad[0]!r}; choose from {sorted(OPS)}, comma-separated")
  return names


def check_images(policy: tuple, example_shape, key_name: str = "loss.augment") -> None:
  """Raises a UserError unless examples are NHWC images (augmentations need a height and width)."""
  if policy and len(example_shape) != 3:
    raise UserError(f"{key_name} augments images, but examples have shape {tuple(example_shape)}; "
                    "use image data with --config.data.layout=nhwc")


def augment_example(policy: tuple, x, key):
  """One example [H, W, C] through every operation of `policy`, operation j keyed by fold_in(key, j)."""
  for j, name in enumerate(policy):
    x = OPS[name](x, jax.random.fold_in(key, j))
  return x


def augment_batch(policy: tuple, x, keys):
  """A batch [b, H, W, C], example i augmented with keys[i]; `x` unchanged for an empty policy."""
  if not policy:
    return x
  return jax.vmap(lambda xi, ki: augment_example(policy, xi, ki))(x, keys)
