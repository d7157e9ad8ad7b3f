"""DCGAN-style convolutional generator and discriminator (Radford et al. 2016) for small images.

Both modules work on NHWC images (`data.layout='nhwc'`) whose height and width are divisible by
2^(number of up/down-sampling layers): 28x28 (MNIST) with two layers, 32x32 (CIFAR-10) with three.

  generator      z -> dense to (H/2^n, W/2^n, g_channels[0]) ReLU -> n 2x upsampling layers with
                 widths g_channels[1:] then the image's channels -> tanh or sigmoid (`model.g_output`).
                 Upsampling is a 4x4 stride-2 transposed convolution (`model.g_upsample='transposed'`)
                 or a weight-free 2x resize (`model.g_resize`: 'nearest' or 'bilinear') followed by a
                 3x3 convolution ('resize_conv', which avoids checkerboard artefacts).
  discriminator  4x4 stride-2 convolutions with widths `d_channels`, each followed by leaky ReLU
                 (slope 0.2), then one dense logit.

By default there is no batch normalisation: networks this small train without it under Adam(2e-4,
b1=0.5). `model.g_norm='batch'` and `model.d_norm='batch'` give the published DCGAN (Radford et al.
2016): batch norm after every layer but G's output and D's input (none on layers followed by it have
a bias), ReLU in G, leaky ReLU 0.2 in D; `model.normal_init_std=0.02` its N(0, 0.02) weights (and
N(1, 0.02) BN scales, the reference code's). Statistics are over the global batch
(gan_jax/models/norm.py). Class conditioning (`model.num_classes > 0`): G takes the one-hot label on
z ('embed') or conditional BN ('cbn', needs g_norm='batch'); D ends in a projection or ACGAN head on
its flattened features (gan_jax/models/conditional.py).

`dtype` is the compute dtype of every convolution and matmul (`model.compute_dtype`); parameters are
created in float32 whatever it is (`param_dtype`), so optimizer state and updates stay float32. Outputs
(images and logits) are float32.

XLA:CPU runs convolutions inside a loop body (the `lax.scan` of `GAN.train_steps`) on a slow
generic path, 10x and more slower than outside one (jax-ml/jax#12868): on a CPU train conv models with
`--config.steps_per_dispatch=1`, which compiles the update without a loop (docs/PERFORMANCE.md).
"""

from collections.abc import Sequence
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import conditional, layers
from gan_jax.models.norm import BatchNorm, check_norm
from gan_jax.errors import UserError

UPSAMPLE_MODES = ("transposed", "resize_conv")
RESIZE_METHODS = ("nearest", "bilinear")


def _check_layers(example_shape, num_layers: int, what: str):
  """Raises a UserError unless `example_shape` is (H, W, C) with H, W divisible by 2^num_layers."""
  if len(example_shape) != 3:
    raise UserError(f"the DCGAN {what} needs images in NHWC layout, got examples of shape "
                    f"{tuple(example_shape)}; set --config.data.layout=nhwc")
  h, w, _ = example_shape
  f = 2**num_layers
  if num_layers < 1 or h % f or w % f:
    raise UserError(f"the DCGAN {what} halves the image size {num_layers} times, which needs height and "
                    f"width divisible by {f}, got {h}x{w}; change the number of {what} channels")


def upsample_2x(x, method: str):
  """Weight-free 2x upsampling of NHWC `x` ('nearest' repeats pixels; 'bilinear' interpolates)."""
  b, h, w, c = x.shape
  if method == "nearest":
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), method=method)


