"""Optimizers as optax transformations, including the paper's SGD schedule.

`paper_sgd` is pylearn2's SGD as the reference code configures it:
  learning rate  lr_t = max(lr_0 / decay_factor**t, min_lr), decayed after every minibatch update;
  momentum       velocity v <- m_t v - lr_t g, params += v (the learning rate inside the velocity, as
                 pylearn2 does; optax's `sgd` puts it outside, which differs while lr_t changes);
  m_t            momentum_start during epoch 1, rising linearly to momentum_end at
                 `momentum_saturate_epoch` (pylearn2's `MomentumAdjustor(start=1, saturate=250)`).

Learning-rate schedules for 'adam' and 'sgd' (`optimizer.schedule`, `optimizer.warmup_steps`,
`optimizer.decay_steps`), as optax schedules of the optimizer's update count u: lr_u = lr * f(u),

  warm-up   f(u) = u / W for u < W (W = warmup_steps updates; the first update has lr 0, optax's
            convention), then 1
  linear    after the warm-up, f falls linearly from 1 to 0 at u = T (T = decay_steps, or num_steps
            when 0) and stays 0 (the linear decay to zero of e.g. BigGAN-deep and StyleGAN-ADA fine-tunes)

Steps are iterations (generator steps): D's optimizer, updated `k_disc_steps` times per iteration,
counts k updates per step, so both networks' schedules follow the same clock. With the defaults
('constant', no warm-up) the optimizer is exactly the plain one (no schedule state).

Presets (`optimizer.preset`) replace the learning rates and Adam's betas with a published setting:
  ttur      D lr 4e-4, G lr 1e-4, b1 0, b2 0.9 (Heusel et al. 2017's two time-scale update rule,
            with the Adam betas of SAGAN / BigGAN, which popularised it).
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


PRESETS = {"ttur": {"d_lr": 4e-4, "g_lr": 1e-4, "b1": 0.0, "b2": 0.9}}
SCHEDULES = ("constant", "linear")


def preset_values(opt_config) -> dict:
  """{key: value} that `optimizer.preset` sets ({} without a preset)."""
  name = opt_config.get("preset", "") or ""
  if not name:
    return {}
  if name not in PRESETS:
    raise UserError(f"unknown optimizer.preset {name!r}; choose '' or one of {sorted(PRESETS)}")
  return dict(PRESETS[name])


def lr_factor(opt_config, updates_per_step: int = 1, num_steps: int = 0):
  """The schedule f(update count) in [0, 1] that multiplies the learning rate, or None (constant)."""
  schedule = opt_config.get("schedule", "constant")
  warmup = int(opt_config.get("warmup_steps", 0))
  if schedule not in SCHEDULES:
    raise UserError(f"unknown optimizer.schedule {schedule!r}; choose one of {list(SCHEDULES)}")
  if warmup < 0:
    raise UserError(f"optimizer.warmup_steps must be >= 0, got {warmup}")
  if schedule == "constant" and not warmup:
    return None
  if opt_config.name == "paper_sgd":
    raise UserError("optimizer.schedule and optimizer.warmup_steps apply to 'adam' and 'sgd'; "
                    "'paper_sgd' has its own decay (optimizer.decay_factor)")
  w = warmup * updates_per_step
  parts, bounds = ([optax.linear_schedule(0.0, 1.0, w)], [w]) if w else ([], [])
  if schedule == "linear":
    total = int(opt_config.get("decay_steps", 0) or num_steps) * updates_per_step
    if total <= w:
      raise UserError(f"optimizer.schedule='linear' decays to 0 at step {total // updates_per_step} "
                      f"(decay_steps, or num_steps), which must come after the {warmup} warm-up steps")
    parts.append(optax.linear_schedule(1.0, 0.0, total - w))
  else:
    parts.append(optax.constant_schedule(1.0))
  return parts[0] if len(parts) == 1 else optax.join_schedules(parts, bounds)


def build_optimizer(opt_config, lr: float, updates_per_epoch: int, updates_per_step: int = 1,
                    num_steps: int = 0) -> optax.GradientTransformation:
  """The optimizer named by `opt_config.name` at learning rate `lr`.

  Args:
    opt_config: the `optimizer` part of a config.
    lr: the initial learning rate (generator and discriminator each have their own).
    updates_per_epoch: optimizer updates in one pass over the data, for epoch-based schedules.
    updates_per_step: this optimizer's updates per iteration (D: `k_disc_steps`), for `lr_factor`.
    num_steps: the run's iterations (where a 'linear' schedule without `decay_steps` reaches 0).
  """
  name = opt_config.name
  factor = lr_factor(opt_config, updates_per_step, num_steps)
  if factor is not None:
    lr = (lambda base: lambda count: base * factor(count))(lr)
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
