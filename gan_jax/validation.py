"""Checking a config before anything runs: every value's type and range, one `UserError` line each.

`validate(config)` is called by the command line before JAX is imported and before the workdir is
touched, and again by `train.train_and_evaluate` for configs built in Python. It knows:

  types    a key of `base_config()` holds a value of its default's type (an int where an int is
           expected, a tuple of ints for layer widths, ...); an int is accepted for a float.
  ranges   `RULES` below: counts that must be positive, probabilities in (0, 1], learning rates
           above 0, Adam's betas in [0, 1), ...

Names (a model, a loss, an optimizer) are checked where the registries live, when the run is built.
"""

import math
import numbers

from gan_jax import config as config_lib
from gan_jax.errors import UserError


def _positive(v):
  return v > 0


def _non_negative(v):
  return v >= 0


def _probability(v):
  return 0 < v <= 1


def _unit_interval_open(v):
  return 0 <= v < 1


def _widths(v):
  return len(v) > 0 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)


def _non_negative_ints(v):
  return all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)


# key -> (test, what the value must be). Keys a config does not have are skipped.
RULES = {
    "seed": (lambda v: 0 <= v < 2**31, "an integer in [0, 2**31)"),
    "num_steps": (_positive, "at least 1"),
    "batch_size": (_positive, "at least 1"),
    "k_disc_steps": (_positive, "at least 1"),
    "steps_per_dispatch": (_positive, "at least 1"),
    "log_every": (_positive, "at least 1"),
    "sample_every": (_positive, "at least 1"),
    "checkpoint_every": (_positive, "at least 1"),
    "keep_checkpoints": (_positive, "at least 1"),
    "num_samples": (_positive, "at least 1"),
    "data.num_train": (_positive, "at least 1"),
    "ema.start_step": (_non_negative, "0 or a step"),
    "ema.warmup": (_non_negative, "0 or a number of steps"),
    "optimizer.decay_steps": (_non_negative, "0 (num_steps) or a number of iterations"),
    "model.attention_res": (_non_negative, "0 (off) or a feature-map side"),
    "model.normal_init_std": (_non_negative, "0 (the layers' own initialisation) or a positive std"),
    "model.bn_momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.sample_bn": (lambda v: v in ("train", "eval"), "'train' or 'eval'"),
    "data.device_limit_mb": (_non_negative, "0 or more megabytes ('auto' streams a training split larger)"),
    "data.workers": (_non_negative, "0 (one per CPU core) or a number of decoding threads"),
    "precision": (lambda v: v in config_lib.PRECISIONS, f"one of {', '.join(config_lib.PRECISIONS)}"),
    "eval_every": (_non_negative, "0 (off) or a number of steps"),
    "eval.num_samples": (lambda v: v >= 2, "at least 2"),
    "eval.num_real": (_non_negative, "0 (the whole split) or a count"),
    "data.std": (_positive, "above 0"),
    "data.num_modes": (_positive, "at least 1"),
    "data.grid_side": (_positive, "at least 1"),
    "data.gcn_scale": (_positive, "above 0"),
    "model.noise_dim": (_positive, "at least 1"),
    "model.g_hidden": (_widths, "a non-empty tuple of positive integers, e.g. (256, 256)"),
    "model.d_hidden": (_widths, "a non-empty tuple of positive integers, e.g. (240, 240)"),
    "model.d_pieces": (_positive, "at least 1"),
    "model.d_input_keep": (_probability, "a keep probability in (0, 1]"),
    "model.d_hidden_keep": (_probability, "a keep probability in (0, 1]"),
    "model.g_init_scale": (_non_negative, "0 (LeCun normal) or a positive scale"),
    "model.d_init_scale": (_non_negative, "0 (LeCun normal) or a positive scale"),
    "model.g_channels": (_widths, "a non-empty tuple of positive integers, e.g. (256, 128, 64)"),
    "model.d_channels": (_widths, "a non-empty tuple of positive integers, e.g. (64, 128, 256)"),
    "model.g_output_init_scale": (_non_negative, "0 or a positive scale"),
    "model.g_deconv_kernel": (_positive, "at least 1"),
    "model.g_deconv_stride": (_positive, "at least 1"),
    "model.d_conv_channels": (_widths, "a non-empty tuple of positive integers"),
    "model.d_conv_kernels": (_widths, "a non-empty tuple of positive integers"),
    "model.d_conv_pads": (_non_negative_ints, "a tuple of integers >= 0"),
    "model.d_pool_shapes": (_widths, "a non-empty tuple of positive integers"),
    "model.d_pool_strides": (_widths, "a non-empty tuple of positive integers"),
    "model.d_conv_pieces": (_positive, "at least 1"),
    "loss.d_weight": (_positive, "above 0"),
    "loss.penalty_weight": (_non_negative, "at least 0"),
    "optimizer.g_lr": (_positive, "a learning rate above 0"),
    "optimizer.d_lr": (_positive, "a learning rate above 0"),
    "optimizer.b1": (_unit_interval_open, "in [0, 1)"),
    "optimizer.b2": (_unit_interval_open, "in [0, 1)"),
    "optimizer.momentum": (_unit_interval_open, "in [0, 1)"),
    "optimizer.decay_factor": (lambda v: v >= 1, "at least 1 (1 = no decay)"),
    "optimizer.min_lr": (_non_negative, "at least 0"),
    "optimizer.momentum_start": (_unit_interval_open, "in [0, 1)"),
    "optimizer.momentum_end": (_unit_interval_open, "in [0, 1)"),
    "optimizer.momentum_saturate_epoch": (_positive, "at least 1"),
}


