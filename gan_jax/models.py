"""Generators and discriminators as Flax Linen modules.

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
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.errors import UserError

_ACTIVATIONS = {
    "relu": nn.relu,
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "linear": lambda x: x,
}


def activation(name: str):
  """Returns the activation function called `name`."""
  if name not in _ACTIVATIONS:
    raise UserError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


def uniform_init(scale: float):
  """U(-scale, scale) weights, as pylearn2's `irange`; scale 0 falls back to LeCun normal."""
  if scale <= 0:
    return nn.initializers.lecun_normal()

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


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


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_config):
  """The dtype of matmuls and convolutions (`model.compute_dtype`); parameters stay float32."""
  name = model_config.get("compute_dtype", "float32")
  if name not in _DTYPES:
    raise UserError(f"unknown model.compute_dtype {name!r}; choose one of {sorted(_DTYPES)}")
  return _DTYPES[name]


def _mlp_generator(mc, example_shape):
  return MLPGenerator(hidden=tuple(mc.g_hidden), output_shape=tuple(example_shape),
                      hidden_activation=mc.g_activation, output_activation=mc.g_output,
                      init_scale=mc.g_init_scale, dtype=compute_dtype(mc))


def _maxout_discriminator(mc):
  return MaxoutDiscriminator(units=tuple(mc.d_hidden), pieces=mc.d_pieces, input_keep=mc.d_input_keep,
                             hidden_keep=mc.d_hidden_keep, init_scale=mc.d_init_scale,
                             dtype=compute_dtype(mc))


def _mlp_discriminator(mc):
  return MLPDiscriminator(hidden=tuple(mc.d_hidden), hidden_activation=mc.d_activation,
                          dropout_keep=mc.d_hidden_keep, init_scale=mc.d_init_scale,
                          dtype=compute_dtype(mc))


# Registries: `model.generator` / `model.discriminator` name -> builder.
# A generator builder takes (model_config, example_shape); a discriminator builder (model_config).
def _dcgan_generator(mc, example_shape):
  from gan_jax import conv_models  # pylint: disable=g-import-not-at-top  (conv_models imports this module)
  return conv_models.build_generator(mc, example_shape)


def _dcgan_discriminator(mc):
  from gan_jax import conv_models  # pylint: disable=g-import-not-at-top
  return conv_models.build_discriminator(mc)


GENERATORS = {"mlp": _mlp_generator, "dcgan": _dcgan_generator}
DISCRIMINATORS = {"maxout": _maxout_discriminator, "mlp": _mlp_discriminator, "dcgan": _dcgan_discriminator}


def build_generator(model_config, example_shape) -> nn.Module:
  """Builds the generator named by `model_config.generator` for examples of `example_shape`."""
  name = model_config.generator
  if name not in GENERATORS:
    raise UserError(f"unknown model.generator {name!r}; choose one of {sorted(GENERATORS)}")
  return GENERATORS[name](model_config, example_shape)


def build_discriminator(model_config) -> nn.Module:
  """Builds the discriminator named by `model_config.discriminator`."""
  name = model_config.discriminator
  if name not in DISCRIMINATORS:
    raise UserError(f"unknown model.discriminator {name!r}; choose one of {sorted(DISCRIMINATORS)}")
  return DISCRIMINATORS[name](model_config)


def uses_dropout(discriminator: nn.Module) -> bool:
  """Whether the discriminator draws dropout masks in training mode."""
  if isinstance(discriminator, MaxoutDiscriminator):
    return discriminator.input_keep < 1.0 or discriminator.hidden_keep < 1.0
  return getattr(discriminator, "dropout_keep", 1.0) < 1.0


def output_bias_for_data(mean_example: np.ndarray, output_activation: str, eps: float = 1e-7):
  """The generator output bias that makes G's initial output the data mean (pylearn2's
  `init_bias_target_marginals`): the inverse of the output activation at the mean pixel values."""
  m = np.asarray(mean_example, np.float64).reshape(-1)
  if output_activation == "sigmoid":
    m = np.clip(m, eps, 1 - eps)
    return np.log(m / (1 - m)).astype(np.float32)
  if output_activation == "tanh":
    return np.arctanh(np.clip(m, -1 + eps, 1 - eps)).astype(np.float32)
  return m.astype(np.float32)


# The paper's CIFAR-10 models (gan_jax/models_cifar.py), imported on use as they import this module.
def _cifar_builder(name):
  def build(*args):
    from gan_jax import models_cifar  # pylint: disable=g-import-not-at-top
    return getattr(models_cifar, name)(*args)
  return build


GENERATORS["cifar_mlp"] = _cifar_builder("build_mlp_generator")
GENERATORS["cifar_deconv"] = _cifar_builder("build_deconv_generator")
DISCRIMINATORS["conv_maxout"] = _cifar_builder("build_conv_maxout_discriminator")
