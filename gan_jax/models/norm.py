"""Batch normalisation for G and D, plain or class-conditional, with statistics over the global batch.

`BatchNorm` wraps `flax.linen.BatchNorm` (statistics over every axis but the channels):

  training   (`train=True`) normalises with the batch's mean and variance and updates the running
             averages in the `batch_stats` collection: new = momentum * old + (1 - momentum) * batch
             (`model.bn_momentum`, default 0.9: PyTorch's momentum 0.1, which the published DCGAN and
             SNGAN code used);
  evaluation (`train=False`) normalises with the running averages.

Global statistics: under `jax.pmap` every module that has batch norm is cloned with `bn_axis_name`
set to the pmap axis (gan_jax/core/nets.py), and Flax averages the per-device means and mean squares
over it, so each device normalises with the statistics of the whole global batch. Under `jax.jit`
with a Mesh the batch is already one (sharded) array, and on one device it is the whole batch: the
three routes compute the same numbers, and results do not depend on the device count. Under
`jax.vmap` (gan_jax/vmap.py) each member has its own batch and its own statistics.

Conditional batch norm (`num_classes > 0`; de Vries et al. 2017, Miyato & Koyama 2018): the
normalisation has no shared scale and offset; each class has its own, looked up from embeddings
initialised to 1 and 0.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.errors import UserError

NORMS = ("none", "batch")
EPSILON = 1e-5


def check_norm(name: str, key: str) -> str:
  """Returns `name` if it is a known normalisation, else raises a UserError naming `key`."""
  if name not in NORMS:
    raise UserError(f"unknown {key} {name!r}; choose one of {list(NORMS)}")
  return name


def scale_init(std: float):
  """Ones, or N(1, std^2) for std > 0 (the DCGAN reference code's BN weights)."""
  if std <= 0:
    return nn.initializers.ones

  def init(key, shape, dtype=jnp.float32):
    return 1.0 + std * jax.random.normal(key, shape, dtype)

  return init


class BatchNorm(nn.Module):
  """Batch norm over all axes but the last; class-conditional scale and offset when `num_classes`."""

  momentum: float = 0.9
  axis_name: str | None = None
  num_classes: int = 0
  scale_init_std: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool, labels=None):
    conditional = self.num_classes > 0
    h = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=EPSILON,
                     use_bias=not conditional, use_scale=not conditional,
                     scale_init=scale_init(self.scale_init_std), axis_name=self.axis_name,
                     name="bn")(x.astype(jnp.float32))
    if not conditional:
      return h
    if labels is None:
      raise UserError("conditional batch norm needs labels (model.num_classes > 0)")
    c = x.shape[-1]
    gain = nn.Embed(self.num_classes, c, embedding_init=scale_init(self.scale_init_std), name="gain")(labels)
    bias = nn.Embed(self.num_classes, c, embedding_init=nn.initializers.zeros, name="bias")(labels)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
    return h * gain.reshape(shape) + bias.reshape(shape)
