"""The published DCGAN on CIFAR-10 32x32 (Radford et al. 2016): batch norm, ReLU / leaky ReLU, Adam(2e-4, 0.5).

  python -m gan_jax.data.fetch cifar10
  python -m gan_jax.main --config=experiments/configs/dcgan_cifar10.py --workdir=runs/dcgan_cifar10

The paper's architecture at 32x32: z(100) ~ N(0, 1) (the authors' code; the paper says uniform);
G dense to 4x4x512 -> BN, ReLU -> 4x4 stride-2 transposed convolutions to 8x8x256, 16x16x128 (BN,
ReLU) and 32x32x3 -> tanh; D 4x4 stride-2 convolutions 64 (leaky ReLU 0.2, no BN on the input
layer) -> 128 -> 256 (BN, leaky ReLU) -> a dense logit (the authors' 64x64 widths, ngf = ndf = 64, less
one layer each). Weights N(0, 0.02), BN scales N(1, 0.02)
(`model.normal_init_std`), no biases before BN. Non-saturating loss, Adam(2e-4, b1 = 0.5) for both,
batch 128, 50,000 iterations (about 140 epochs). Batch statistics over the global batch (the same
numbers on 1 or 8 devices); D normalises the real and the generated batch each with its own statistics.
Unlike `dcgan_32.py` (a lighter baseline: G 256-128-64, no BN), this is the paper's network (G 512-256-128).

Data: CIFAR-10's python archive (or its extracted folder), by default in $GAN_JAX_DATA/cifar10 or
~/gan_jax_data/cifar10 (another folder: `--config.data.dir=FOLDER`), train = the first 45,000 of
data_batch_1..5, pixels in [-1, 1], NHWC.

Produces `samples.png` (100 samples from fixed noise every 2,500 steps, with the grid's own batch
statistics, `model.sample_bn='train'`), `curves.png`, `metrics.jsonl`, checkpoints and `summary.json`.
Expected training time on one GPU: not measured.
Train on an accelerator. `get_config("smoke")` is a seconds-long variant (tiny widths, 4 steps).
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 50_000
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
  c.data.num_train = 45_000
  c.data.scale = "symmetric"
  c.data.layout = "nhwc"

  c.model.noise = "gaussian"
  c.model.noise_dim = 100
  c.model.generator = "dcgan"
  c.model.g_channels = (512, 256, 128)
  c.model.g_upsample = "transposed"
  c.model.g_output = "tanh"
  c.model.g_bias_from_data = False
  c.model.discriminator = "dcgan"
  c.model.d_channels = (64, 128, 256)
  c.model.g_norm = "batch"
  c.model.d_norm = "batch"
  c.model.normal_init_std = 0.02
  c.model.sample_bn = "train"

  c.loss.name = "non_saturating"
  c.optimizer.name = "adam"
  c.optimizer.g_lr = 2e-4
  c.optimizer.d_lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  if smoke:  # tiny widths: seconds on a CPU
    c.model.g_channels, c.model.d_channels = (16, 8, 8), (8, 8, 16)
    c.batch_size = 16
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 4, 2, 2, 4, 4
    c.num_samples = 16
  return c