class DCGANGenerator(nn.Module):
  """Noise [b, noise_dim] -> images [b, H, W, C] by a dense layer and 2x upsampling layers."""

  output_shape: Sequence[int]  # (H, W, C)
  channels: Sequence[int] = (256, 128, 64)
  upsample: str = "transposed"
  resize_method: str = "nearest"
  output_activation: str = "tanh"
  init_scale: float = 0.0
  dtype: jnp.dtype = jnp.float32
  norm: str = "none"  # 'batch': BN after the projection and every upsampling layer but the last
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None  # set under pmap (gan_jax/core/nets.py)
  normal_init_std: float = 0.0  # > 0: N(0, std) weights, N(1, std) BN scales
  num_classes: int = 0
  cond: str = "embed"  # 'embed' | 'cbn'

  def _init(self, gain):
    if self.normal_init_std > 0:
      return nn.initializers.normal(self.normal_init_std)
    return layers.kernel_init(self.init_scale, gain)

  @nn.compact
  def __call__(self, z, labels=None, train: bool = False):
    h_out, w_out, c_out = self.output_shape
    n = len(self.channels)
    h0, w0 = h_out // 2**n, w_out // 2**n
    bn = self.norm == "batch"
    cbn = self.num_classes if self.cond == "cbn" else 0
    if self.num_classes and self.cond == "embed":
      z = conditional.concat_label(z, labels, self.num_classes)

    def act(x, name):
      if bn:
        x = BatchNorm(self.bn_momentum, self.bn_axis_name, cbn, self.normal_init_std, name=name)(x, train, labels)
      return nn.relu(x)

    x = nn.Dense(h0 * w0 * self.channels[0], kernel_init=self._init(2.0), use_bias=not bn,
                 dtype=self.dtype, param_dtype=jnp.float32, name="project")(z)
    x = act(x.reshape(z.shape[0], h0, w0, self.channels[0]), "bn_project")
    widths = list(self.channels[1:]) + [c_out]
    for i, width in enumerate(widths):
      last = i == len(widths) - 1
      gain = 1.0 if last else 2.0
      bias = last or not bn
      if self.upsample == "transposed":
        # Stride 2: each output pixel sums only a quarter of the 4x4 kernel's taps, so the fan-in
        # that `variance_scaling` computes from the kernel shape is 4x too large.
        x = nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding="SAME", kernel_init=self._init(4 * gain),
                             use_bias=bias, dtype=self.dtype, param_dtype=jnp.float32, name=f"up_{i}")(x)
      else:
        x = upsample_2x(x, self.resize_method)
        x = nn.Conv(width, (3, 3), padding="SAME", kernel_init=self._init(gain), use_bias=bias,
                    dtype=self.dtype, param_dtype=jnp.float32, name=f"up_{i}")(x)
      if not last:
        x = act(x, f"bn_{i}")
    # No layer is called `output`: GAN.init would give it the MLP's per-pixel data-mean bias, but
    # this last layer's bias is per channel.
    return layers.activation(self.output_activation)(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """Images [b, H, W, C] -> logits [b] by stride-2 convolutions with leaky ReLU and a dense layer."""

  channels: Sequence[int] = (64, 128, 256)
  init_scale: float = 0.0
  dtype: jnp.dtype = jnp.float32
  norm: str = "none"  # 'batch': BN after every convolution but the first
  bn_momentum: float = 0.9
  bn_axis_name: str | None = None
  normal_init_std: float = 0.0
  num_classes: int = 0
  cond: str = "projection"  # 'projection' | 'acgan'

  def _init(self, gain):
    if self.normal_init_std > 0:
      return nn.initializers.normal(self.normal_init_std)
    return layers.kernel_init(self.init_scale, gain)

  @nn.compact
  def __call__(self, x, train: bool = False, labels=None):
    # No dropout. Without batch norm `train` changes nothing; with it, batch statistics (train) or
    # the running averages.
    if x.ndim != 4:
      raise UserError(f"the DCGAN discriminator needs images in NHWC layout, got input of shape {x.shape}; "
                      "set --config.data.layout=nhwc")
    _check_layers(x.shape[1:], len(self.channels), "discriminator")
    h = x
    for i, width in enumerate(self.channels):
      bn = self.norm == "batch" and i > 0
      h = nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME", kernel_init=self._init(2.0), use_bias=not bn,
                  dtype=self.dtype, param_dtype=jnp.float32, name=f"conv_{i}")(h)
      if bn:
        h = BatchNorm(self.bn_momentum, self.bn_axis_name, 0, self.normal_init_std, name=f"bn_{i}")(h, train)
      h = nn.leaky_relu(h, 0.2)
    h = h.reshape(h.shape[0], -1)
    if self.num_classes:
      return conditional.d_head(h, labels, self.num_classes, self.cond, self._init(1.0), self.dtype)
    logit = nn.Dense(1, kernel_init=self._init(1.0), dtype=self.dtype, param_dtype=jnp.float32,
                     name="logit")(h)
    return logit[:, 0].astype(jnp.float32)


def build_generator(mc, example_shape) -> DCGANGenerator:
  """The `dcgan` generator for `model` config `mc` and examples of `example_shape` (H, W, C)."""
  channels = tuple(mc.g_channels)
  _check_layers(example_shape, len(channels), "generator")
  if mc.g_upsample not in UPSAMPLE_MODES:
    raise UserError(f"unknown model.g_upsample {mc.g_upsample!r}; choose one of {list(UPSAMPLE_MODES)}")
  if mc.g_resize not in RESIZE_METHODS:
    raise UserError(f"unknown model.g_resize {mc.g_resize!r}; choose one of {list(RESIZE_METHODS)}")
  layers.activation(mc.g_output)  # fail now on an unknown name, not inside the first trace
  conditional.check(mc)
  norm = check_norm(mc.get("g_norm", "none"), "model.g_norm")
  if mc.get("num_classes", 0) and mc.get("g_cond", "embed") == "cbn" and norm != "batch":
    raise UserError("model.g_cond='cbn' conditions G's batch norms; set model.g_norm='batch' or g_cond='embed'")
  return DCGANGenerator(output_shape=tuple(example_shape), channels=channels, upsample=mc.g_upsample,
                        resize_method=mc.g_resize, output_activation=mc.g_output,
                        init_scale=mc.g_init_scale, dtype=layers.compute_dtype(mc), norm=norm,
                        bn_momentum=float(mc.get("bn_momentum", 0.9)),
                        normal_init_std=float(mc.get("normal_init_std", 0.0)),
                        num_classes=int(mc.get("num_classes", 0)), cond=mc.get("g_cond", "embed"))


def build_discriminator(mc) -> DCGANDiscriminator:
  """The `dcgan` discriminator for `model` config `mc`."""
  if not mc.d_channels:
    raise UserError("model.d_channels is empty; give at least one width, e.g. (64, 128, 256)")
  conditional.check(mc)
  return DCGANDiscriminator(channels=tuple(mc.d_channels), init_scale=mc.d_init_scale,
                            dtype=layers.compute_dtype(mc), norm=check_norm(mc.get("d_norm", "none"), "model.d_norm"),
                            bn_momentum=float(mc.get("bn_momentum", 0.9)),
                            normal_init_std=float(mc.get("normal_init_std", 0.0)),
                            num_classes=int(mc.get("num_classes", 0)), cond=mc.get("d_cond", "projection"))


def count_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(math.prod(p.shape) for p in jax.tree.leaves(params))
