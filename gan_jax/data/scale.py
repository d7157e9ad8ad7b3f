"""Pixel scales in one place: uint8 images to the model's float scale, and model outputs (or any
images) to [0, 1] NHWC for pictures and feature networks.

  model scale   'unit': x / 255 in [0, 1]; 'symmetric': x / 127.5 - 1 in [-1, 1]; None: the
                stored floats as they are (e.g. contrast-normalised CIFAR-10)
  unit images   float32 [N, H, W, C] in [0, 1], what plots and the metrics' networks read
"""

import numpy as np

from gan_jax.errors import UserError

SCALES = ("unit", "symmetric")
_RANGE_TOLERANCE = 0.1  # float images may overshoot [0, 1] by this much before it is an error


def from_uint8(x, scale):
  """uint8 pixels (numpy or JAX, any shape) -> float32 in `scale`; on device inside jit as well."""
  x = x.astype(np.float32)
  if scale is None:
    return x
  if scale == "unit":
    return x / 255.0
  if scale == "symmetric":
    return x / 127.5 - 1.0
  raise UserError(f"unknown pixel scale {scale!r}; use one of {', '.join(SCALES)}")


def to_unit(examples, image_shape, scale) -> np.ndarray:
  """[N, ...] model-scale examples -> [N, H, W, C] float32 in [0, 1] (contrast-normalised ones,
  `scale` None, are stretched image by image)."""
  x = np.asarray(examples, np.float32).reshape((len(examples),) + tuple(image_shape))
  if scale == "symmetric":
    x = (x + 1.0) / 2.0
  elif scale is None:
    lo = x.reshape(len(x), -1).min(1).reshape(-1, 1, 1, 1)
    hi = x.reshape(len(x), -1).max(1).reshape(-1, 1, 1, 1)
    x = (x - lo) / np.maximum(hi - lo, 1e-8)
  return np.clip(x, 0.0, 1.0)


def as_nhwc(images) -> np.ndarray:
  """Images as a numpy [N, H, W, C] array (C = 1 added to [N, H, W]), uint8 or float."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise UserError(f"images must have shape [N, H, W, C] or [N, H, W], got {images.shape}; "
                    "reshape flat images to their height and width.")
  if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
    raise UserError(f"images must be uint8 or float, got {images.dtype}; convert them first.")
  return images


def checked_unit(images) -> np.ndarray:
  """Float images checked to lie in [0, 1] (up to a small overshoot, then clipped); uint8 scaled."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return from_uint8(images, "unit")
  images = images.astype(np.float32)
  if images.size:
    if not np.isfinite(images).all():
      raise UserError("images contain NaN or inf; the generator may have diverged, check the run.")
    lo, hi = float(images.min()), float(images.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
      raise UserError(f"float images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; map "
                      "[-1, 1] images with (x + 1) / 2, or pass uint8 in [0, 255].")
  return np.clip(images, 0.0, 1.0)
