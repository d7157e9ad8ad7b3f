"""The paper's fully connected models: the MNIST generator and maxout discriminator, and MLPs for toy data.

Every module is a pure function of an explicit parameter pytree (`init`/`apply`). Modules take a
batch of examples with a leading batch axis. Discriminators return one logit per example; the sigmoid
is applied by the losses, so every loss is computed stably from logits.

The paper's MNIST pair (Goodfellow et al. 2014, reference `mnist.yaml`):
  generator      z(100) -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid, weights U(-0.05, 0.05), output bias
                 set to the logit of the training data's mean pixel values (`output_bias_for_data`).
  discriminator  maxout 240x5 -> maxout 240x5 -> 1 logit, weights U(-0.005, 0.005), dropout with keep
                 probability 0.8 on the input pixels and 0.5 on the input of every later layer.
"""

from collections.abc import Sequence
import math

import flax.linen as nn
import jax.numpy as jnp

from gan_jax.models.layers import activation, compute_dtype, uniform_init


class MLPGenerator(nn.Module):
  """Fully connected generator: noise -> hidden layers -> an example of `output_shape`."""

  hidden: Sequence[int]
  output_shape: Sequence[int]
  hidden_activation: str = "relu"
  output_activation: str = "sigmoid"
  init_scale: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    init = uniform_init(self.init_scale)
    h = z
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, kernel_init=init, dtype=self.dtype, name=f"hidden_{i}")(h)
      h = activation(self.hidden_activation)(h)
    out = nn.Dense(math.prod(self.output_shape), kernel_init=init, dtype=self.dtype, name="output")(h)
    out = activation(self.output_activation)(out.astype(jnp.float32))
    return out.reshape(z.shape[:-1] + tuple(self.output_shape))


class MaxoutDiscriminator(nn.Module):
  """Maxout network with the paper's dropout: hidden maxout layers, then one logit.

  Dropout is inverted (kept units are scaled by 1/keep), applied to the input of every layer, with
  `input_keep` on the pixels and `hidden_keep` on later layers, as pylearn2's `Dropout` cost does.
  """

  units: Sequence[int] = (240, 240)
  pieces: int = 5
  input_keep: float = 0.8
  hidden_keep: float = 0.5
  init_scale: float = 0.005
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    init = uniform_init(self.init_scale)
    h = x.reshape(x.shape[0], -1)
    keep = self.input_keep
    for i, width in enumerate(self.units):
      h = nn.Dropout(rate=1.0 - keep, deterministic=not train)(h)
      h = nn.Dense(width * self.pieces, kernel_init=init, dtype=self.dtype, name=f"maxout_{i}")(h)
      h = h.reshape(h.shape[0], width, self.pieces).max(axis=-1)
      keep = self.hidden_keep
    h = nn.Dropout(rate=1.0 - keep, deterministic=not train)(h)
    logit = nn.Dense(1, kernel_init=init, dtype=self.dtype, name="logit")(h)
    return logit[:, 0].astype(jnp.float32)


class MLPDiscriminator(nn.Module):
  """Fully connected discriminator for toy data: hidden layers, then one logit."""

  hidden: Sequence[int] = (128, 128)
  hidden_activation: str = "relu"
  dropout_keep: float = 1.0
  init_scale: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    init = uniform_init(self.init_scale)
    h = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, kernel_init=init, dtype=self.dtype, name=f"hidden_{i}")(h)
      h = activation(self.hidden_activation)(h)
      h = nn.Dropout(rate=1.0 - self.dropout_keep, deterministic=not train)(h)
    return nn.Dense(1, kernel_init=init, dtype=self.dtype, name="logit")(h)[:, 0].astype(jnp.float32)


def build_generator(mc, example_shape):
  return MLPGenerator(hidden=tuple(mc.g_hidden), output_shape=tuple(example_shape),
                      hidden_activation=mc.g_activation, output_activation=mc.g_output,
                      init_scale=mc.g_init_scale, dtype=compute_dtype(mc))


def build_maxout_discriminator(mc):
  return MaxoutDiscriminator(units=tuple(mc.d_hidden), pieces=mc.d_pieces, input_keep=mc.d_input_keep,
                             hidden_keep=mc.d_hidden_keep, init_scale=mc.d_init_scale,
                             dtype=compute_dtype(mc))


def build_mlp_discriminator(mc):
  return MLPDiscriminator(hidden=tuple(mc.d_hidden), hidden_activation=mc.d_activation,
                          dropout_keep=mc.d_hidden_keep, init_scale=mc.d_init_scale,
                          dtype=compute_dtype(mc))
