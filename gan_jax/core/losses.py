"""GAN losses, computed stably from discriminator logits.

With D(x) = sigmoid(l(x)): log D = -softplus(-l) and log(1 - D) = -softplus(l), so no loss ever takes
the log of a saturated sigmoid.

The value function of the paper is V(G, D) = E_x log D(x) + E_z log(1 - D(G(z))). The discriminator
maximises it, so its loss is -V. The generator either minimises E_z log(1 - D(G(z))) (`minimax`, the
game as written) or maximises E_z log D(G(z)) (`non_saturating`, the paper's Section 3 advice and what
its reference code trains).

`LOSSES` is the registry: a new loss is its functions and one entry.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gan_jax.errors import UserError


def value(real_logits, fake_logits):
  """V(G, D) = E log D(x) + E log(1 - D(G(z))), estimated on one batch."""
  return -jnp.mean(jax.nn.softplus(-real_logits)) - jnp.mean(jax.nn.softplus(fake_logits))


def d_standard(real_logits, fake_logits):
  """The discriminator's loss -V(G, D): binary cross-entropy, real labelled 1, fake 0."""
  return -value(real_logits, fake_logits)


def d_least_squares(real_logits, fake_logits):
  """Least-squares GAN (Mao et al. 2017) on the raw outputs: real -> 1, fake -> 0."""
  return 0.5 * jnp.mean((real_logits - 1.0) ** 2) + 0.5 * jnp.mean(fake_logits**2)


def d_hinge(real_logits, fake_logits):
  """Hinge loss (Lim & Ye 2017; Miyato et al. 2018)."""
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def d_wasserstein(real_logits, fake_logits):
  """Wasserstein critic loss (Arjovsky et al. 2017); pair it with a gradient penalty."""
  return jnp.mean(fake_logits) - jnp.mean(real_logits)


def g_minimax(fake_logits):
  """E log(1 - D(G(z))), minimised: the minimax game as written in Algorithm 1."""
  return -jnp.mean(jax.nn.softplus(fake_logits))


def g_non_saturating(fake_logits):
  """-E log D(G(z)): the same fixed point, strong gradients early in training."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def g_least_squares(fake_logits):
  return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)


def g_linear(fake_logits):
  """-E l(G(z)): the generator loss of the hinge and Wasserstein GANs."""
  return -jnp.mean(fake_logits)


class GANLoss(NamedTuple):
  """A named pair of losses; `d(real_logits, fake_logits)` and `g(fake_logits)` are scalars."""

  name: str
  d: Callable
  g: Callable


# name -> (discriminator loss, generator loss)
LOSSES = {
    "minimax": (d_standard, g_minimax),
    "non_saturating": (d_standard, g_non_saturating),
    "least_squares": (d_least_squares, g_least_squares),
    "hinge": (d_hinge, g_linear),
    "wasserstein": (d_wasserstein, g_linear),
}


def get_loss(loss_config, d_weight=None) -> GANLoss:
  """The loss pair named by `loss_config.name`, with D's loss scaled by `loss_config.d_weight`.

  The paper's reference code halves D's cross-entropy (`d_obj = 0.5 * (...)`), which is
  `d_weight = 0.5`. A `d_weight` argument (a traced scalar for vmapped runs) replaces the config's.
  """
  name = loss_config.name
  if name not in LOSSES:
    raise UserError(f"unknown loss.name {name!r}; choose one of {sorted(LOSSES)}")
  d_fn, g_fn = LOSSES[name]
  w = float(loss_config.get("d_weight", 1.0)) if d_weight is None else d_weight
  return GANLoss(name=name, d=lambda r, f: w * d_fn(r, f), g=g_fn)
