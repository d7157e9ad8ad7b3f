"""Pieces every model shares: activations by name, initialisers, the compute dtype, G's output bias."""

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


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_config):
  """The dtype of matmuls and convolutions (`model.compute_dtype`); parameters stay float32."""
  name = model_config.get("compute_dtype", "float32")
  if name not in _DTYPES:
    raise UserError(f"unknown model.compute_dtype {name!r}; choose one of {sorted(_DTYPES)}")
  return _DTYPES[name]


def kernel_init(init_scale: float, gain: float = 1.0):
  """U(-s, s) weights for `init_scale` s > 0; else truncated normal with variance gain / fan_in.

  Without batch norm the initial scale decides whether signals survive the depth: gain 2 (He) for
  layers followed by (leaky) ReLU, which halves the second moment, 1 for the output layers.
  """
  if init_scale > 0:
    return uniform_init(init_scale)
  return nn.initializers.variance_scaling(gain, "fan_in", "truncated_normal")


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