def _type_name(value) -> str:
  if isinstance(value, tuple):
    kinds = {type(x) for x in value}
    return {frozenset({int}): "a tuple of integers", frozenset({float}): "a tuple of numbers",
            frozenset({int, float}): "a tuple of numbers",
            frozenset({str}): "a tuple of strings"}.get(frozenset(kinds), "a tuple")
  return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(type(value), type(value).__name__)


def _type_ok(value, default) -> bool:
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, int) and not isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
  if isinstance(default, str):
    return isinstance(value, str)
  if isinstance(default, tuple):
    if not isinstance(value, (tuple, list)):
      return False
    kinds = {type(x) for x in default}
    if kinds <= {int}:
      return all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    if kinds <= {int, float}:
      return all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in value)
    if kinds <= {str}:
      return all(isinstance(x, str) for x in value)
  return True


def _leaves(config, prefix=""):
  """(flat key, value) of a ConfigDict, values as they are (tuples stay tuples). Not
  `config.flatten`: that goes through JSON and Flax, and this runs before JAX is imported."""
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def validate(config) -> None:
  """Raises a one-line UserError for the first config value of the wrong type or out of range."""
  values = dict(_leaves(config))
  defaults = dict(_leaves(config_lib.base_config()))
  for key, value in values.items():
    if key in defaults and defaults[key] is not None and value is not None:
      default = defaults[key]
      default = tuple(default) if isinstance(default, list) else default
      value = tuple(value) if isinstance(value, list) else value
      if not _type_ok(value, default):
        raise UserError(f"config key {key} must be {_type_name(default)}, like its default {default!r}; "
                        f"got {value!r}: fix --config.{key} (gan_jax/config.py lists every key)")
    if isinstance(value, float) and not math.isfinite(value):
      raise UserError(f"config key {key} is {value}; give a finite number")
    if key in RULES:
      test, what = RULES[key]
      value = tuple(value) if isinstance(value, list) else value
      try:
        ok = test(value)
      except TypeError:
        ok = False
      if not ok:
        raise UserError(f"config key {key} must be {what}, got {value!r}; fix --config.{key}")


def check_arg(arg: str, allowed=("smoke",)) -> str:
  """For config files: refuses an argument (`FILE.py:ARG`) the file does not know."""
  if arg and arg not in allowed:
    raise UserError(f"unknown config argument {arg!r}; this config file takes "
                    f"{' or '.join(repr(a) for a in allowed)} (or none): --config=FILE.py:{allowed[0]}")
  return arg
