"""Ablation (e): loss x normalisation x EMA of G, on the 8x8 digits, with paired statistics over seeds.

  python -m gan_jax.sweep --sweep=experiments/ablations/digits_components.py \
      --workdir=runs/digits_components --max_members=1

Base: experiments/configs/digits.py with the DCGAN-style pair of gan_jax/models/dcgan.py (G dense to
2x2x64 -> 4x4x32 -> 8x8x1 sigmoid, D 4x4 stride-2 convolutions 32 -> 64, leaky ReLU, NHWC),
Gaussian noise of dimension 32, Adam(5e-4, b1 = 0.5), batch 100, 1,500 steps. Axes:
  loss           non-saturating | hinge
  normalisation  spectral norm in D | batch norm in G and D (global-batch statistics; samples with
                 the sample batch's statistics)
  EMA of G       off | on (decay 0.999 from step 500; samples and scores use the average)
Three seeds per cell; every cell shares the seeds, so two cells differ only in their setting and the
report compares them paired over seeds (stats.md). Metrics: the Fréchet distance on the project's
classifier (ranks the cells) and the Inception score on its logits.

`--max_members=1` trains each run alone (grouped convolutions are slow on a CPU; docs/ABLATIONS.md).
`:smoke` is a seconds-long version (two cells, two seeds, tiny networks) for tests.
"""

import os

from gan_jax import config as config_lib
from gan_jax.validation import check_arg

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


def get_config(arg: str = ""):
  check_arg(arg)
  c = config_lib.from_file(os.path.join(_CONFIGS, "digits.py"))
  c.num_steps, c.steps_per_dispatch, c.log_every = 1500, 1, 100
  c.data.layout = "nhwc"
  c.model.generator = c.model.discriminator = "dcgan"
  c.model.g_channels, c.model.d_channels = (64, 32), (32, 64)
  c.model.g_init_scale = c.model.d_init_scale = 0.0
  c.model.g_bias_from_data = False
  c.model.noise = "gaussian"
  if arg == "smoke":
    c.num_steps, c.log_every = 10, 5
    c.model.g_channels, c.model.d_channels = (8, 8), (8, 8)
  return c


def get_sweep(arg: str = ""):
  losses = {"non_saturating": {"loss.name": "non_saturating"}, "hinge": {"loss.name": "hinge"}}
  norms = {"spectral": {"model.d_spectral_norm": True},
           "batch": {"model.g_norm": "batch", "model.d_norm": "batch"}}
  emas = {"off": {"ema.decay": 0.0}, "on": {"ema.decay": 0.999, "ema.start_step": 500}}
  seeds = [0, 1, 2]
  if arg == "smoke":
    losses, emas, seeds = {"hinge": losses["hinge"]}, {"on": {"ema.decay": 0.9, "ema.start_step": 2}}, [0, 1]
  return {
      "axes": {"loss": losses, "norm": norms, "ema": emas},
      "seeds": seeds,
      "metrics": ["frechet_distance", "inception_score"],
  }
