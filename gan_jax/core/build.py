"""Building a `GAN` from a config: the one place that reads the model, loss and optimizer keys.

`build_gan(config, data)` is what a single run trains. Vmapped runs (`gan_jax.vmap`) pass
`hparams`, the keys of `VMAPPABLE_KEYS` that differ between their members, as traced scalars: the
same function then builds each member's GAN inside the compiled program, so a member computes what
its config would train alone.
"""

import ml_collections

from gan_jax import models
from gan_jax.core import losses, optim, penalties
from gan_jax.core.gan import GAN, NOISE_TYPES, UPDATE_MODES
from gan_jax.data import pipeline
from gan_jax.errors import UserError

# Config keys whose values may differ between the members of one vmapped program: they enter the
# update as numbers, not as shapes or Python control flow.
VMAPPABLE_KEYS = ("seed", "optimizer.g_lr", "optimizer.d_lr", "optimizer.b1", "optimizer.b2",
                  "loss.d_weight", "loss.penalty_weight")


class _Overlay:
  """Read-only view of a ConfigDict with some values replaced (by traced scalars, under vmap)."""

  def __init__(self, base, overrides: dict):
    self._base, self._overrides = base, overrides

  def __getattr__(self, name):
    return self._overrides[name] if name in self._overrides else getattr(self._base, name)

  def get(self, name, default=None):
    return self._overrides[name] if name in self._overrides else self._base.get(name, default)


def check_update(config) -> None:
  """Raises a UserError for an update schedule `GAN` cannot run."""
  if config.update_mode not in UPDATE_MODES:
    raise UserError(f"unknown update_mode {config.update_mode!r}; choose one of {list(UPDATE_MODES)}")
  if config.update_mode == "simultaneous" and config.k_disc_steps != 1:
    raise UserError("update_mode='simultaneous' takes one batch per iteration; set k_disc_steps=1")
  if config.k_disc_steps < 1:
    raise UserError(f"k_disc_steps must be >= 1, got {config.k_disc_steps}")
  if config.model.noise not in NOISE_TYPES:
    raise UserError(f"unknown model.noise {config.model.noise!r}; choose one of {list(NOISE_TYPES)}")
  if config.batch_size < 1:
    raise UserError(f"batch_size must be >= 1, got {config.batch_size}")


def build_gan(config, data, hparams: dict | None = None) -> GAN:
  """The `GAN` described by `config` for `data` (a `gan_jax.data.pipeline.Data`).

  Args:
    config: the run's config.
    data: the data it trains on (its example shape, sampler and epoch length).
    hparams: {flat key: value} overriding keys of `VMAPPABLE_KEYS` other than the seed; values may
      be traced scalars.
  """
  hparams = dict(hparams or {})
  unknown = sorted(set(hparams) - set(VMAPPABLE_KEYS[1:]))
  if unknown:
    raise ValueError(f"hparams may override {VMAPPABLE_KEYS[1:]}, not {unknown}")
  check_update(config)
  spe = data.sampler.steps_per_epoch(config.batch_size)
  oc = _Overlay(config.optimizer, {k.split(".", 1)[1]: v for k, v in hparams.items()
                                   if k.startswith("optimizer.")})
  discriminator = models.build_discriminator(config.model)
  return GAN(
      generator=models.build_generator(config.model, data.example_shape),
      discriminator=discriminator,
      g_tx=optim.build_optimizer(oc, oc.g_lr, spe),
      d_tx=optim.build_optimizer(oc, oc.d_lr, spe * config.k_disc_steps),
      loss=losses.get_loss(config.loss, hparams.get("loss.d_weight")),
      sampler=data.sampler,
      batch_size=config.batch_size,
      noise=config.model.noise,
      noise_dim=config.model.noise_dim,
      k_disc_steps=config.k_disc_steps,
      update_mode=config.update_mode,
      d_dropout=models.uses_dropout(discriminator),
      penalty=penalties.check_penalty(config.loss.get("penalty", "none")),
      penalty_weight=hparams.get("loss.penalty_weight", float(config.loss.get("penalty_weight", 10.0))),
      d_spectral_norm=bool(config.model.get("d_spectral_norm", False)),
  )


def setup(config: ml_collections.ConfigDict):
  """Data, the GAN and a fresh initial state for `config` (no files written)."""
  data = pipeline.build_data(config)
  gan = build_gan(config, data)
  mean = data.mean_example if config.model.get("g_bias_from_data", True) else None
  state = gan.init(config.seed, mean)
  return data, gan, state
