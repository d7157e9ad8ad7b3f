"""SNGAN on CIFAR-10: ResNet generator and spectrally normalised ResNet discriminator (Miyato et al. 2018).

  python -m gan_jax.data.fetch cifar10
  python -m gan_jax.main --config=experiments/configs/sngan_cifar10.py --workdir=runs/sngan_cifar10

The paper's unconditional CIFAR-10 ResNet setting: z ~ N(0, 1)^128; G dense to 4x4x256, three
up-ResBlocks of 256 channels with batch norm, BN + ReLU, 3x3 conv to RGB, tanh; D the optimised block
and three ResBlocks of 128 channels (the first two downsample), ReLU, global sum pooling, a dense logit,
every weight spectrally normalised (gan_jax/models/resnet.py). Hinge loss, Adam(2e-4, b1 = 0, b2 = 0.9)
for both networks, 5 D steps per G step (k = 5), batch 64, 50,000 generator updates with the learning
rate decayed linearly to 0 (`optimizer.schedule='linear'`, as common reproductions of this setting do).
Published (Miyato et al. 2018, Table 2, SN-GANs ResNet, unconditional CIFAR-10): Inception score
8.22 +- 0.05, FID 21.7 +- 0.21.

Data: CIFAR-10's python archive (or its extracted folder), by default in $GAN_JAX_DATA/cifar10 or
~/gan_jax_data/cifar10 (another folder: `--config.data.dir=FOLDER`), all 50,000 training images, pixels
in [-1, 1], NHWC.

Produces `samples.png` (100 samples every 2,500 steps; G's batch norm uses the sample batch's own
statistics, `model.sample_bn='train'`), `curves.png`, `metrics.jsonl`, checkpoints and `summary.json`. `--config.ema.decay=0.9999` adds the
moving average of G that later work samples with.
Expected training time on one GPU: not measured.
Train on an accelerator; a CPU is far too slow for this model. `get_config("smoke")` is a
seconds-long variant (a few channels, 2 steps) for tests.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 50_000  # generator updates; D takes 5 batches for each
  c.batch_size = 64
  c.update_mode = "alternating"
  c.k_disc_steps = 5
  c.steps_per_dispatch = 250
  c.log_every = 250
  c.sample_every = 2500
  c.checkpoint_every = 5000

  c.data.source = "cifar10"
  c.data.name = "cifar10"
  c.data.dir = ""  # the default folder: $GAN_JAX_DATA/cifar10 or ~/gan_jax_data/cifar10
  c.data.num_train = 50_000
  c.data.scale = "symmetric"
  c.data.layout = "nhwc"

  c.model.noise = "gaussian"
  c.model.noise_dim = 128
  c.model.generator = "resnet"
  c.model.g_res_channels = (256, 256, 256)
  c.model.g_res_base = 4
  c.model.g_norm = "batch"
  c.model.g_bias_from_data = False
  c.model.discriminator = "resnet"
  c.model.d_res_channels = (128, 128, 128, 128)
  c.model.d_res_down = (True, True, False, False)
  c.model.d_spectral_norm = True
  c.model.compute_dtype = "float32"

  c.loss.name = "hinge"
  c.loss.d_weight = 1.0
  c.optimizer.name = "adam"
  c.optimizer.g_lr = 2e-4
  c.optimizer.d_lr = 2e-4
  c.optimizer.b1 = 0.0
  c.optimizer.b2 = 0.9
  c.optimizer.schedule = "linear"  # to 0 at num_steps
  if smoke:  # a few channels: seconds on a CPU
    c.model.noise_dim = 16
    c.model.g_res_channels, c.model.d_res_channels = (8, 8, 8), (8, 8, 8, 8)
    c.batch_size, c.k_disc_steps = 8, 2
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 2, 1, 1, 2, 2
    c.num_samples = 16
  return c
