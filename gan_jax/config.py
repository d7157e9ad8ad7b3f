"""The base configuration: every key a run reads, with its default.

Experiment configs in `experiments/configs/` start from `base_config()` and override what they need.
Any key can be overridden on the command line: `--config.batch_size=64 --config.data.source=idx`.
"""

import ml_collections

from gan_jax.errors import UserError


def base_config() -> ml_collections.ConfigDict:
  """A ConfigDict with every key gan_jax reads."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_steps = 1000
  c.batch_size = 100
  c.k_disc_steps = 1  # discriminator steps per generator step (Algorithm 1's k)
  c.update_mode = "alternating"  # 'alternating' (Algorithm 1) | 'simultaneous' (reference code)
  c.steps_per_dispatch = 100  # iterations per jit call, run with lax.scan
  # Matmul precision the run's programs are compiled at (`matmul_precision`): 'default' (JAX's own:
  # float32 matmuls as TF32 on NVIDIA GPUs since Ampere, as bfloat16 passes on TPUs, exact on CPUs)
  # | 'float32' (exact) | 'tensorfloat32' | 'bfloat16' (JAX's fastest level: the programs of
  # 'default' with the level written out).
  c.precision = "default"

  c.data = ml_collections.ConfigDict()
  c.data.source = "toy"  # 'toy' | 'digits' | 'idx' | 'cifar10' | 'folder' | 'tfds' (docs/DATA.md)
  c.data.name = "ring_2d"  # toy name, TFDS dataset name, or the name of a fetched data set ('mnist')
  # IDX, CIFAR-10 or image folder, or TFDS data_dir. '' = the default: for idx and cifar10
  # $GAN_JAX_DATA/NAME or ~/gan_jax_data/NAME (`python -m gan_jax.data.fetch NAME`), for TFDS its own.
  c.data.dir = ""
  c.data.num_train = 50000  # train = first num_train of the train set; validation = the rest
  c.data.scale = "unit"  # 'unit' [0, 1] | 'symmetric' [-1, 1]
  c.data.layout = "flat"  # 'flat' | 'nhwc'
  c.data.gcn = False  # global contrast normalisation (the paper's CIFAR-10 setting)
  c.data.gcn_scale = 55.0
  # Image folders (source 'folder').
  c.data.resolution = 0  # centre-crop to a square and resize to this size; 0 = keep (all the same size)
  c.data.channels = 3  # 1 = grey, 3 = RGB
  c.data.bad_files = "error"  # an unreadable image: 'error' (names it) | 'skip' (counted and logged)
  # 'device': the training split on the device | 'stream': read on the host by Grain, a dispatch at a
  # time | 'auto': stream when the split is over device_limit_mb (docs/DATA.md, "Streaming").
  c.data.pipeline = "auto"
  c.data.device_limit_mb = 2048.0
  c.data.workers = 0  # streamed runs: decoding threads (0 = one per CPU core)
  # Toy densities.
  c.data.mean = 0.0  # gaussian_1d
  c.data.means = (-2.0, 2.0)  # mixture_1d
  c.data.std = 0.02  # every toy: std of each Gaussian component
  c.data.num_modes = 8  # ring_2d
  c.data.radius = 2.0  # ring_2d
  c.data.grid_side = 5  # grid_2d
  c.data.spacing = 2.0  # grid_2d

  c.model = ml_collections.ConfigDict()
  c.model.noise = "uniform"  # 'uniform' U[-sqrt 3, sqrt 3] | 'gaussian' N(0, 1)
  c.model.noise_dim = 100
  c.model.generator = "mlp"  # 'mlp' | 'dcgan'
  c.model.g_hidden = (1200, 1200)
  c.model.g_activation = "relu"
  c.model.g_output = "sigmoid"  # 'sigmoid' | 'tanh' | 'linear'
  c.model.g_init_scale = 0.05  # weights U(-s, s); 0 = LeCun normal
  c.model.g_bias_from_data = True  # output bias = inverse output activation of the data mean
  c.model.discriminator = "maxout"  # 'maxout' | 'mlp' | 'dcgan'
  c.model.d_hidden = (240, 240)
  c.model.d_pieces = 5
  c.model.d_activation = "relu"  # 'mlp' discriminator only
  c.model.d_input_keep = 0.8  # dropout keep probability on D's input ('maxout')
  c.model.d_hidden_keep = 0.5  # dropout keep probability on later layers' inputs
  c.model.d_init_scale = 0.005
  c.model.compute_dtype = "float32"  # 'float32' | 'bfloat16' (params stay float32)
  c.model.d_spectral_norm = False  # D uses W / sigma(W) for every weight matrix (gan_jax/core/penalties.py)
  # 'dcgan' generator/discriminator (gan_jax/models/dcgan.py); NHWC data only.
  c.model.g_channels = (256, 128, 64)  # dense to the first width, then one 2x upsampling per later width
  c.model.g_upsample = "transposed"  # 'transposed' (4x4 stride-2) | 'resize_conv' (2x resize, 3x3 conv)
  c.model.g_resize = "nearest"  # 'resize_conv' only: 'nearest' | 'bilinear'
  c.model.d_channels = (64, 128, 256)  # one 4x4 stride-2 conv + leaky ReLU per width

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "non_saturating"  # 'minimax' | 'non_saturating' | 'least_squares' | 'hinge' | 'wasserstein'
  c.loss.d_weight = 1.0  # D's loss scale; the reference code uses 0.5
  c.loss.penalty = "none"  # gradient penalty on D: 'none' | 'wgan_gp' | 'zero_gp' | 'r1' (gan_jax/core/penalties.py)
  c.loss.penalty_weight = 10.0  # its weight (WGAN-GP's lambda; gamma / 2 for R1)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # 'adam' | 'sgd' | 'paper_sgd'
  c.optimizer.g_lr = 2e-4
  c.optimizer.d_lr = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  c.optimizer.momentum = 0.0  # 'sgd'
  c.optimizer.decay_factor = 1.000004  # 'paper_sgd': lr_t = lr / decay_factor**t ...
  c.optimizer.min_lr = 1e-6  # ... floored here
  c.optimizer.momentum_start = 0.5  # 'paper_sgd': momentum in epoch 1 ...
  c.optimizer.momentum_end = 0.7  # ... rising linearly to this ...
  c.optimizer.momentum_saturate_epoch = 250  # ... at this epoch

  c.log_every = 100
  c.sample_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.num_samples = 100  # images in each sample grid (fixed noise)

  # Evaluation during training (gan_jax/evaluation/scorer.py; docs/EVALUATION.md).
  c.eval_every = 0  # score the generator every this many steps and at the end; 0 = never
  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = "fid"  # comma-separated: fid, kid, pr (precision/recall), dc (density/coverage), is
  c.eval.extractor = "auto"  # 'inception' (needs eval.weights) | 'classifier' | 'auto' (Inception if found)
  c.eval.weights = ""  # the FID Inception weights file ('' = $GAN_JAX_INCEPTION_WEIGHTS or torch's cache)
  c.eval.num_samples = 5000  # generated samples per evaluation (the common protocol: 50,000)
  c.eval.num_real = 0  # reference images (0 = the whole split)
  c.eval.split = "train"  # the reference split: 'train' (the common protocol) | 'validation' | 'test'
  c.eval.best = "fid"  # keep the checkpoint with the best value of this result in checkpoints_best/ ('' = none)

  c.parallel = ml_collections.ConfigDict()
  c.parallel.mode = "auto"  # 'auto' | 'none' | 'pmap' | 'sharding'
  c.parallel.coordinator_address = ""  # multi-host: 'host:port' of process 0
  c.parallel.num_processes = 0  # 0: single process (or auto-detected on TPU pods / SLURM)
  c.parallel.process_id = -1

  # The paper's CIFAR-10 models (gan_jax/models/cifar.py): generators 'cifar_mlp', 'cifar_deconv',
  # discriminator 'conv_maxout'. Its dense maxout layers use d_hidden and d_pieces above.
  c.model.g_hidden_activations = ("relu", "sigmoid")  # one per g_hidden layer
  c.model.g_output_init_scale = 0.5  # 'cifar_mlp' output layer U(-s, s); 0 = g_init_scale
  c.model.g_deconv_kernel = 5  # 'cifar_deconv': the transposed convolution's kernel ...
  c.model.g_deconv_stride = 3  # ... and stride; the last hidden layer is reshaped to fit
  c.model.d_conv_channels = (32, 32, 192)  # 'conv_maxout': per convolutional layer ...
  c.model.d_conv_kernels = (8, 8, 5)
  c.model.d_conv_pads = (4, 3, 3)
  c.model.d_pool_shapes = (4, 4, 2)
  c.model.d_pool_strides = (2, 2, 2)
  c.model.d_conv_pieces = 2  # ... and maxout pieces in each

  # Components for ablations (docs/COMPONENTS.md). Every one is off by default.
  # Normalisation: batch norm in G and/or D ('dcgan' and 'resnet' models), statistics over the global batch.
  c.model.g_norm = "none"  # 'none' | 'batch'
  c.model.d_norm = "none"  # 'none' | 'batch' (D then sees whole batches: no per-example dropout)
  c.model.bn_momentum = 0.9  # running statistics: new = momentum * old + (1 - momentum) * batch
  c.model.sample_bn = "train"  # sampling with BN in G: 'train' (the sample batch's statistics) | 'eval' (running)
  c.model.normal_init_std = 0.0  # > 0: 'dcgan' weights N(0, std), BN scales N(1, std) (Radford et al.: 0.02)
  # Class-conditional GANs: labels from the data; G by an embedding or conditional BN, D by projection or ACGAN.
  c.model.num_classes = 0  # 0 = unconditional
  c.model.g_cond = "embed"  # 'embed' (one-hot embedding concatenated to z) | 'cbn' (conditional batch norm)
  c.model.d_cond = "projection"  # 'projection' (Miyato & Koyama 2018) | 'acgan' (auxiliary classifier)
  # 'resnet' generator/discriminator (gan_jax/models/resnet.py; SNGAN's CIFAR-10 pair by default).
  c.model.g_res_channels = (256, 256, 256)  # dense to 4x4 x the first width, one up-ResBlock per width
  c.model.g_res_base = 4  # side of G's first feature map
  c.model.d_res_channels = (128, 128, 128, 128)  # first = the optimised block, then one ResBlock per width
  c.model.d_res_down = (True, True, False, False)  # which D blocks halve the resolution
  c.model.attention_res = 0  # > 0: a SAGAN self-attention block at this feature-map side in G and D

  c.loss.augment = ""  # DiffAugment on every D input in training: e.g. 'translation,cutout,color'; '' = off
  c.loss.bcr_real = 0.0  # balanced consistency regularisation weights (lambda_real, lambda_fake); 0 = off
  c.loss.bcr_fake = 0.0
  c.loss.bcr_augment = "flip,translation"  # bCR's augmentation T (gan_jax/core/augment.py operations)
  c.loss.penalty_every = 1  # lazy regularisation: the penalty every N D updates, scaled by N
  c.loss.acgan_weight = 1.0  # model.d_cond='acgan': weight of the auxiliary classification losses

  c.optimizer.preset = ""  # '' | 'ttur' (D lr 4e-4, G lr 1e-4, b1 0, b2 0.9; replaces those four keys)
  c.optimizer.schedule = "constant"  # 'constant' | 'linear' (linear decay to 0 over decay_steps)
  c.optimizer.warmup_steps = 0  # linear warm-up from 0 over this many iterations ('adam' and 'sgd')
  c.optimizer.decay_steps = 0  # 'linear': iterations to reach 0 (0 = num_steps)
  c.optimizer.d_clip = 0.0  # > 0: clip every D parameter to [-c, c] after each D update (WGAN: 0.01)

  c.ema = ml_collections.ConfigDict()  # exponential moving average of G's parameters (gan_jax/core/ema.py)
  c.ema.decay = 0.0  # 0 = off; e.g. 0.999 (BigGAN 0.9999)
  c.ema.start_step = 0  # the average equals G's parameters up to this step
  c.ema.warmup = 0  # then the decay ramps linearly from 0 to `decay` over this many steps
  c.ema.use_for_samples = True  # sample grids and evaluation use the averaged generator
  return c


PRECISIONS = ("default", "float32", "tensorfloat32", "bfloat16")


def matmul_precision(config):
  """A context manager that compiles what runs inside it at `config.precision`.

  'default' changes nothing (JAX's default precision); the others are
  `jax.default_matmul_precision(NAME)`, which XLA reads when a program is traced and compiled.

  Raises:
    UserError: an unknown `precision`.
  """
  import contextlib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  name = config.get("precision", "default")
  if name not in PRECISIONS:
    raise UserError(f"unknown precision {name!r}; choose one of {list(PRECISIONS)}")
  return contextlib.nullcontext() if name == "default" else jax.default_matmul_precision(name)


# Keys that only drive the training loop (how long a dispatch is, how often it logs, samples and
# checkpoints, how it is parallelised): they never change what a run computes.
DRIVER_KEYS = ("steps_per_dispatch", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
               "num_samples", "parallel.", "eval_every", "eval.", "data.workers")


def matches(key: str, patterns) -> bool:
  """Whether flat `key` is one of `patterns`, a pattern ending in '.' naming a whole group."""
  return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def is_driver_key(key: str) -> bool:
  """Whether a flat config key only drives the loop (`DRIVER_KEYS`)."""
  return matches(key, DRIVER_KEYS)


def flatten(config) -> dict:
  """A config (or its JSON dict) as one flat dict of JSON values, {'optimizer.g_lr': 2e-4, ...}."""
  import json  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top  (keeps `import config` light)
  tree = json.loads(config.to_json()) if isinstance(config, ml_collections.ConfigDict) else config
  return traverse_util.flatten_dict(tree, sep=".") if tree else {}


def load_module(path: str, what: str = "config file"):
  """Imports a Python file (a config or sweep file) as a module; any error in it is one UserError."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise UserError(f"{what} {path} does not exist; pass a path such as experiments/configs/digits.py")
  name = "gan_jax_file_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  # any error in a user's file: one line
    raise UserError(f"cannot load {what} {path}: {type(e).__name__}: {e}") from e
  return module


def from_file(path_arg: str, what: str = "config file") -> ml_collections.ConfigDict:
  """`get_config(ARG)` of `FILE.py[:ARG]`."""
  path, _, arg = path_arg.partition(":")
  module = load_module(path, what)
  if not callable(getattr(module, "get_config", None)):
    raise UserError(f"{what} {path} has no get_config() function; a config file defines "
                    "get_config(arg='') returning an ml_collections.ConfigDict")
  return module.get_config(arg) if arg else module.get_config()
