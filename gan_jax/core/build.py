"""Building a `GAN` from a config: the one place that reads the model, loss and optimizer keys.

`build_gan(config, data)` is what a single run trains. Vmapped runs (`gan_jax.vmap`) pass
`hparams`, the keys of `VMAPPABLE_KEYS` that differ between their members, as traced scalars: the
same function then builds each member's GAN inside the compiled program, so a member computes what
its config would train alone.
"""

import ml_collections

from gan_jax import models
from gan_jax.core import augment, ema, losses, optim, penalties
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
  preset = optim.preset_values(config.optimizer)
  clash = sorted(k for k in hparams if k.split(".", 1)[1] in preset)
  if clash:
    raise UserError(f"optimizer.preset={config.optimizer.preset!r} sets {', '.join(sorted(preset))}; "
                    f"runs cannot also vary {', '.join(clash)} (drop the preset to sweep them)")
  oc = _Overlay(config.optimizer, {**preset, **{k.split(".", 1)[1]: v for k, v in hparams.items()
                                                if k.startswith("optimizer.")}})
  discriminator = models.build_discriminator(config.model)
  k, n = config.k_disc_steps, config.num_steps
  return GAN(
      generator=models.build_generator(config.model, data.example_shape),
      discriminator=discriminator,
      g_tx=optim.build_optimizer(oc, oc.g_lr, spe, 1, n),
      d_tx=optim.build_optimizer(oc, oc.d_lr, spe * k, k, n),
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
      **component_fields(config, data, discriminator),
  )


def component_fields(config, data, discriminator) -> dict:
  """The `GAN` fields of the ablation components (docs/COMPONENTS.md), checked; {} when all are off."""
  mc, lc = config.model, config.loss
  fields = {}
  averaging = ema.from_config(config)
  if averaging is not None:
    fields["ema"] = averaging
  policy = augment.parse_policy(lc.get("augment", ""), "loss.augment")
  augment.check_images(policy, data.example_shape, "loss.augment")
  if policy:
    fields["augment"] = policy
  bcr_real, bcr_fake = float(lc.get("bcr_real", 0.0)), float(lc.get("bcr_fake", 0.0))
  if bcr_real < 0 or bcr_fake < 0:
    raise UserError(f"loss.bcr_real and loss.bcr_fake must be >= 0 (0 = off), got {bcr_real} and {bcr_fake}")
  if bcr_real or bcr_fake:
    bcr_policy = augment.parse_policy(lc.get("bcr_augment", "flip,translation"), "loss.bcr_augment")
    augment.check_images(bcr_policy, data.example_shape, "loss.bcr_augment")
    fields.update(bcr_real=bcr_real, bcr_fake=bcr_fake, bcr_augment=bcr_policy)
  every = int(lc.get("penalty_every", 1))
  if every < 1:
    raise UserError(f"loss.penalty_every must be >= 1, got {every}")
  if every > 1:
    fields["penalty_every"] = every
  clip = float(config.optimizer.get("d_clip", 0.0))
  if clip < 0:
    raise UserError(f"optimizer.d_clip must be >= 0 (0 = off), got {clip}")
  if clip:
    fields["d_clip"] = clip
  num_classes = int(mc.get("num_classes", 0))
  if num_classes:
    fields["num_classes"] = num_classes
    if mc.get("d_cond", "projection") == "acgan":
      fields["acgan_weight"] = float(lc.get("acgan_weight", 1.0))
      if fields["acgan_weight"] <= 0:
        raise UserError(f"model.d_cond='acgan' needs loss.acgan_weight > 0, got {fields['acgan_weight']}")
  g_bn = mc.get("g_norm", "none") == "batch"
  d_bn = models.uses_batch_norm(discriminator)
  if g_bn:
    fields["g_bn"] = True
    if mc.get("sample_bn", "train") not in ("train", "eval"):
      raise UserError(f"unknown model.sample_bn {mc.sample_bn!r}; choose 'train' or 'eval'")
    fields["sample_bn"] = mc.get("sample_bn", "train")
  if d_bn:
    fields["d_bn"] = True
    if models.uses_dropout(discriminator):
      raise UserError("a discriminator with batch norm scores whole batches and cannot have per-example "
                      "dropout; set model.d_norm='none' or turn dropout off")
    if lc.get("penalty", "none") != "none":
      raise UserError(f"loss.penalty={lc.penalty!r} takes per-example input gradients of D, which batch "
                      "norm couples across the batch; set model.d_norm='none' or loss.penalty='none'")
  return fields


def setup(config: ml_collections.ConfigDict):
  """Data, the GAN and a fresh initial state for `config` (no files written)."""
  data = pipeline.build_data(config)
  gan = build_gan(config, data)
  mean = data.mean_example if config.model.get("g_bias_from_data", True) else None
  state = gan.init(config.seed, mean)
  return data, gan, state
