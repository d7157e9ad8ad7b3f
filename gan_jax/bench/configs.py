"""What the benchmark trains: the experiment configs of its two models, and synthetic data for them."""

import os

import numpy as np

from gan_jax import config as config_lib
from gan_jax.data import pipeline
from gan_jax.errors import UserError

MODELS = ("mnist_mlp", "dcgan32")
MODES = ("step", "scan", "vmap", "bf16", "bare")
# --quick (the default on CPUs): the DCGAN's widths divided by 4 and its batch 16. XLA:CPU runs
# convolutions inside loops ~10x slower (see `GAN.train_steps`), and 16 vmapped seeds multiply that.
QUICK_WIDTH_DIVISOR = 4
QUICK_DCGAN_BATCH = 16



_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "experiments", "configs")


def _experiment_config(name: str):
  """`experiments/configs/NAME.py`'s `get_config()` (the repository's, next to this package)."""
  path = os.path.join(_CONFIG_DIR, f"{name}.py")
  if not os.path.exists(path):
    raise UserError(f"{path} not found: run the benchmark from a source checkout (pip install -e .)")
  return config_lib.from_file(path)


def bench_config(model: str, compute_dtype: str = "float32", quick: bool = False, batch_size: int = 0):
  """The config a benchmark row trains: the experiment config of `model`, parallel mode 'none'; its
  `precision` (the paper MLP's float32) is what `timing.build_cases` compiles the row at.

  Args:
    model: a name from `MODELS`.
    compute_dtype: 'float32' or 'bfloat16'.
    quick: divide the DCGAN's widths by `QUICK_WIDTH_DIVISOR`, its batch to `QUICK_DCGAN_BATCH`.
    batch_size: overrides the experiment's batch size (0: keep it, or the quick one).
  """
  if model not in MODELS:
    raise UserError(f"unknown model {model!r}; choose from {','.join(MODELS)}")
  c = _experiment_config("mnist_paper" if model == "mnist_mlp" else "dcgan_32")
  c.parallel.mode = "none"
  c.model.compute_dtype = compute_dtype
  if compute_dtype == "bfloat16":
    c.precision = "default"  # bfloat16 inputs: a float32 matmul precision would not apply
  if quick and model == "dcgan32":
    c.model.g_channels = tuple(w // QUICK_WIDTH_DIVISOR for w in c.model.g_channels)
    c.model.d_channels = tuple(w // QUICK_WIDTH_DIVISOR for w in c.model.d_channels)
    c.batch_size = QUICK_DCGAN_BATCH
  if batch_size:
    c.batch_size = batch_size
  return c


def synthetic_data(config, num_examples: int, seed: int = 0) -> pipeline.Data:
  """Random uint8 images shaped like the config's data set (MNIST 28x28x1, CIFAR-10 32x32x3)."""
  image_shape = (28, 28, 1) if config.data.name == "mnist" else (32, 32, 3)
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(num_examples,) + image_shape, dtype=np.uint8)
  x, scale, shape = pipeline.prepare_images(images, config.data)
  mean = np.full(shape, 0.5 if scale == "unit" else 0.0, np.float32)
  sampler = pipeline.Sampler(example_shape=shape, num_examples=num_examples, scale=scale)
  return pipeline.Data(sampler, {"train": x}, mean, f"synthetic_{config.data.name}",
                       image_shape=image_shape, display_scale=scale)
