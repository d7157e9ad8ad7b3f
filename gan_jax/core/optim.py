"""Optimizers as optax transformations, including the paper's SGD schedule.

`paper_sgd` is pylearn2's SGD as the reference code configures it:
  learning rate  lr_t = max(lr_0 / decay_factor**t, min_lr), decayed after every minibatch update;
  momentum       velocity v <- m_t v - lr_t g, params += v (the learning rate inside the velocity, as
                 pylearn2 does; optax's `sgd` puts it outside, which differs while lr_t changes);
  m_t            momentum_start during epoch 1, rising linearly to momentum_end at
                 `momentum_saturate_epoch` (pylearn2's `MomentumAdjustor(start=1, saturate=250)`).
"""

import math

import jax.numpy as jnp
import optax

from gan_jax.errors import UserError


def paper_lr_schedule(lr, decay_factor, min_lr):
  """lr / decay_factor**t, floored at min_lr (pylearn2's `ExponentialDecay`).

  Computed as lr * exp(-t log(decay_factor)) with the log taken in float64: 1.000004 itself is not
  representable in float32 (it rounds to 1.0000039), and its powers would drift by 0.5% at t = 10^5.
  """
  log_decay = math.log(decay_factor)

  def schedule(count):
    return jnp.maximum(lr * jnp.exp(-log_decay * count.astype(jnp.float32)), min_lr)

  return schedule


def paper_momentum_schedule(start, end, saturate_epoch, updates_per_epoch):
  """Momentum `start` in epoch 1, linear to `end` at epoch `saturate_epoch`, then `end`."""

  def schedule(count):
    epoch = count // updates_per_epoch + 1
    alpha = jnp.clip((epoch - 1) / max(saturate_epoch - 1, 1), 0.0, 1.0)
    return start + (end - start) * alpha

  return schedule


def _scale_by_momentum_schedule(momentum) -> optax.GradientTransformation:
  """v <- m(count) v + u, returning v: heavy-ball momentum on already-scaled updates."""

  def init(params):
    return (jnp.zeros([], jnp.int32), optax.tree.zeros_like(params))

  def update(updates, state, params=None):
    del params
    count, velocity = state
    m = momentum(count)
    velocity = optax.tree.add_scale(updates, m, velocity)
    return velocity, (optax.safe_increment(count), velocity)

  return optax.GradientTransformation(init, update)


def build_optimizer(opt_config, lr: float, updates_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer named by `opt_config.name` at learning rate `lr`.

  Args:
    opt_config: the `optimizer` part of a config.
    lr: the initial learning rate (generator and discriminator each have their own).
    updates_per_epoch: optimizer updates in one pass over the data, for epoch-based schedules.
  """
  name = opt_config.name
  if name == "paper_sgd":
    lr_fn = paper_lr_schedule(lr, opt_config.decay_factor, opt_config.min_lr)
    momentum_fn = paper_momentum_schedule(
        opt_config.momentum_start, opt_config.momentum_end,
        opt_config.momentum_saturate_epoch, updates_per_epoch)
    return optax.chain(
        optax.scale_by_schedule(lambda count: -lr_fn(count)),
        _scale_by_momentum_schedule(momentum_fn),
    )
  if name == "sgd":
    return optax.sgd(lr, momentum=opt_config.momentum or None)
  if name == "adam":
    return optax.adam(lr, b1=opt_config.b1, b2=opt_config.b2)
  raise UserError(f"unknown optimizer.name {name!r}; choose one of ['adam', 'paper_sgd', 'sgd']")
