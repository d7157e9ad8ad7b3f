"""The setting of the paper's Figure 1: a 1-D generator mapping uniform z onto a Gaussian p_data.

  python -m gan_jax.main --config=experiments/configs/toy_1d.py --workdir=runs/toy_1d

About a minute on 2 CPU cores. `samples.png` shows the histogram of G(z) (green) on p_data
(black dotted); D(x) (blue dashed) flattens towards 1/2 as p_g approaches p_data.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 5000
  c.batch_size = 256
  c.steps_per_dispatch = 250
  c.log_every = 250
  c.sample_every = 2500
  c.checkpoint_every = 2500
  c.num_samples = 10000

  c.data.source = "toy"
  c.data.name = "gaussian_1d"
  c.data.mean = 2.0
  c.data.std = 0.5

  c.model.noise = "uniform"
  c.model.noise_dim = 1
  c.model.g_hidden = (32, 32)
  c.model.g_activation = "tanh"
  c.model.g_output = "linear"
  c.model.g_init_scale = 0.0
  c.model.g_bias_from_data = False
  c.model.discriminator = "mlp"
  c.model.d_hidden = (64, 64)
  c.model.d_activation = "tanh"
  c.model.d_hidden_keep = 1.0
  c.model.d_init_scale = 0.0

  c.loss.name = "non_saturating"
  c.optimizer.name = "adam"
  c.optimizer.g_lr = 1e-3
  c.optimizer.d_lr = 1e-3
  if smoke:
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 40, 10, 10, 20, 20
    c.num_samples = 500
  return c
