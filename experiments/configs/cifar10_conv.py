"""The paper's convolutional CIFAR-10 model (Goodfellow et al. 2014, `cifar10_convolutional.yaml`).

  python -m gan_jax.data.fetch cifar10
  python -m gan_jax.main --config=experiments/configs/cifar10_conv.py --workdir=runs/cifar10_conv

Data: CIFAR-10's python archive (or its extracted folder), by default in $GAN_JAX_DATA/cifar10 or
~/gan_jax_data/cifar10 (another folder: `--config.data.dir=FOLDER`), read by gan_jax/data/cifar10.py
with the reference code's split: train = data_batch_1..4 (40,000 images), validation = data_batch_5;
global contrast normalisation with scale 55, NHWC 32x32x3.
Model (gan_jax/models/cifar.py): z ~ N(0, 1)^100; G 100 -> 8000 ReLU ->
8000 sigmoid -> reshape 80x10x10 -> 5x5 stride-3 transposed convolution to 32x32x3, linear, one bias
per output pixel, weights U(-0.05, 0.05); D three conv-maxout layers (32 ch x 2 pieces 8x8 pad 4,
pool 4/2; 32 x 2, 8x8 pad 3, pool 4/2; 192 x 2, 5x5 pad 3, pool 2/2) -> maxout 500x5 -> sigmoid,
weights U(-0.005, 0.005), dropout keep 0.8 on the pixels and 0.5 after. SGD: lr 0.004 / 1.000004^t
(floor 1e-6), momentum 0.5 -> 0.7 over 250 epochs, batch 128; simultaneous update as the reference.

The paper does not record the stopping epoch; 500 epochs (156,000 iterations) are set. GPU time not
yet measured. `get_config("smoke")` keeps the layer structure with narrow layers.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 156_000  # 500 epochs of 312 batches
  c.batch_size = 128
  c.update_mode = "simultaneous"
  # Full float32 matmuls, as the reference code computed (no TF32 or bfloat16 passes on a GPU).
  c.precision = "float32"
  c.k_disc_steps = 1
  c.steps_per_dispatch = 312
  c.log_every = 312
  c.sample_every = 15_600
  c.checkpoint_every = 15_600

  c.data.source = "cifar10"
  c.data.name = "cifar10"
  c.data.dir = ""  # the default folder: $GAN_JAX_DATA/cifar10 or ~/gan_jax_data/cifar10
  c.data.num_train = 40_000  # data_batch_1..4; data_batch_5 is validation
  c.data.scale = "unit"
  c.data.layout = "nhwc"
  c.data.gcn = True
  c.data.gcn_scale = 55.0

  c.model.noise = "gaussian"
  c.model.noise_dim = 100
  c.model.generator = "cifar_deconv"
  c.model.g_hidden = (8000, 8000)
  c.model.g_hidden_activations = ("relu", "sigmoid")
  c.model.g_init_scale = 0.05
  c.model.g_deconv_kernel = 5
  c.model.g_deconv_stride = 3
  c.model.g_bias_from_data = False
  c.model.discriminator = "conv_maxout"
  c.model.d_conv_channels = (32, 32, 192)
  c.model.d_conv_pieces = 2
  c.model.d_conv_kernels = (8, 8, 5)
  c.model.d_conv_pads = (4, 3, 3)
  c.model.d_pool_shapes = (4, 4, 2)
  c.model.d_pool_strides = (2, 2, 2)
  c.model.d_hidden = (500,)
  c.model.d_pieces = 5
  c.model.d_input_keep = 0.8
  c.model.d_hidden_keep = 0.5
  c.model.d_init_scale = 0.005

  c.loss.name = "non_saturating"
  c.loss.d_weight = 0.5

  c.optimizer.name = "paper_sgd"
  c.optimizer.g_lr = 0.004
  c.optimizer.d_lr = 0.004
  c.optimizer.decay_factor = 1.000004
  c.optimizer.min_lr = 1e-6
  c.optimizer.momentum_start = 0.5
  c.optimizer.momentum_end = 0.7
  c.optimizer.momentum_saturate_epoch = 250
  if smoke:
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 4, 2, 2, 4, 4
    c.batch_size = 8
    c.model.g_hidden = (32, 200)  # 200 = 2 channels x 10 x 10
    c.model.d_conv_channels, c.model.d_hidden = (4, 4, 8), (8,)
  return c
