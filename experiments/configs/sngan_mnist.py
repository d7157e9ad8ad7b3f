"""SNGAN's recipe on MNIST 28x28: a small ResNet pair, spectral norm, hinge loss, 5 D steps per G step.

  python -m gan_jax.data.fetch mnist
  python -m gan_jax.main --config=experiments/configs/sngan_mnist.py --workdir=runs/sngan_mnist

The CIFAR-10 setting of `sngan_cifar10.py` (Miyato et al. 2018) scaled to 28x28 digits: z(128) ~
N(0, 1); G dense to 7x7x64, two up-ResBlocks of 64 channels with batch norm (7 -> 14 -> 28), BN +
ReLU, 3x3 conv to one channel, tanh; D the optimised block and two ResBlocks of 64 channels (28 ->
14 -> 7 -> 7), ReLU, global sum pooling, a dense logit, spectrally normalised. Hinge loss, Adam(2e-4,
b1 = 0, b2 = 0.9), k = 5 D steps per G step, batch 64, 3,000 generator updates, learning rate decayed
linearly to 0. `--config.model.attention_res=14` adds SAGAN self-attention at 14x14 in both networks.

Data: MNIST's IDX files, by default in $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist (another folder:
`--config.data.dir=FOLDER`), train[0:50000], pixels in [-1, 1], NHWC.

Produces `samples.png` (100 digits from fixed noise every 500 steps), `curves.png`, `metrics.jsonl`,
checkpoints and `summary.json`. Expected training time on one GPU: not measured. It is narrow enough
to train on a CPU, in hours rather than minutes (not measured); there it runs one iteration per
dispatch (XLA:CPU is slow for convolutions inside the multi-step loop, docs/PERFORMANCE.md). On an
accelerator pass `--config.steps_per_dispatch=100`. `get_config("smoke")` is seconds long (tests).
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 3000
  c.batch_size = 64
  c.update_mode = "alternating"
  c.k_disc_steps = 5
  c.steps_per_dispatch = 1
  c.log_every = 100
  c.sample_every = 500
  c.checkpoint_every = 1000

  c.data.source = "idx"
  c.data.name = "mnist"
  c.data.dir = ""  # the default folder of data.name: $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist
  c.data.num_train = 50_000
  c.data.scale = "symmetric"
  c.data.layout = "nhwc"

  c.model.noise = "gaussian"
  c.model.noise_dim = 128
  c.model.generator = "resnet"
  c.model.g_res_channels = (64, 64)
  c.model.g_res_base = 7
  c.model.g_norm = "batch"
  c.model.g_bias_from_data = False
  c.model.discriminator = "resnet"
  c.model.d_res_channels = (64, 64, 64)
  c.model.d_res_down = (True, True, False)
  c.model.d_spectral_norm = True

  c.loss.name = "hinge"
  c.optimizer.name = "adam"
  c.optimizer.g_lr = 2e-4
  c.optimizer.d_lr = 2e-4
  c.optimizer.b1 = 0.0
  c.optimizer.b2 = 0.9
  c.optimizer.schedule = "linear"  # to 0 at num_steps
  if smoke:  # a few channels: seconds on a CPU
    c.model.noise_dim = 16
    c.model.g_res_channels, c.model.d_res_channels = (8, 8), (8, 8, 8)
    c.batch_size, c.k_disc_steps = 16, 2
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 4, 2, 2, 4, 4
    c.num_samples = 16
  return c
