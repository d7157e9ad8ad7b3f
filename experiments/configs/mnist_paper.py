"""The paper's MNIST model with its exact hyperparameters (Goodfellow et al. 2014, `mnist.yaml`).

  python -m gan_jax.data.fetch mnist
  python -m gan_jax.main --config=experiments/configs/mnist_paper.py --workdir=runs/mnist_paper

Data: a folder of MNIST IDX files (`train-images-idx3-ubyte[.gz]`, ...), by default
$GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist (where the fetch command puts them; another folder:
`--config.data.dir=FOLDER`), train[0:50000], pixels in [0, 1].
Model: z ~ U[-sqrt 3, sqrt 3]^100; G 100 -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid with weights
U(-0.05, 0.05) and its output bias at the logit of the mean pixel; D maxout 240x5 -> 240x5 -> sigmoid,
weights U(-0.005, 0.005), dropout keep 0.8 on pixels and 0.5 after. SGD: lr 0.1 / 1.000004^t (floor
1e-6), momentum 0.5 -> 0.7 over 250 epochs, batch 100. The reference code's update: D and G gradients
from the same batch and samples (`simultaneous`), non-saturating G loss, D's cross-entropy halved.
`--config.update_mode=alternating` gives Algorithm 1 instead.

2,000 epochs are 1,000,000 iterations: a job for an accelerator (a plain JAX implementation reaches
about 4,000 it/s on one H100); a 2-core CPU manages only a few iterations per second. Score a run with
`python -m gan_jax.paper.table1 --workdir=runs/mnist_paper` (docs/REPRODUCTION.md).
"""

from gan_jax.config import base_config
from gan_jax.validation import check_arg


def get_config(smoke: str = ""):
  check_arg(smoke)
  c = base_config()
  c.num_steps = 1_000_000  # 2,000 epochs of 500 batches; the paper does not record its stopping epoch
  c.batch_size = 100
  c.update_mode = "simultaneous"
  # Full float32 matmuls, as the reference code computed (no TF32 or bfloat16 passes on a GPU).
  c.precision = "float32"
  c.k_disc_steps = 1
  c.steps_per_dispatch = 500
  c.log_every = 500
  c.sample_every = 50_000
  c.checkpoint_every = 50_000

  c.data.source = "idx"
  c.data.name = "mnist"
  c.data.dir = ""  # the default folder of data.name: $GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist
  c.data.num_train = 50_000
  c.data.scale = "unit"
  c.data.layout = "flat"

  c.model.noise = "uniform"
  c.model.noise_dim = 100
  c.model.generator = "mlp"
  c.model.g_hidden = (1200, 1200)
  c.model.g_activation = "relu"
  c.model.g_output = "sigmoid"
  c.model.g_init_scale = 0.05
  c.model.g_bias_from_data = True
  c.model.discriminator = "maxout"
  c.model.d_hidden = (240, 240)
  c.model.d_pieces = 5
  c.model.d_input_keep = 0.8
  c.model.d_hidden_keep = 0.5
  c.model.d_init_scale = 0.005

  c.loss.name = "non_saturating"
  c.loss.d_weight = 0.5

  c.optimizer.name = "paper_sgd"
  c.optimizer.g_lr = 0.1
  c.optimizer.d_lr = 0.1
  c.optimizer.decay_factor = 1.000004
  c.optimizer.min_lr = 1e-6
  c.optimizer.momentum_start = 0.5
  c.optimizer.momentum_end = 0.7
  c.optimizer.momentum_saturate_epoch = 250
  if smoke:
    c.num_steps, c.steps_per_dispatch, c.log_every, c.sample_every, c.checkpoint_every = 20, 10, 10, 20, 20
  return c
