"""The paper's fully connected CIFAR-10 model (Goodfellow et al. 2014, `cifar10_fully_connected.yaml`).

  python -m gan_jax.data.fetch cifar10
  python -m gan_jax.main --config=experiments/configs/cifar10_fc.py --workdir=runs/cifar10_fc

Data: CIFAR-10's python archive `cifar-10-python.tar.gz` (or its extracted folder), by default in
$GAN_JAX_DATA/cifar10 or ~/gan_jax_data/cifar10 (where the fetch command puts it; another folder:
`--config.data.dir=FOLDER`), read by gan_jax/data/cifar10.py with the reference code's split:
train = data_batch_1..4 (40,000 images, 400 batches of 100 per epoch as in pylearn2), validation =
data_batch_5, global contrast normalisation with scale 55, flattened to 3072 values. Model:
z ~ N(0, 1)^100; G 100 -> 8000 ReLU -> 8000 sigmoid -> 3072 linear, weights U(-0.05, 0.05) and
U(-0.5, 0.5) for the output layer, biases 0; D maxout 1600x5 -> 1600x5 -> sigmoid, weights
U(-0.005, 0.005), dropout keep 0.8 on the input and 0.5 after (inverted scaling, as the reference
code's input_scales 1.25 and 2). SGD: lr 0.025 / 1.000004^t (floor 1e-6), momentum 0.5 -> 0.7 over
250 epochs, batch 100; the reference code's simultaneous update and losses.

The paper does not record the stopping epoch; 500 epochs (200,000 iterations) are set. GPU time not
yet measured; on 2 CPU cores this model (89M generator parameters) is impractical.
`get_config("smoke")` keeps the architecture's shape with narrow layers, for a seconds-long check.
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 200_000  # 500 epochs of 400 batches
  c.batch_size = 100
  c.update_mode = "simultaneous"
  # Full float32 matmuls, as the reference code computed (no TF32 or bfloat16 passes on a GPU).
  c.precision = "float32"
  c.k_disc_steps = 1
  c.steps_per_dispatch = 400
  c.log_every = 400
  c.sample_every = 20_000
  c.checkpoint_every = 20_000

  c.data.source = "cifar10"
  c.data.name = "cifar10"
  c.data.dir = ""  # the default folder: $GAN_JAX_DATA/cifar10 or ~/gan_jax_data/cifar10
  c.data.num_train = 40_000  # data_batch_1..4; data_batch_5 is validation
  c.data.scale = "unit"
  c.data.layout = "flat"
  c.data.gcn = True
  c.data.gcn_scale = 55.0

  c.model.noise = "gaussian"
  c.model.noise_dim = 100
  c.model.generator = "cifar_mlp"
  c.model.g_hidden = (8000, 8000)
  c.model.g_hidden_activations = ("relu", "sigmoid")
  c.model.g_init_scale = 0.05
  c.model.g_output_init_scale = 0.5
  c.model.g_bias_from_data = False  # commented out in the yaml
  c.model.discriminator = "maxout"
  c.model.d_hidden = (1600, 1600)
  c.model.d_pieces = 5
  c.model.d_input_keep = 0.8
  c.model.d_hidden_keep = 0.5
  c.model.d_init_scale = 0.005

  c.loss.name = "non_saturating"
  c.loss.d_weight = 0.5

  c.optimizer.name = "paper_sgd"
  c.optimizer.g_lr = 0.025
  c.optimizer.d_lr = 0.025
  c.optimizer.decay_factor = 1.000004
  c.optimizer.min_lr = 1e-6
  c.optimizer.momentum_start = 0.5
  c.optimizer.momentum_end = 0.7
  c.optimizer.momentum_saturate_epoch = 250
  if smoke:
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 4, 2, 2, 4, 4
    c.batch_size = 8
    c.model.g_hidden, c.model.d_hidden = (32, 32), (16, 16)
  return c
