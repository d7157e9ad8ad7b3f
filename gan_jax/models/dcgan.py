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

There is no batch normalisation, unlike the original DCGAN: `gan_jax` applies D to each example on its
own (per-example dropout keys, results independent of the device count), so batch statistics do not
exist inside the update. Networks this small train without it under Adam(2e-4, b1=0.5).

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

from gan_jax.models import layers
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

  @nn.compact
  def __call__(self, z):
    h_out, w_out, c_out = self.output_shape
    n = len(self.channels)
    h0, w0 = h_out // 2**n, w_out // 2**n
    x = nn.Dense(h0 * w0 * self.channels[0], kernel_init=layers.kernel_init(self.init_scale, 2.0),
                 dtype=self.dtype, param_dtype=jnp.float32, name="project")(z)
    x = nn.relu(x.reshape(z.shape[0], h0, w0, self.channels[0]))
    widths = list(self.channels[1:]) + [c_out]
    for i, width in enumerate(widths):
      last = i == len(widths) - 1
      gain = 1.0 if last else 2.0
      if self.upsample == "transposed":
        # Stride 2: each output pixel sums only a quarter of the 4x4 kernel's taps, so the fan-in
        # that `variance_scaling` computes from the kernel shape is 4x too large.
        x = nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding="SAME", kernel_init=layers.kernel_init(
            self.init_scale, 4 * gain), dtype=self.dtype, param_dtype=jnp.float32, name=f"up_{i}")(x)
      else:
        x = upsample_2x(x, self.resize_method)
        x = nn.Conv(width, (3, 3), padding="SAME", kernel_init=layers.kernel_init(self.init_scale, gain),
                    dtype=self.dtype, param_dtype=jnp.float32, name=f"up_{i}")(x)
      if not last:
        x = nn.relu(x)
    # No layer is called `output`: GAN.init would give it the MLP's per-pixel data-mean bias, but
    # this last layer's bias is per channel.
    return layers.activation(self.output_activation)(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """Images [b, H, W, C] -> logits [b] by stride-2 convolutions with leaky ReLU and a dense layer."""

  channels: Sequence[int] = (64, 128, 256)
  init_scale: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout: the same function in training and evaluation
    if x.ndim != 4:
      raise UserError(f"the DCGAN discriminator needs images in NHWC layout, got input of shape {x.shape}; "
                      "set --config.data.layout=nhwc")
    _check_layers(x.shape[1:], len(self.channels), "discriminator")
    h = x
    for i, width in enumerate(self.channels):
      h = nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME", kernel_init=layers.kernel_init(self.init_scale, 2.0),
                  dtype=self.dtype, param_dtype=jnp.float32, name=f"conv_{i}")(h)
      h = nn.leaky_relu(h, 0.2)
    h = h.reshape(h.shape[0], -1)
    logit = nn.Dense(1, kernel_init=layers.kernel_init(self.init_scale), dtype=self.dtype, param_dtype=jnp.float32,
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
  return DCGANGenerator(output_shape=tuple(example_shape), channels=channels, upsample=mc.g_upsample,
                        resize_method=mc.g_resize, output_activation=mc.g_output,
                        init_scale=mc.g_init_scale, dtype=layers.compute_dtype(mc))


def build_discriminator(mc) -> DCGANDiscriminator:
  """The `dcgan` discriminator for `model` config `mc`."""
  if not mc.d_channels:
    raise UserError("model.d_channels is empty; give at least one width, e.g. (64, 128, 256)")
  return DCGANDiscriminator(channels=tuple(mc.d_channels), init_scale=mc.d_init_scale,
                            dtype=layers.compute_dtype(mc))


def count_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(math.prod(p.shape) for p in jax.tree.leaves(params))
