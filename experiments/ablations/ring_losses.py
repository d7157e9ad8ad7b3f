"""Ablation (a): the GAN loss x discriminator steps per generator step, on the ring of 8 Gaussians.

  python -m gan_jax.sweep --sweep=experiments/ablations/ring_losses.py --workdir=runs/ring_losses

Grid: loss in {minimax, non-saturating, hinge, WGAN-GP (Wasserstein loss + gradient penalty, lambda 10)}
x k_disc_steps in {1, 5} x 5 seeds; each cell's 5 seeds train as one vmapped program. Metrics on 2,500
samples per run: modes covered (of 8; ranks the cells), the fraction of high-quality samples (within 3
std of a mode) and the KL of the mode histogram to uniform. Every run trains the same number of generator
steps, so k=5 cells also do 5x the discriminator steps. Results and run times: docs/ABLATIONS.md.

`:smoke` is a seconds-long version (2 cells x 2 seeds) for tests.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 3000
  c.batch_size = 128
  c.steps_per_dispatch = 500
  c.log_every = 100

  c.data.source = "toy"
  c.data.name = "ring_2d"
  c.data.num_modes = 8
  c.data.radius = 2.0
  c.data.std = 0.02

  c.model.noise = "gaussian"
  c.model.noise_dim = 8
  c.model.g_hidden = (64, 64)
  c.model.g_activation = "relu"
  c.model.g_output = "linear"
  c.model.g_init_scale = 0.0
  c.model.g_bias_from_data = False
  c.model.discriminator = "mlp"
  c.model.d_hidden = (64, 64)
  c.model.d_activation = "relu"
  c.model.d_hidden_keep = 1.0
  c.model.d_init_scale = 0.0

  c.loss.name = "non_saturating"
  c.optimizer.name = "adam"
  # One optimizer for every loss (a controlled ablation); 4e-3 covered the most modes of
  # {1e-3, 2e-3, 4e-3} for the non-saturating loss in 3,000 steps (2 seeds, a pilot sweep).
  c.optimizer.g_lr = 4e-3
  c.optimizer.d_lr = 4e-3
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  if smoke:
    c.num_steps, c.steps_per_dispatch, c.log_every = 20, 10, 10
    c.batch_size = 32
    c.model.g_hidden = c.model.d_hidden = (16,)
  return c


def get_sweep(smoke: str = ""):
  check_arg(smoke)
  losses = {
      "minimax": {"loss.name": "minimax"},
      "non_saturating": {"loss.name": "non_saturating"},
      "hinge": {"loss.name": "hinge"},
      "wgan_gp": {"loss.name": "wasserstein", "loss.penalty": "wgan_gp", "loss.penalty_weight": 10.0},
  }
  sweep = {
      "axes": {"loss": losses, "k_disc_steps": [1, 5]},
      "seeds": [0, 1, 2, 3, 4],
      "metrics": ["modes_covered", "high_quality_frac", "kl_modes"],
  }
  if smoke:
    sweep["axes"] = {"loss": {k: losses[k] for k in ("non_saturating", "wgan_gp")}}
    sweep["seeds"] = [0, 1]
  return sweep
