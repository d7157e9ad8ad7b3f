"""DCGAN-style convolutional GAN on CIFAR-10 32x32 (no batch norm; see gan_jax/models/dcgan.py).

  python -m gan_jax.data.fetch cifar10
  python -m gan_jax.main --config=experiments/configs/dcgan_32.py --workdir=runs/dcgan_32

Data: CIFAR-10's python archive (or its extracted folder), by default in $GAN_JAX_DATA/cifar10 or
~/gan_jax_data/cifar10 (another folder: `--config.data.dir=FOLDER`), train = the first 45,000 of
data_batch_1..5, pixels in [-1, 1], NHWC.
Model: z ~ N(0, 1)^100; G dense to 4x4x256 -> 8x8x128 -> 16x16x64 -> 32x32x3 tanh
(4x4 stride-2 transposed convolutions; `--config.model.g_upsample=resize_conv` for 2x resize + 3x3
conv); D 4x4 stride-2 convolutions 64 -> 128 -> 256 with leaky ReLU, then a dense logit. Algorithm 1
(k = 1), non-saturating loss, Adam(2e-4, b1 = 0.5) for both, batch 128.

Produces `samples.png` (100 samples from fixed noise every 2,500 steps), `curves.png`, `metrics.jsonl`
and `summary.json` (with it/s). Speed: docs/PERFORMANCE.md (`python -m gan_jax.bench --models=dcgan32`).
Train on an accelerator; on a CPU add `--config.steps_per_dispatch=1` (XLA:CPU runs convolutions inside
the multi-step loop 10x and more slower).
`--config.model.compute_dtype=bfloat16` runs convolutions in bf16 (params stay float32).
`get_config("smoke")` is a seconds-long variant (tiny widths, 4 steps) for tests.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 50_000  # ~140 epochs of 351 batches
  c.batch_size = 128
  c.update_mode = "alternating"
  c.k_disc_steps = 1
  c.steps_per_dispatch = 250
  c.log_every = 250
  c.sample_every = 2500
  c.checkpoint_every = 5000

  c.data.source = "cifar10"
  c.data.name = "cifar10"
  c.data.dir = ""  # the default folder: $GAN_JAX_DATA/cifar10 or ~/gan_jax_data/cifar10
  c.data.num_train = 45_000  # the rest of the train set is validation
  c.data.scale = "symmetric"
  c.data.layout = "nhwc"

  c.model.noise = "gaussian"
  c.model.noise_dim = 100
  c.model.generator = "dcgan"
  c.model.g_channels = (256, 128, 64)
  c.model.g_upsample = "transposed"
  c.model.g_output = "tanh"
  c.model.g_init_scale = 0.0  # He/LeCun normal (gan_jax.models.layers.kernel_init)
  c.model.g_bias_from_data = False
  c.model.discriminator = "dcgan"
  c.model.d_channels = (64, 128, 256)
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
    c.model.g_channels, c.model.d_channels = (16, 8, 8), (8, 16)
    c.batch_size = 16
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 4, 2, 2, 4, 4
    c.num_samples = 16
  return c
