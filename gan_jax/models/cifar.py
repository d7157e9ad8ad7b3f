"""The paper's CIFAR-10 generators and convolutional discriminator (reference code's yaml files).

  generator 'cifar_mlp'      z(100) -> 8000 ReLU -> 8000 sigmoid -> 3072 linear
                             [cifar10_fully_connected.yaml]; its output layer starts with weights
                             U(-0.5, 0.5) (`model.g_output_init_scale`), the others U(-0.05, 0.05).
  generator 'cifar_deconv'   z(100) -> 8000 ReLU -> 8000 sigmoid -> reshape to 80 x 10 x 10 ->
                             transposed convolution 5x5, stride 3, 3 channels, linear, with one bias
                             per output pixel and channel (`tied_b: 0`) [cifar10_convolutional.yaml].
                             With no padding ('pad_out: 0') the size is (10 - 1) * 3 + 5 = 32: no
                             cropping is needed. The 10 x 10 grid follows from the image size, kernel
                             and stride; the channel count is the last hidden width / 100.
  discriminator 'conv_maxout' three convolutional maxout layers, each a convolution to
                             channels x pieces maps, the max over pieces, then max-pooling:
                               32 ch x 2 pieces, 8x8, pad 4 -> 33x33, pool 4 stride 2 -> 16x16
                               32 ch x 2 pieces, 8x8, pad 3 -> 15x15, pool 4 stride 2 -> 7x7
                               192 ch x 2 pieces, 5x5, pad 3 -> 9x9,  pool 2 stride 2 -> 5x5
                             then maxout 500 units x 5 pieces on the 4800 features, then one logit.
                             Pooling windows may run past the edge, as cuda-convnet's did (output
                             ceil((n - window) / stride) + 1): the yaml's `partial_sum` values 33 and
                             15 are exactly the detector sizes this gives. Weights U(-0.005, 0.005),
                             one bias per channel (`tied_b: 1`); dropout as the MNIST discriminator:
                             keep 0.8 on the pixels and 0.5 on the input of every later layer.
The fully connected discriminator is the MNIST one with wider layers ('maxout', 1600 x 5 twice).
"""

from collections.abc import Sequence
import math

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from gan_jax.models import layers
from gan_jax.errors import UserError


class CifarMLPGenerator(nn.Module):
  """Fully connected generator with one activation per hidden layer and a linear output."""

  output_shape: Sequence[int]
  hidden: Sequence[int] = (8000, 8000)
  hidden_activations: Sequence[str] = ("relu", "sigmoid")
  init_scale: float = 0.05
  output_init_scale: float = 0.5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    h = _hidden_stack(z, self.hidden, self.hidden_activations, self.init_scale, self.dtype)
    out = nn.Dense(math.prod(self.output_shape), kernel_init=layers.uniform_init(self.output_init_scale),
                   dtype=self.dtype, name="linear_out")(h)
    return out.astype(jnp.float32).reshape(z.shape[:-1] + tuple(self.output_shape))


class CifarDeconvGenerator(nn.Module):
  """Hidden layers, the last one reshaped to an image grid, then one transposed convolution."""

  output_shape: Sequence[int]  # (H, W, C)
  hidden: Sequence[int] = (8000, 8000)
  hidden_activations: Sequence[str] = ("relu", "sigmoid")
  kernel: int = 5
  stride: int = 3
  init_scale: float = 0.05
  dtype: jnp.dtype = jnp.float32

  def grid(self) -> tuple[int, int, int]:
    """(rows, cols, channels) of the reshaped last hidden layer."""
    if len(self.output_shape) != 3:
      raise UserError(f"the 'cifar_deconv' generator makes NHWC images, got examples of shape "
                      f"{tuple(self.output_shape)}; set --config.data.layout=nhwc")
    h, w, _ = self.output_shape
    if (h - self.kernel) % self.stride or (w - self.kernel) % self.stride:
      raise UserError(f"a {self.kernel}x{self.kernel} stride-{self.stride} transposed convolution "
                      f"cannot make {h}x{w} images; (size - kernel) must divide by the stride")
    rows, cols = (h - self.kernel) // self.stride + 1, (w - self.kernel) // self.stride + 1
    if self.hidden[-1] % (rows * cols):
      raise UserError(f"the last hidden width {self.hidden[-1]} must be a multiple of "
                      f"{rows}x{cols} = {rows * cols} to be reshaped to a {rows}x{cols} grid")
    return rows, cols, self.hidden[-1] // (rows * cols)

  @nn.compact
  def __call__(self, z):
    rows, cols, channels = self.grid()
    h = _hidden_stack(z, self.hidden, self.hidden_activations, self.init_scale, self.dtype)
    # pylearn2 laid the units out channel-major ('c', 0, 1): unit c*rows*cols + i*cols + j.
    h = h.reshape(-1, channels, rows, cols).transpose(0, 2, 3, 1)
    x = nn.ConvTranspose(self.output_shape[-1], (self.kernel, self.kernel), (self.stride, self.stride),
                         padding="VALID", use_bias=False, kernel_init=layers.uniform_init(self.init_scale),
                         dtype=self.dtype, name="deconv")(h)
    bias = self.param("pixel_bias", nn.initializers.zeros, tuple(self.output_shape))
    return (x.astype(jnp.float32) + bias).reshape(z.shape[:-1] + tuple(self.output_shape))


