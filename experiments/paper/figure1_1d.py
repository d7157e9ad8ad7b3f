"""The 1-D GAN that draws Figure 1: toy_1d.py's p_data with Gaussian noise and an affine generator.

  python -m gan_jax.paper.figure1 --config=experiments/paper/figure1_1d.py \
      --out=docs/figures/figure1.png

p_data = N(2, 0.5^2); z ~ N(0, 1) (1-D); G(z) = a z + b (no hidden layer); D 1 -> 128 tanh ->
128 tanh -> 1 logit; Adam 1e-3 (b1 0.5) for both, batch 256, Algorithm 1's alternating update.

Why this pair. Figure 1's panels claim that D can be trained to D* = p_data / (p_data + p_g) and
that at the end D = 1/2 wherever the densities have mass. Both need p_g to cover p_data's support
smoothly. With z uniform on [-sqrt 3, sqrt 3] (the paper's drawing) or a tanh G, G's range is
bounded: p_g ends abruptly inside p_data's mass (measured: G(z) in [0.99, 2.41] after 1,000
iterations of the previous 1 -> 16 tanh -> 1 G, [1.18, 2.74] after 4,000), so D* jumps from about 0
to 1 there and no smooth D can follow it (max |D - D*| on the support stayed at 0.6-0.7 through
6,000 D-only steps). An affine G of Gaussian noise has p_g = N(b, a^2), a family that contains
p_data, so p_g = p_data is reachable ("enough capacity", Section 4) and D* is smooth. With it the
pair converges without oscillating: G's mean and std 1.66 and 0.48 after 1,500 iterations, 1.99
and 0.49 after 3,000, and D within 0.02 of 1/2 on [1, 3] from iteration 3,000 to 10,000; at 3e-4
it takes 6,000 iterations to get as close as 1,500 do here. All measured 2026-12-01 on a 2-core CPU
(10^6 noise quantiles pushed through G, `gan_jax.paper.figure1.measure`), every 250-500 iterations.
"""

import os

from gan_jax import config as config_lib


def get_config(smoke: str = ""):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "toy_1d.py")
  c = config_lib.from_file(f"{path}:{smoke}" if smoke else path)
  c.model.noise = "gaussian"
  c.model.g_hidden = ()  # G(z) = a z + b
  c.model.d_hidden = (128, 128)
  c.optimizer.g_lr = 1e-3
  c.optimizer.d_lr = 1e-3
  c.num_steps = 5500
  return c
