"""Generators and discriminators as Flax Linen modules, and the one registry that builds them by name.

Every module is a pure function of an explicit parameter pytree (`init`/`apply`), takes a batch with
a leading batch axis, and (discriminators) returns one float32 logit per example; the losses apply
the sigmoid, so every loss is computed stably from logits.

  layers.py   activations by name, initialisers, the compute dtype, G's output bias from the data
  mlp.py      the paper's MNIST generator and maxout discriminator; MLPs for toy data
  dcgan.py    DCGAN-style convolutional pair for 28x28 / 32x32 images
  cifar.py    the paper's CIFAR-10 generators and convolutional maxout discriminator
  resnet.py   SNGAN's ResNet generator and discriminator (CIFAR-10), optional self-attention
  norm.py     batch norm (plain and class-conditional) with global-batch statistics
  attention.py  SAGAN's self-attention block
  conditional.py  class conditioning: one-hot label on z, projection and ACGAN heads of D

`model.generator` and `model.discriminator` name an entry of `GENERATORS` / `DISCRIMINATORS`; a
generator builder takes (model_config, example_shape), a discriminator builder (model_config).
"""

import flax.linen as nn

from gan_jax.errors import UserError
from gan_jax.models import cifar, conditional, dcgan, mlp, norm, resnet
from gan_jax.models.layers import compute_dtype, output_bias_for_data

__all__ = ["GENERATORS", "DISCRIMINATORS", "build_generator", "build_discriminator", "uses_dropout",
           "uses_batch_norm", "compute_dtype", "output_bias_for_data"]

GENERATORS = {
    "mlp": mlp.build_generator,
    "dcgan": dcgan.build_generator,
    "cifar_mlp": cifar.build_mlp_generator,
    "cifar_deconv": cifar.build_deconv_generator,
    "resnet": resnet.build_generator,
}
DISCRIMINATORS = {
    "maxout": mlp.build_maxout_discriminator,
    "mlp": mlp.build_mlp_discriminator,
    "dcgan": dcgan.build_discriminator,
    "conv_maxout": cifar.build_conv_maxout_discriminator,
    "resnet": resnet.build_discriminator,
}
# Models that take class labels (`model.num_classes > 0`) and batch norm (`model.g_norm`, `d_norm`).
CONDITIONAL = ("dcgan", "resnet")


def build_generator(model_config, example_shape) -> nn.Module:
  """Builds the generator named by `model_config.generator` for examples of `example_shape`."""
  name = model_config.generator
  if name not in GENERATORS:
    raise UserError(f"unknown model.generator {name!r}; choose one of {sorted(GENERATORS)}")
  _check_components(model_config, name, "generator", "g_norm")
  return GENERATORS[name](model_config, example_shape)


def build_discriminator(model_config) -> nn.Module:
  """Builds the discriminator named by `model_config.discriminator`."""
  name = model_config.discriminator
  if name not in DISCRIMINATORS:
    raise UserError(f"unknown model.discriminator {name!r}; choose one of {sorted(DISCRIMINATORS)}")
  _check_components(model_config, name, "discriminator", "d_norm")
  return DISCRIMINATORS[name](model_config)


def _check_components(mc, name: str, what: str, norm_key: str) -> None:
  # The values first, then whether this model supports them: `num_classes=-1` is a bad value, not a
  # request for a conditional model.
  conditional.check(mc)
  norm.check_norm(mc.get(norm_key, "none"), f"model.{norm_key}")
  if name in CONDITIONAL:
    return
  if mc.get("num_classes", 0):
    raise UserError(f"model.num_classes > 0 needs a class-conditional {what}: one of {list(CONDITIONAL)}, "
                    f"not {name!r}")
  if mc.get(norm_key, "none") != "none":
    raise UserError(f"model.{norm_key}={mc.get(norm_key)!r} needs a {what} with batch norm: one of "
                    f"{list(CONDITIONAL)}, not {name!r}")


def uses_batch_norm(module: nn.Module) -> bool:
  """Whether the module has batch norm (a `batch_stats` collection, mutable in training)."""
  return getattr(module, "norm", "none") == "batch"


def uses_dropout(discriminator: nn.Module) -> bool:
  """Whether the discriminator draws dropout masks in training mode."""
  if isinstance(discriminator, mlp.MaxoutDiscriminator):
    return discriminator.input_keep < 1.0 or discriminator.hidden_keep < 1.0
  return getattr(discriminator, "dropout_keep", 1.0) < 1.0
