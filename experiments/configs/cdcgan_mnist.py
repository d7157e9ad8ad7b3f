"""Class-conditional DCGAN on MNIST with batch norm in G and an EMA generator: one row of samples per digit.

  python -m gan_jax.data.fetch mnist
  python -m gan_jax.main --config=experiments/configs/cdcgan_mnist.py --workdir=runs/cdcgan_mnist

The published DCGAN (Radford et al. 2016) made class-conditional: G z(100) ~ N(0, 1) -> dense to
7x7x256 -> BN, ReLU -> 4x4 stride-2 transposed convolutions to 14x14x128 (BN, ReLU) and 28x28x1 ->
tanh, every BN conditional on the digit (`model.g_cond='cbn'`: a scale and offset per class); D 4x4
stride-2 convolutions 64 -> 128 (leaky ReLU 0.2) -> a projection head (`model.d_cond='projection'`,
Miyato & Koyama 2018): logit = w.phi(x) + e_y.phi(x), every weight of D spectrally normalised (as
their projection discriminator). Weights N(0, 0.02), BN scales N(1, 0.02); G's batch statistics over
the global batch.

Why D has spectral norm and not the published DCGAN's batch norm: with BN in D as well
(`--config.model.d_norm=batch --config.model.d_spectral_norm=False`), D overpowered G (D(G(z)) about
0.05 from step 500 on) and G hardly used the labels: after the `:cpu` run below, a classifier
(96% accurate on held-out digits) agreed with the requested class for 17% of 1,000 EMA samples
(chance: 10%). With spectral norm in D, the same run ends balanced (d_loss 0.84, g_loss 1.08) and 66%
agree: rows 0, 1, 6, 7 and 8 are recognisable, 4/9 and 5/3 still mix. Non-saturating
loss, Adam(2e-4, b1 = 0.5) for both, batch 128, 10,000 iterations (about 25 epochs of 50,000 digits).
The sample grids and `gan_jax.load_run(...).sample` use an exponential moving average of G
(decay 0.999 from step 1,000; `ema.*`), sampled with each grid's own batch statistics
(`model.sample_bn='train'`).

Data: MNIST's IDX files, by default in $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist (another
folder: `--config.data.dir=FOLDER`), train[0:50000] with its labels, pixels in [-1, 1], NHWC.

Produces `samples.png` (100 samples: row r shows digit r, from fixed noise, every 1,000 steps),
`curves.png`, `metrics.jsonl`, checkpoints (with the EMA generator and the batch statistics) and
`summary.json`. Expected training time on one GPU: not measured.
`--config=experiments/configs/cdcgan_mnist.py:cpu` is a narrower version for a CPU (64/32 and 32/64
channels, batch 64, 3,000 iterations, one iteration per dispatch: XLA:CPU is slow for convolutions
inside the multi-step loop, docs/PERFORMANCE.md): 3,000 steps in 194 s (17.3 it/s) on two shared
cores, measured 2026-12-01 with `python -m gan_jax.main --config=experiments/configs/cdcgan_mnist.py:cpu
--workdir=runs/cdcgan_mnist_cpu`; the class agreement above is of this run.
`:smoke` is seconds long, for tests.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(arg: str = ""):
  check_arg(arg, ("smoke", "cpu"))
  c = base_config()
  c.num_steps = 10_000
  c.batch_size = 128
  c.update_mode = "alternating"
  c.k_disc_steps = 1
  c.steps_per_dispatch = 100
  c.log_every = 100
  c.sample_every = 1000
  c.checkpoint_every = 2000
  c.num_samples = 100  # 10 per digit

  c.data.source = "idx"
  c.data.name = "mnist"
  c.data.dir = ""  # the default folder of data.name: $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist
  c.data.num_train = 50_000
  c.data.scale = "symmetric"
  c.data.layout = "nhwc"

  c.model.noise = "gaussian"
  c.model.noise_dim = 100
  c.model.generator = "dcgan"
  c.model.g_channels = (256, 128)
  c.model.g_upsample = "transposed"
  c.model.g_output = "tanh"
  c.model.g_bias_from_data = False
  c.model.discriminator = "dcgan"
  c.model.d_channels = (64, 128)
  c.model.g_norm = "batch"
  c.model.d_norm = "none"
  c.model.d_spectral_norm = True
  c.model.normal_init_std = 0.02
  c.model.sample_bn = "train"
  c.model.num_classes = 10
  c.model.g_cond = "cbn"
  c.model.d_cond = "projection"

  c.loss.name = "non_saturating"
  c.optimizer.name = "adam"
  c.optimizer.g_lr = 2e-4
  c.optimizer.d_lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999

  c.ema.decay = 0.999
  c.ema.start_step = 1000
  c.ema.warmup = 0
  if arg == "cpu":
    c.model.g_channels, c.model.d_channels = (64, 32), (32, 64)
    c.batch_size, c.num_steps = 64, 3000
    c.steps_per_dispatch, c.sample_every, c.checkpoint_every = 1, 500, 1000
    c.ema.start_step = 500
  if arg == "smoke":  # tiny widths: seconds on a CPU
    c.model.g_channels, c.model.d_channels = (8, 8), (8, 8)
    c.batch_size = 20
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 4, 2, 2, 4, 4
    c.num_samples = 20
    c.ema.start_step = 2
  return c