def _hidden_stack(z, widths, activations, init_scale, dtype):
  if len(activations) != len(widths):
    raise UserError(f"model.g_hidden_activations {tuple(activations)} needs one activation per "
                    f"hidden layer of model.g_hidden {tuple(widths)}")
  h = z
  for i, (width, act) in enumerate(zip(widths, activations)):
    h = nn.Dense(width, kernel_init=layers.uniform_init(init_scale), dtype=dtype, name=f"hidden_{i}")(h)
    h = layers.activation(act)(h)
  return h


def max_pool_ceil(x, window: int, stride: int):
  """NHWC max-pooling whose last window may run past the edge (cuda-convnet's output size)."""
  out = [-(-(n - window) // stride) + 1 for n in x.shape[1:3]]
  pads = [(0, 0)] + [(0, (o - 1) * stride + window - n) for o, n in zip(out, x.shape[1:3])] + [(0, 0)]
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), pads)


class ConvMaxoutDiscriminator(nn.Module):
  """Convolutional maxout layers with max-pooling, a dense maxout layer, one logit; pylearn2 dropout."""

  channels: Sequence[int] = (32, 32, 192)
  conv_pieces: int = 2
  kernels: Sequence[int] = (8, 8, 5)
  pads: Sequence[int] = (4, 3, 3)
  pool_shapes: Sequence[int] = (4, 4, 2)
  pool_strides: Sequence[int] = (2, 2, 2)
  units: Sequence[int] = (500,)
  pieces: int = 5
  input_keep: float = 0.8
  hidden_keep: float = 0.5
  init_scale: float = 0.005
  dtype: jnp.dtype = jnp.float32

  @property
  def dropout_keep(self) -> float:
    """The smallest keep probability (`gan_jax.models.uses_dropout` reads it)."""
    return min(self.input_keep, self.hidden_keep)

  @nn.compact
  def __call__(self, x, train: bool = False):
    lengths = {len(self.channels), len(self.kernels), len(self.pads), len(self.pool_shapes),
               len(self.pool_strides)}
    if len(lengths) != 1:
      raise UserError("model.d_conv_channels, d_conv_kernels, d_conv_pads, d_pool_shapes and "
                      "d_pool_strides need one entry per convolutional layer")
    if x.ndim != 4:
      raise UserError(f"the 'conv_maxout' discriminator reads NHWC images, got examples of shape "
                      f"{x.shape[1:]}; set --config.data.layout=nhwc")
    init = layers.uniform_init(self.init_scale)
    keep = self.input_keep
    h = x
    for i, (ch, k, p, ps, st) in enumerate(zip(self.channels, self.kernels, self.pads,
                                               self.pool_shapes, self.pool_strides)):
      h = nn.Dropout(rate=1.0 - keep, deterministic=not train)(h)
      h = nn.Conv(ch * self.conv_pieces, (k, k), padding=[(p, p), (p, p)], kernel_init=init,
                  dtype=self.dtype, name=f"conv_maxout_{i}")(h)
      h = h.reshape(h.shape[:-1] + (ch, self.conv_pieces)).max(axis=-1)
      h = max_pool_ceil(h, ps, st)
      keep = self.hidden_keep
    h = h.reshape(h.shape[0], -1)
    for i, width in enumerate(self.units):
      h = nn.Dropout(rate=1.0 - keep, deterministic=not train)(h)
      h = nn.Dense(width * self.pieces, kernel_init=init, dtype=self.dtype, name=f"maxout_{i}")(h)
      h = h.reshape(h.shape[0], width, self.pieces).max(axis=-1)
    h = nn.Dropout(rate=1.0 - keep, deterministic=not train)(h)
    return nn.Dense(1, kernel_init=init, dtype=self.dtype, name="logit")(h)[:, 0].astype(jnp.float32)


def build_mlp_generator(mc, example_shape) -> nn.Module:
  """'cifar_mlp' from the model config."""
  return CifarMLPGenerator(output_shape=tuple(example_shape), hidden=tuple(mc.g_hidden),
                           hidden_activations=tuple(mc.g_hidden_activations),
                           init_scale=mc.g_init_scale,
                           output_init_scale=mc.g_output_init_scale or mc.g_init_scale,
                           dtype=layers.compute_dtype(mc))


def build_deconv_generator(mc, example_shape) -> nn.Module:
  """'cifar_deconv' from the model config (checks that the geometry gives the image size)."""
  g = CifarDeconvGenerator(output_shape=tuple(example_shape), hidden=tuple(mc.g_hidden),
                           hidden_activations=tuple(mc.g_hidden_activations),
                           kernel=mc.g_deconv_kernel, stride=mc.g_deconv_stride,
                           init_scale=mc.g_init_scale, dtype=layers.compute_dtype(mc))
  g.grid()
  return g


def build_conv_maxout_discriminator(mc) -> nn.Module:
  """'conv_maxout' from the model config."""
  return ConvMaxoutDiscriminator(
      channels=tuple(mc.d_conv_channels), conv_pieces=mc.d_conv_pieces, kernels=tuple(mc.d_conv_kernels),
      pads=tuple(mc.d_conv_pads), pool_shapes=tuple(mc.d_pool_shapes), pool_strides=tuple(mc.d_pool_strides),
      units=tuple(mc.d_hidden), pieces=mc.d_pieces, input_keep=mc.d_input_keep,
      hidden_keep=mc.d_hidden_keep, init_scale=mc.d_init_scale, dtype=layers.compute_dtype(mc))
