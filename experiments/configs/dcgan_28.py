"""DCGAN-style convolutional GAN on MNIST 28x28 (no batch norm; see gan_jax/models/dcgan.py).

  python -m gan_jax.data.fetch mnist
  python -m gan_jax.main --config=experiments/configs/dcgan_28.py --workdir=runs/dcgan_28

Data: a folder of MNIST IDX files (default $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist, where the
fetch command puts them; another folder: `--config.data.dir=FOLDER`), train[0:50000], pixels in [-1, 1],
NHWC. Model: z ~ N(0, 1)^100; G dense to 7x7x128 -> 14x14x64 -> 28x28x1 tanh (4x4 stride-2
transposed convolutions; `--config.model.g_upsample=resize_conv` for 2x resize + 3x3 conv); D 4x4
stride-2 convolutions 64 -> 128 with leaky ReLU, then a dense logit. Algorithm 1 (k = 1),
non-saturating loss, Adam(2e-4, b1 = 0.5), batch 100.

Produces `samples.png` (100 digits from fixed noise, every 1,000 steps), `curves.png`, `metrics.jsonl`
and `summary.json`. On a CPU add `--config.steps_per_dispatch=1`: XLA:CPU runs convolutions inside the
multi-step loop 10x and more slower (docs/PERFORMANCE.md).
`get_config("smoke")` is a seconds-long variant (tiny widths, 4 steps) for tests.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 10_000  # 20 epochs of 500 batches
  c.batch_size = 100
  c.update_mode = "alternating"
  c.k_disc_steps = 1
  c.steps_per_dispatch = 100
  c.log_every = 100
  c.sample_every = 1000
  c.checkpoint_every = 2000

  c.data.source = "idx"
  c.data.name = "mnist"
  c.data.dir = ""  # the default folder of data.name: $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist
  c.data.num_train = 50_000
  c.data.scale = "symmetric"
  c.data.layout = "nhwc"

  c.model.noise = "gaussian"
  c.model.noise_dim = 100
  c.model.generator = "dcgan"
  c.model.g_channels = (128, 64)
  c.model.g_upsample = "transposed"
  c.model.g_output = "tanh"
  c.model.g_init_scale = 0.0  # He/LeCun normal (gan_jax.models.layers.kernel_init)
  c.model.g_bias_from_data = False
  c.model.discriminator = "dcgan"
  c.model.d_channels = (64, 128)
  c.model.d_init_scale = 0.0
  c.model.compute_dtype = "float32"

  c.loss.name = "non_saturating"
  c.loss.d_weight = 1.0
  c.optimizer.name = "adam"
  c.optimizer.g_lr = 2e-4
  c.optimizer.d_lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  if smoke:  # tiny widths: seconds on a CPU
    c.model.g_channels, c.model.d_channels = (8, 8), (8, 8)
    c.batch_size = 16
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 4, 2, 2, 4, 4
    c.num_samples = 16
  return c
