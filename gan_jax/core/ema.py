"""An exponential moving average (EMA) of the generator's parameters (`ema.*` config keys).

Averaging G's weights over the last few thousand updates gives visibly better samples and better
scores than the last iterate (Yazici et al. 2019; BigGAN, StudioGAN and StyleGAN sample with it).
The average lives in the training state (`GANState.ema_params`, checkpointed with it) and is updated
after every generator step:

  ema_s = d_s * ema_{s-1} + (1 - d_s) * theta_s          (theta_s: G's parameters after step s)

  d_s = 0                                        for s <= start_step (the average is a copy of G)
      = decay * min(1, (s - start_step) / warmup)  for s > start_step, with warmup > 0
      = decay                                      for s > start_step, with warmup = 0

`start_step` is BigGAN's `ema_start`: early weights, far from anything G converges to, never enter
the average. `warmup` ramps the decay up from 0 instead of switching it on, so the first steps after
the start are not dominated by one early iterate. Off (`ema.decay = 0`), the state holds no average
(`ema_params` is None: no leaves) and the update is unchanged.

Sample grids (`gan_jax.train`) and samples read back from a run (`gan_jax.run.reader`, sweep
evaluation) use the average when it is on and `ema.use_for_samples` is true.
"""

import dataclasses

import jax
import jax.numpy as jnp

from gan_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class EMA:
  """The static settings of the average (hashable: part of the static `GAN`)."""

  decay: float
  start_step: int = 0
  warmup: int = 0
  use_for_samples: bool = True


def from_config(config) -> EMA | None:
  """The `EMA` described by `config.ema`, or None when it is off (decay 0, or no `ema` section)."""
  ec = config.get("ema", None)
  if ec is None or not ec.get("decay", 0.0):
    return None
  decay = float(ec.decay)
  if not 0.0 < decay < 1.0:
    raise UserError(f"ema.decay must be in [0, 1) (0 = off), got {decay}")
  start, warmup = int(ec.get("start_step", 0)), int(ec.get("warmup", 0))
  if start < 0 or warmup < 0:
    raise UserError(f"ema.start_step and ema.warmup must be >= 0, got {start} and {warmup}")
  return EMA(decay=decay, start_step=start, warmup=warmup,
             use_for_samples=bool(ec.get("use_for_samples", True)))


def decay_at(ema: EMA, step):
  """The decay d_s of the update that produces step `step` (>= 1); see the module docstring."""
  s = jnp.asarray(step, jnp.float32) - ema.start_step
  if ema.warmup > 0:
    d = ema.decay * jnp.clip(s / ema.warmup, 0.0, 1.0)
  else:
    d = jnp.float32(ema.decay)
  return jnp.where(s > 0, d, 0.0).astype(jnp.float32)


def update(ema: EMA, ema_params, params, step):
  """The average after the generator step that produced `step`."""
  d = decay_at(ema, step)
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(p.dtype), ema_params, params)
