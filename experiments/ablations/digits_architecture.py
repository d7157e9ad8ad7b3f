"""Ablation (c): architecture x noise distribution, on the 8x8 digits, scored by offline metrics.

  python -m gan_jax.sweep --sweep=experiments/ablations/digits_architecture.py \
      --workdir=runs/digits_architecture --max_members=1

`--max_members=1` trains each run alone: vmapping convolutions over members makes them grouped
convolutions, which XLA runs slower on a CPU than one run after another (docs/ABLATIONS.md).

Base: experiments/configs/digits.py for 2,000 steps. Architectures: the paper's MLP generator with a
maxout discriminator (flat pixels), and the DCGAN-style pair of gan_jax/models/dcgan.py (NHWC pixels:
G dense to 2x2x64 -> 4x4x32 -> 8x8x1 sigmoid, D 4x4 stride-2 convolutions 32 -> 64, leaky ReLU), its
generator upsampling by 4x4 stride-2 transposed convolutions or by weight-free nearest-neighbour 2x
upsampling followed by a 3x3 convolution. Noise: uniform U[-sqrt 3, sqrt 3] (the paper) or Gaussian,
both of dimension 32 (unit variance either way). 2 seeds per cell. Metrics as in digits_dropout.py.

`:smoke` is a seconds-long version (two of the cells) for tests.
"""

import os

from gan_jax import config as config_lib
from gan_jax.validation import check_arg

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


def get_config(arg: str = ""):
  check_arg(arg)
  c = config_lib.from_file(os.path.join(_CONFIGS, "digits.py"))
  c.num_steps = 2000
  c.steps_per_dispatch = 500
  c.log_every = 100
  c.model.g_channels = (64, 32)  # 'dcgan' cells: 2x2x64 -> 4x4x32 -> 8x8x1
  c.model.d_channels = (32, 64)
  if arg == "smoke":
    c.num_steps, c.steps_per_dispatch, c.log_every = 20, 10, 10
    c.model.g_hidden, c.model.d_hidden = (32,), (16,)
    c.model.g_channels, c.model.d_channels = (8, 8), (8, 8)
  return c


def get_sweep(arg: str = ""):
  check_arg(arg)
  dcgan = {"model.generator": "dcgan", "model.discriminator": "dcgan", "data.layout": "nhwc",
           "model.g_init_scale": 0.0, "model.d_init_scale": 0.0}
  architectures = {
      "mlp / maxout": {"model.generator": "mlp", "model.discriminator": "maxout"},
      "dcgan, transposed conv": {**dcgan, "model.g_upsample": "transposed"},
      "dcgan, resize + conv": {**dcgan, "model.g_upsample": "resize_conv"},
  }
  noises, seeds = ["uniform", "gaussian"], [0, 1]
  if arg == "smoke":  # two runs instead of twelve
    del architectures["dcgan, transposed conv"]
    noises, seeds = ["uniform"], [0]
  return {
      "axes": {"architecture": architectures, "model.noise": noises},
      "seeds": seeds,
      "metrics": ["frechet_distance", "inception_score", "class_coverage", "parzen_ll"],
  }
