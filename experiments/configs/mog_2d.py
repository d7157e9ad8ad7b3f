"""A ring of 8 Gaussians in 2-D: the standard mode-collapse benchmark (Metz et al. 2017).

  python -m gan_jax.main --config=experiments/configs/mog_2d.py --workdir=runs/mog_2d

A few minutes on 2 CPU cores. `samples.png` scatters 1,000 samples (green) over the 8 modes
(circles). With these settings the non-saturating GAN usually collapses onto a few of the 8 modes:
that is what the benchmark exposes. docs/ABLATIONS.md measures mode coverage across losses, k and seeds.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 6000
  c.batch_size = 256
  c.steps_per_dispatch = 250
  c.log_every = 250
  c.sample_every = 2000
  c.checkpoint_every = 3000
  c.num_samples = 1000

  c.data.source = "toy"
  c.data.name = "ring_2d"
  c.data.num_modes = 8
  c.data.radius = 2.0
  c.data.std = 0.02

  c.model.noise = "gaussian"
  c.model.noise_dim = 16
  c.model.g_hidden = (128, 128)
  c.model.g_activation = "relu"
  c.model.g_output = "linear"
  c.model.g_init_scale = 0.0
  c.model.g_bias_from_data = False
  c.model.discriminator = "mlp"
  c.model.d_hidden = (128, 128)
  c.model.d_activation = "relu"
  c.model.d_hidden_keep = 1.0
  c.model.d_init_scale = 0.0

  c.loss.name = "non_saturating"
  c.optimizer.name = "adam"
  c.optimizer.g_lr = 5e-4
  c.optimizer.d_lr = 5e-4
  if smoke:
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 40, 10, 10, 20, 20
  return c
