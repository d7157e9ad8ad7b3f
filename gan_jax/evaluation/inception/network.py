"""The FID Inception-v3 network in Flax Linen (NHWC), its input pipeline and batched feature extraction.

See gan_jax/evaluation/inception/__init__.py for what the network is and why this one.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, ClassVar, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.data import scale
from gan_jax.errors import UserError

logger = logging.getLogger(__name__)


INPUT_SIZE = 299
"""Height and width the network resizes its input to."""

FEATURE_DIM = 2048
"""Width of the pool3 features."""

NUM_CLASSES = 1008
"""Number of logits (1000 ImageNet classes and 8 unused ones, as in the 2015 TensorFlow graph)."""

BN_EPSILON = 1e-3
"""Batch-norm epsilon of every conv block (torchvision's ``BasicConv2d``)."""

_MIN_SIZE = 75  # Smallest input the network accepts without resizing (three stride-2 stages).
_DEFAULT_BATCH = 50  # pytorch-fid's default batch size.

Precision = Any  # A `jax.lax.Precision`, a string such as "highest", or None.

# ----------------------------------------------------------------------------------------------
# The network.


class BasicConv2d(nn.Module):
  """Convolution without bias, batch norm (running statistics, eps 1e-3), ReLU.

  Attributes:
    features: Output channels.
    kernel_size: ``(kh, kw)``.
    strides: ``(sh, sw)``.
    padding: Symmetric zero padding ``(ph, pw)``, as PyTorch's ``padding``.
    precision: Convolution precision.
  """

  features: int
  kernel_size: tuple[int, int] = (1, 1)
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)
  precision: Precision = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel_size, self.strides,
                padding=[(p, p) for p in self.padding], use_bias=False,
                precision=self.precision, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3_same(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool over valid pixels only (TensorFlow's; count_include_pad=False)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3_same(x: jax.Array) -> jax.Array:
  """3x3 stride-1 max pool; the padding never wins (flax pads with -inf, as PyTorch)."""
  return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def _max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
  """3x3 stride-2 max pool without padding (PyTorch's ``MaxPool2d(3, stride=2)``)."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class FIDInceptionA(nn.Module):
  """Inception block A (35x35 grid) with TensorFlow's average pool.

  Attributes:
    pool_features: Output channels of the pooling branch.
    precision: Convolution precision.
  """

  pool_features: int
  precision: Precision = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(64, name="branch1x1")(x)
    b5 = conv(48, name="branch5x5_1")(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = conv(64, name="branch3x3dbl_1")(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = conv(self.pool_features, name="branch_pool")(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35x35 -> 17x17 (torchvision's, unpatched).

  Attributes:
    precision: Convolution precision.
  """

  precision: Precision = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
    bd = conv(64, name="branch3x3dbl_1")(x)
    bd = conv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = conv(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionC(nn.Module):
  """Inception block C (17x17 grid, factorised 7x7 convolutions) with TensorFlow's average pool.

  Attributes:
    channels_7x7: Width of the factorised 7x7 branches.
    precision: Convolution precision.
  """

  channels_7x7: int
  precision: Precision = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, name="branch1x1")(x)
    b7 = conv(c7, name="branch7x7_1")(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = conv(c7, name="branch7x7dbl_1")(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = conv(192, name="branch_pool")(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17x17 -> 8x8 (torchvision's, unpatched).

  Attributes:
    precision: Convolution precision.
  """

  precision: Precision = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(192, name="branch3x3_1")(x)
    b3 = conv(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
    b7 = conv(192, name="branch7x7x3_1")(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = conv(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionE_1(nn.Module):  # pylint: disable=invalid-name  (pytorch-fid's name)
  """Inception block E (8x8 grid, expanded filter bank) with TensorFlow's average pool.

  Attributes:
    precision: Convolution precision.
  """

  precision: Precision = None
  max_pool: ClassVar[bool] = False  # FIDInceptionE_2 max-pools in its pooling branch.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(320, name="branch1x1")(x)
    b3 = conv(384, name="branch3x3_1")(x)
    b3 = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = conv(448, name="branch3x3dbl_1")(x)
    bd = conv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    pooled = _max_pool_3x3_same(x) if self.max_pool else _avg_pool_3x3_same(x)
    bp = conv(192, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionE_2(FIDInceptionE_1):  # pylint: disable=invalid-name  (pytorch-fid's name)
  """The last Inception block E: as `FIDInceptionE_1` but its pooling branch max-pools.

  The 2015 TensorFlow graph has a max pool here (the paper describes an average pool); FID
  numbers depend on it, so it is kept.
  """

  max_pool: ClassVar[bool] = True


class FIDInceptionV3(nn.Module):
  """pytorch-fid's ``fid_inception_v3`` up to pool3 and the logits, in NHWC.

  Parameter names follow the PyTorch state dict (``Mixed_5b/branch1x1/conv/kernel`` is
  ``Mixed_5b.branch1x1.conv.weight``), which keeps `params_from_state_dict` mechanical.

  Attributes:
    resize_input: Resize the input to 299x299 first (pytorch-fid's default; the standard).
    normalize_input: Map [0, 1] inputs to [-1, 1] (pytorch-fid's default; the standard).
    precision: Precision of convolutions and the final matmul. The default, "highest", keeps
      float32 arithmetic on GPUs and TPUs too, whose default precision would change the
      features by about 1e-2.
  """

  resize_input: bool = True
  normalize_input: bool = True
  precision: Precision = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps images to pool3 features and logits.

    Args:
      x: Float ``[N, H, W, 3]`` images in [0, 1] (in [-1, 1] if ``normalize_input`` is False).
        Without ``resize_input``, H and W must be at least 75.

    Returns:
      ``(pool3, logits)``: float ``[N, 2048]`` and ``[N, 1008]``.
    """
    if self.resize_input:
      x = resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
    if self.normalize_input:
      x = 2.0 * x - 1.0
    conv = functools.partial(BasicConv2d, precision=self.precision)
    x = conv(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
    x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = conv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    x = conv(80, name="Conv2d_3b_1x1")(x)
    x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    x = FIDInceptionA(32, self.precision, name="Mixed_5b")(x)
    x = FIDInceptionA(64, self.precision, name="Mixed_5c")(x)
    x = FIDInceptionA(64, self.precision, name="Mixed_5d")(x)
    x = InceptionB(self.precision, name="Mixed_6a")(x)
    x = FIDInceptionC(128, self.precision, name="Mixed_6b")(x)
    x = FIDInceptionC(160, self.precision, name="Mixed_6c")(x)
    x = FIDInceptionC(160, self.precision, name="Mixed_6d")(x)
    x = FIDInceptionC(192, self.precision, name="Mixed_6e")(x)
    x = InceptionD(self.precision, name="Mixed_7a")(x)
    x = FIDInceptionE_1(self.precision, name="Mixed_7b")(x)
    x = FIDInceptionE_2(self.precision, name="Mixed_7c")(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(NUM_CLASSES, precision=self.precision, name="fc")(pool3)
    return pool3, logits


def resize_bilinear(images: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bilinear resize matching PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)``.

  Both sample output pixel ``i`` at input coordinate ``(i + 0.5) * in / out - 0.5`` (half-pixel
  centres) and interpolate between its two neighbours, repeating the edge pixels beyond the
  border. ``jax.image.resize`` does the same only without antialiasing: its default
  ``antialias=True`` widens the kernel when downsampling, which PyTorch's bilinear mode does not.

  Args:
    images: ``[N, H, W, C]`` float images.
    size: Output ``(height, width)``.

  Returns:
    ``[N, height, width, C]`` images.
  """
  n, _, _, c = images.shape
  return jax.image.resize(images, (n, size[0], size[1], c), method="bilinear", antialias=False)

# ----------------------------------------------------------------------------------------------
# Feature extraction.


@functools.lru_cache(maxsize=None)
def _forward_fn() -> Callable:
  """The jitted forward pass: uint8 or [0, 1] float NHWC images with 1 or 3 channels."""
  model = FIDInceptionV3()

  @jax.jit
  def forward(variables, images):
    if images.dtype == jnp.uint8:
      x = scale.from_uint8(images, "unit")
    else:
      x = images.astype(jnp.float32)
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)  # Grey: the same image in each channel.
    return model.apply(variables, x)

  return forward


def extract(params: Mapping[str, Any], images, batch_size: int = _DEFAULT_BATCH,
            devices: list[jax.Device] | None = None) -> dict[str, np.ndarray]:
  """Pool3 features and logits of images, in batches, sharded over the local devices.

  Images are resized to 299x299 and normalised as pytorch-fid does. With several devices each
  batch is split over them (`jax.sharding.NamedSharding` on a one-axis mesh, parameters
  replicated); the batch size is rounded up to a multiple of the device count, and the last
  batch is padded, so every batch compiles to the same program.

  Args:
    params: Variables from `load_params` (or `init_variables`).
    images: ``[N, H, W, C]`` (or ``[N, H, W]``) images, C = 1 (grey, repeated to 3) or 3; uint8
      in [0, 255] or float in [0, 1].
    batch_size: Images per forward pass (over all devices together).
    devices: The devices to shard over; default all local devices.

  Returns:
    ``{"pool3": [N, 2048], "logits": [N, 1008], "logits_unbiased": [N, 1008]}`` float32 numpy
    arrays. ``logits_unbiased`` leaves out the final bias, as the original Inception-score code
    (Salimans et al. 2016) and torch-fidelity do; use it for Inception scores comparable with
    published ones.
  """
  images = scale.as_nhwc(images)
  if images.shape[-1] not in (1, 3):
    raise UserError(f"images must have 1 or 3 channels, got {images.shape[-1]} (shape "
                    f"{images.shape}); pass NHWC images, grey or RGB.")
  if images.dtype != np.uint8:  # uint8 stays uint8 on the way to the device (4x less traffic).
    images = scale.checked_unit(images)
  num = images.shape[0]
  if batch_size < 1:
    raise UserError(f"batch_size must be >= 1, got {batch_size}.")
  devices = list(devices) if devices is not None else jax.local_devices()
  ndev = len(devices)
  # Few distinct shapes, so few compilations: small inputs round up to a power of two; then up to
  # a multiple of the device count, so each device gets an equal slice.
  batch_size = max(1, min(int(batch_size), 1 << max(num - 1, 0).bit_length()))
  batch_size = -(-batch_size // ndev) * ndev
  if ndev > 1:
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
    data_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    params_dev = jax.device_put(params, jax.sharding.NamedSharding(mesh,
                                                                   jax.sharding.PartitionSpec()))
  else:
    data_sharding = devices[0]
    params_dev = jax.device_put(params, devices[0])
  forward = _forward_fn()
  pool3, logits = [], []
  for start in range(0, num, batch_size):
    batch = images[start:start + batch_size]
    valid = batch.shape[0]
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - valid,) + batch.shape[1:],
                                              batch.dtype)])
    p, l = forward(params_dev, jax.device_put(batch, data_sharding))
    pool3.append(np.asarray(p)[:valid])
    logits.append(np.asarray(l)[:valid])
    if (start // batch_size) % 20 == 19:
      logger.info("inception features: %d/%d images", start + valid, num)
  if num == 0:
    pool3, logits = [np.zeros((0, FEATURE_DIM), np.float32)], [np.zeros((0, NUM_CLASSES),
                                                                         np.float32)]
  pool3, logits = np.concatenate(pool3), np.concatenate(logits)
  bias = np.asarray(params["params"]["fc"]["bias"], np.float32)
  return {"pool3": pool3, "logits": logits, "logits_unbiased": logits - bias}
