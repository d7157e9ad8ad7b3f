"""Training throughput: the gan_jax trainer against a bare JAX loop of the same arithmetic.

  python -m gan_jax.bench [--models=mnist_mlp,dcgan32] [--modes=step,scan,vmap,bf16,bare]
                          [--seeds=8,16] [--steps_per_dispatch=N] [--repeats=R] [--json_out=PATH]
                          [--profile]

Models: `mnist_mlp` is the paper's MNIST pair with its exact update (experiments/configs/mnist_paper.py:
batch 100, per-example dropout, simultaneous update, paper SGD); `dcgan32` is experiments/configs/
dcgan_32.py (batch 128, alternating update, Adam). Data is synthetic: random uint8 images of the real
shape and count, resident on the device, so nothing is downloaded.

Modes (each row of the table):
  step   the trainer (`parallel.Runner`, what `gan_jax.train` runs), one iteration per dispatch,
         the gradient norms measured in every `steps_per_dispatch`-th (as if it logged there);
  scan   the trainer, `steps_per_dispatch` iterations in one `lax.scan` per dispatch, the gradient
         norms measured at its last iteration;
  vmap   N seeds trained as one vmapped program (`gan_jax.vmap_train`), N from `--seeds`;
  bf16   `scan` with `model.compute_dtype='bfloat16'` (the conv model; params stay float32);
  bare   the ceiling: the same models, optimizer, data gather and random draws written as plain JAX
         functions (no gan_jax classes, no metrics beyond the two losses), scanned like `scan`.
         With bf16 selected, `bare` also runs in bf16 so that each dtype has its own ceiling; with
         step selected, `bare_step` runs it one iteration per dispatch, the ceiling of `step`.

Compilation is timed apart. Each dispatch is timed on its own, round-robin over the modes (so a noisy
neighbour slows every mode alike), and a row reports the best of `--repeats` dispatches. `vs bare` is a
row's images/s over its ceiling's (same dtype, same dispatch style). On a CPU the default is `--quick`
(DCGAN widths /4 and batch 16, 4 steps per dispatch, 2 rounds); `--noquick` runs the real sizes, for
accelerators. FLOPs per iteration are counted analytically (`flops_per_iteration`).

`--profile` adds where a step's time goes: a `jax.profiler` trace of each model's one-step trainer
program, its instructions' time summed by kind (matmul/conv, random numbers, the rest) and by pass.
"""

import collections
import dataclasses
import datetime
import functools
import glob
import gzip
import json
import math
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from gan_jax import conv_models, gan as gan_lib, parallel
from gan_jax.data import pipeline
from gan_jax.errors import UserError

MODELS = ("mnist_mlp", "dcgan32")
MODES = ("step", "scan", "vmap", "bf16", "bare")
# --quick (the default on CPUs): the DCGAN's widths divided by 4 and its batch 16. XLA:CPU runs
# convolutions inside loops ~10x slower (see `GAN.train_steps`), and 16 vmapped seeds multiply that.
QUICK_WIDTH_DIVISOR = 4
QUICK_DCGAN_BATCH = 16


# ============================================================================ configs and data
_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "configs")


def _experiment_config(name: str) -> ml_collections.ConfigDict:
  """`experiments/configs/NAME.py`'s `get_config()` (the repository's, next to this package)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = os.path.join(_CONFIG_DIR, f"{name}.py")
  if not os.path.exists(path):
    raise UserError(f"{path} not found: run the benchmark from a source checkout (pip install -e .)")
  spec = importlib.util.spec_from_file_location(f"_bench_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def bench_config(model: str, compute_dtype: str = "float32", quick: bool = False, batch_size: int = 0):
  """The config a benchmark row trains: the experiment config of `model`, parallel mode 'none'.

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


# ============================================================================ the bare loop
# Plain functions of plain parameter dicts: what someone would write for these two models without
# gan_jax. Same layer sizes, activations, dropout, optimizer, data gather and amount of randomness;
# one key per purpose per step instead of per example.
def _dense(p, x, dtype):
  return jnp.dot(x.astype(dtype), p["w"].astype(dtype)) + p["b"].astype(dtype)


def _dropout(key, x, keep):
  if keep >= 1.0:
    return x
  return lax.select(jax.random.bernoulli(key, keep, x.shape), x / keep, jnp.zeros_like(x))


def _conv(p, x, stride, dtype):
  y = lax.conv_general_dilated(x.astype(dtype), p["w"].astype(dtype), (stride, stride), "SAME",
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + p["b"].astype(dtype)


def _conv_transpose(p, x, dtype):
  y = lax.conv_transpose(x.astype(dtype), p["w"].astype(dtype), (2, 2), "SAME",
                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + p["b"].astype(dtype)


def _bare_params(mc, example_shape, seed):
  """Parameter dicts {'g': [...], 'd': [...]} with the models' shapes (values only need the scale).

  Drawn with numpy: eager JAX would compile a sampler per distinct shape, minutes on a busy CPU.
  """
  rng = np.random.default_rng(seed)

  def layer(shape):
    w = rng.standard_normal(shape, dtype=np.float32) / np.float32(math.sqrt(math.prod(shape[:-1])))
    return {"w": w, "b": np.zeros(shape[-1:], np.float32)}

  if mc.generator == "mlp":
    widths = [mc.noise_dim, *mc.g_hidden, math.prod(example_shape)]
    g = [layer((a, b)) for a, b in zip(widths[:-1], widths[1:])]
  else:
    h, w, c = example_shape
    n = len(mc.g_channels)
    g = [layer((mc.noise_dim, (h >> n) * (w >> n) * mc.g_channels[0]))]
    chans = [*mc.g_channels, c]
    k = 4 if mc.g_upsample == "transposed" else 3
    g += [layer((k, k, a, b)) for a, b in zip(chans[:-1], chans[1:])]
  if mc.discriminator == "maxout":
    widths = [math.prod(example_shape), *mc.d_hidden]
    d = [layer((a, b * mc.d_pieces)) for a, b in zip(widths[:-1], widths[1:])]
    d.append(layer((widths[-1], 1)))
  else:
    h, w, c = example_shape
    chans = [c, *mc.d_channels]
    d = [layer((4, 4, a, b)) for a, b in zip(chans[:-1], chans[1:])]
    d.append(layer(((h >> len(mc.d_channels)) * (w >> len(mc.d_channels)) * chans[-1], 1)))
  return {"g": g, "d": d}


def _bare_generator(mc, example_shape, dtype):
  if mc.generator == "mlp":
    def g(params, z):
      h = z
      for p in params[:-1]:
        h = jax.nn.relu(_dense(p, h, dtype))
      out = jax.nn.sigmoid(_dense(params[-1], h, dtype).astype(jnp.float32))
      return out.reshape((z.shape[0],) + tuple(example_shape))
    return g

  hh, ww, _ = example_shape
  n = len(mc.g_channels)

  def g(params, z):
    h = jax.nn.relu(_dense(params[0], z, dtype)).reshape(z.shape[0], hh >> n, ww >> n, mc.g_channels[0])
    for i, p in enumerate(params[1:]):
      if mc.g_upsample == "transposed":
        h = _conv_transpose(p, h, dtype)
      else:
        h = _conv(p, conv_models.upsample_2x(h, mc.g_resize), 1, dtype)
      if i < len(params) - 2:
        h = jax.nn.relu(h)
    return jnp.tanh(h.astype(jnp.float32))
  return g


def _bare_discriminator(mc, dtype):
  if mc.discriminator == "maxout":
    keeps = [mc.d_input_keep] + [mc.d_hidden_keep] * len(mc.d_hidden)

    def d(params, x, key):
      h = x.reshape(x.shape[0], -1)
      keys = jax.random.split(key, len(keeps))
      for i, p in enumerate(params[:-1]):
        h = _dense(p, _dropout(keys[i], h, keeps[i]), dtype)
        h = h.reshape(h.shape[0], -1, mc.d_pieces).max(axis=-1)
      return _dense(params[-1], _dropout(keys[-1], h, keeps[-1]), dtype)[:, 0].astype(jnp.float32)
    return d

  def d(params, x, key):
    del key
    h = x
    for p in params[:-1]:
      h = jax.nn.leaky_relu(_conv(p, h, 2, dtype), 0.2)
    return _dense(params[-1], h.reshape(h.shape[0], -1), dtype)[:, 0].astype(jnp.float32)
  return d


def _paper_sgd(oc, lr0, steps_per_epoch):
  log_decay = math.log(oc.decay_factor)

  def init(params):
    return jax.tree.map(np.zeros_like, params)

  def update(params, grads, vel, t):
    lr = jnp.maximum(lr0 * jnp.exp(-log_decay * t.astype(jnp.float32)), oc.min_lr)
    epoch = t // steps_per_epoch + 1
    alpha = jnp.clip((epoch - 1) / max(oc.momentum_saturate_epoch - 1, 1), 0.0, 1.0)
    m = oc.momentum_start + (oc.momentum_end - oc.momentum_start) * alpha
    vel = jax.tree.map(lambda v, g: m * v - lr * g, vel, grads)
    return jax.tree.map(jnp.add, params, vel), vel
  return init, update


def _adam(oc, lr, eps=1e-8):
  def init(params):
    return (jax.tree.map(np.zeros_like, params), jax.tree.map(np.zeros_like, params))

  def update(params, grads, state, t):
    mu, nu = state
    mu = jax.tree.map(lambda m, g: oc.b1 * m + (1 - oc.b1) * g, mu, grads)
    nu = jax.tree.map(lambda v, g: oc.b2 * v + (1 - oc.b2) * g * g, nu, grads)
    c1 = 1 - oc.b1 ** (t + 1).astype(jnp.float32)
    c2 = 1 - oc.b2 ** (t + 1).astype(jnp.float32)
    params = jax.tree.map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), params, mu, nu)
    return params, (mu, nu)
  return init, update


def make_bare(config, example_shape, num_examples: int):
  """(init(seed) -> carry, steps(carry, arrays) -> (carry, losses [num, 2])): the bare training loop.

  `steps` runs `config.steps_per_dispatch` iterations in one `lax.scan`. The update is the config's:
  `simultaneous` (both gradients from one batch and one set of samples, the paper's reference code) or
  `alternating` with k = 1 (a D step on one batch, then a G step on fresh noise).
  """
  mc, oc, batch = config.model, config.optimizer, config.batch_size
  dtype = jnp.bfloat16 if mc.compute_dtype == "bfloat16" else jnp.float32
  if config.k_disc_steps != 1:
    raise UserError("the bare loop implements k_disc_steps=1 only")
  gen, disc = _bare_generator(mc, example_shape, dtype), _bare_discriminator(mc, dtype)
  spe = max(num_examples // batch, 1)
  opt = _paper_sgd if oc.name == "paper_sgd" else (lambda o, lr, _: _adam(o, lr))
  (g_init, g_update), (d_init, d_update) = opt(oc, oc.g_lr, spe), opt(oc, oc.d_lr, spe)
  w = config.loss.d_weight
  sqrt3 = math.sqrt(3)
  convert = ((lambda x: x.astype(jnp.float32) / 255.0) if config.data.scale == "unit"
             else (lambda x: x.astype(jnp.float32) / 127.5 - 1.0))

  def noise(key):
    if mc.noise == "uniform":
      return jax.random.uniform(key, (batch, mc.noise_dim), minval=-sqrt3, maxval=sqrt3)
    return jax.random.normal(key, (batch, mc.noise_dim))

  def init(seed):
    p = _bare_params(mc, example_shape, seed)
    perm = np.random.default_rng(seed).permutation(num_examples).astype(np.int32)
    return {"p": p, "g_opt": g_init(p["g"]), "d_opt": d_init(p["d"]), "t": np.int32(0),
            "key": np.asarray(jax.random.key_data(jax.random.PRNGKey(seed))), "perm": perm,
            "epoch": np.int32(0), "position": np.int32(0)}

  def next_batch(images, s, data_key):
    def new_epoch(s):
      perm = jax.random.permutation(jax.random.fold_in(data_key, s["epoch"] + 1), num_examples)
      return dict(s, perm=perm.astype(jnp.int32), epoch=s["epoch"] + 1, position=jnp.int32(0))

    s = lax.cond((s["position"] + 1) * batch > num_examples, new_epoch, lambda s: s, s)
    idx = lax.dynamic_slice_in_dim(s["perm"], s["position"] * batch, batch)
    return convert(jnp.take(images, idx, axis=0)), dict(s, position=s["position"] + 1)

  def d_loss_fn(real_logits, fake_logits):
    return w * (jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits)))

  def g_loss_fn(fake_logits):
    return jnp.mean(jax.nn.softplus(-fake_logits))

  def step(s, images):
    key = jax.random.fold_in(s["key"], s["t"])
    k_noise, k_real, k_fake, k_noise_g, k_fake_g = jax.random.split(key, 5)
    x, s = next_batch(images, s, jax.random.fold_in(s["key"], 1))
    z = noise(k_noise)
    gp, dp = s["p"]["g"], s["p"]["d"]
    if config.update_mode == "simultaneous":
      def joint(gp, dp):
        fake_logits = disc(dp, gen(gp, z), k_fake)
        return d_loss_fn(disc(dp, x, k_real), fake_logits), g_loss_fn(fake_logits)

      (d_loss, g_loss), vjp = jax.vjp(joint, gp, dp)
      one, zero = jnp.ones_like(d_loss), jnp.zeros_like(d_loss)
      d_grads = vjp((one, zero))[1]
      g_grads = vjp((zero, one))[0]
      dp, d_opt = d_update(dp, d_grads, s["d_opt"], s["t"])
    else:
      fake = gen(gp, z)
      d_loss, d_grads = jax.value_and_grad(
          lambda dp: d_loss_fn(disc(dp, x, k_real), disc(dp, fake, k_fake)))(dp)
      dp, d_opt = d_update(dp, d_grads, s["d_opt"], s["t"])
      z_g = noise(k_noise_g)
      g_loss, g_grads = jax.value_and_grad(lambda gp: g_loss_fn(disc(dp, gen(gp, z_g), k_fake_g)))(gp)
    gp, g_opt = g_update(gp, g_grads, s["g_opt"], s["t"])
    s = dict(s, p={"g": gp, "d": dp}, g_opt=g_opt, d_opt=d_opt, t=s["t"] + 1)
    return s, jnp.stack([d_loss, g_loss])

  def steps(s, arrays):
    if config.steps_per_dispatch == 1:  # no loop, as `GAN.train_steps` (XLA:CPU's in-loop convolutions)
      s, losses = step(s, arrays["train"])
      return s, losses[None]
    return lax.scan(lambda s, _: step(s, arrays["train"]), s, None, length=config.steps_per_dispatch)

  return init, steps


# ============================================================================ FLOPs
def _taps(size: int, kernel: int, stride: int, transpose: bool = False) -> int:
  """(output position, kernel tap) pairs along one axis that read a real input pixel, not padding.

  'SAME' padding as `lax`: a stride-2 convolution pads (1, 1) for the 4x4 kernel, a stride-1 one
  (1, 1) for 3x3; the 4x4 stride-2 transposed convolution reads a 2x dilated input padded (2, 2).
  """
  if transpose:
    return sum(1 for o in range(2 * size) for t in range(kernel)
               if (o + t - 2) % 2 == 0 and 0 <= (o + t - 2) // 2 < size)
  out = -(-size // stride)
  pad = max((out - 1) * stride + kernel - size, 0) // 2
  return sum(1 for o in range(out) for t in range(kernel) if 0 <= o * stride + t - pad < size)


def layer_macs(config, example_shape):
  """Multiply-accumulates per example of each layer: ({'g': [...], 'd': [...]}) in layer order.

  Convolutions count only the taps that read real pixels (what XLA's cost analysis counts too);
  padding near the borders of these small images is 6-23% of a 4x4 kernel's taps.
  """
  mc = config.model
  if mc.generator == "mlp":
    widths = [mc.noise_dim, *mc.g_hidden, math.prod(example_shape)]
    g = [a * b for a, b in zip(widths[:-1], widths[1:])]
  else:
    h, w, c = example_shape
    n = len(mc.g_channels)
    h, w = h >> n, w >> n
    g = [mc.noise_dim * h * w * mc.g_channels[0]]
    chans = [*mc.g_channels, c]
    for a, b in zip(chans[:-1], chans[1:]):
      if mc.g_upsample == "transposed":
        g.append(_taps(h, 4, 2, transpose=True) * _taps(w, 4, 2, transpose=True) * a * b)
      else:  # a 3x3 convolution on the 2x resized image
        g.append(_taps(2 * h, 3, 1) * _taps(2 * w, 3, 1) * a * b)
      h, w = 2 * h, 2 * w
  if mc.discriminator == "maxout":
    widths = [math.prod(example_shape), *mc.d_hidden]
    d = [a * b * mc.d_pieces for a, b in zip(widths[:-1], widths[1:])] + [widths[-1]]
  else:
    h, w, c = example_shape
    chans = [c, *mc.d_channels]
    d = []
    for a, b in zip(chans[:-1], chans[1:]):
      d.append(_taps(h, 4, 2) * _taps(w, 4, 2) * a * b)
      h, w = h // 2, w // 2
    d.append(h * w * chans[-1])
  return {"g": g, "d": d}


def flops_per_iteration(config, example_shape) -> int:
  """Matmul/conv FLOPs of one training iteration (2 per multiply-accumulate; elementwise work ignored).

  A layer of M MACs costs 2M forward, 2M for its weight gradient and 2M for its input gradient. Input
  gradients stop where nothing upstream is trained: at D's input on the D step (data and samples are
  constants there) and at G's input (the noise) always.
    simultaneous: G fwd, D fwd on 2B, D weight grads on 2B, D input grads on 2B down to layer 2,
                  D input grads on the B samples down to the images (for G's loss), G weight and input
                  grads: 3G - G1 + 7D - 2 D1 forward-costs per example.
    alternating:  the D step (G fwd, D fwd/weight grads on 2B, input grads down to layer 2) and the
                  G step (G and D fwd, D input grads, G weight and input grads): 4G - G1 + 8D - 2 D1.
  """
  macs = layer_macs(config, example_shape)
  g, d = 2 * sum(macs["g"]), 2 * sum(macs["d"])
  g1, d1 = 2 * macs["g"][0], 2 * macs["d"][0]
  if config.update_mode == "simultaneous":
    per_example = 3 * g - g1 + 7 * d - 2 * d1
  else:
    per_example = 4 * g - g1 + 8 * d - 2 * d1
  return config.batch_size * per_example


# ============================================================================ timing
@dataclasses.dataclass
class Case:
  """One row: `call()` runs one timed dispatch of `iters` iterations of `runs` runs of `batch` images."""

  model: str
  mode: str
  compute_dtype: str
  call: object
  iters: int
  batch: int
  runs: int = 1
  compile_s: float = 0.0
  times: list = dataclasses.field(default_factory=list)

  @property
  def name(self) -> str:
    return f"{self.mode}{self.runs}" if self.mode == "vmap" else self.mode


def _trainer_case(model, mode, config, data, num_steps, calls, grad_norms="last"):
  """The trainer as `gan_jax.train` runs it: `parallel.Runner`, donated state, metrics left on device,
  gradient norms measured in the last of `calls` dispatches (as at a log step), unless
  `grad_norms="every"` (at every iteration; `experiments/perf/grad_norm_cost.py`)."""
  gan = gan_lib.build_gan(config, data)
  runner = parallel.Runner(gan, "none")
  state = runner.put(gan.init(config.seed, None))
  arrays = runner.put(data.arrays)
  modes = ["every"] * calls if grad_norms == "every" else ["none"] * (calls - 1) + ["last"]
  for m in set(modes):
    runner.compiled(state, arrays, num_steps, m)
  box = {"state": state}

  def call():
    state, metrics = box["state"], None
    for m in modes:
      state, metrics = runner.run(state, arrays, num_steps, m)
    box["state"] = state
    return metrics

  return Case(model, mode, config.model.compute_dtype, call, num_steps * calls, config.batch_size,
              compile_s=runner.compile_time_s)


def _vmap_case(model, config, data, runs):
  """`runs` seeds as one vmapped program: `gan_jax.vmap_train.VmapGroup`."""
  from gan_jax import vmap_train  # pylint: disable=g-import-not-at-top
  configs = []
  for i in range(runs):
    c = config.copy_and_resolve_references()
    c.seed = config.seed + i
    configs.append(c)
  group = vmap_train.VmapGroup.build(configs, data)
  n = config.steps_per_dispatch
  box = {"state": group.init()}
  t0 = time.perf_counter()
  group._compiled(n, "last")  # pylint: disable=protected-access
  compile_s = time.perf_counter() - t0

  def call():  # as `vmap_train.train` runs it: the gradient norms at the dispatch's last iteration
    box["state"], metrics = group.run(box["state"], n, "last")
    return metrics

  return Case(model, "vmap", config.model.compute_dtype, call, n, config.batch_size, runs=runs,
              compile_s=compile_s)


def _bare_case(model, mode, config, data, num_steps, calls):
  config = config.copy_and_resolve_references()
  config.steps_per_dispatch = num_steps
  init, steps = make_bare(config, data.example_shape, data.sampler.num_examples)
  device = jax.local_devices()[0]
  box = {"state": jax.device_put(init(config.seed), device)}
  arrays = jax.device_put(data.arrays, device)
  t0 = time.perf_counter()
  fn = jax.jit(steps, donate_argnums=0).lower(box["state"], arrays).compile()
  compile_s = time.perf_counter() - t0

  def call():
    losses = None
    for _ in range(calls):
      box["state"], losses = fn(box["state"], arrays)
    return losses

  return Case(model, mode, config.model.compute_dtype, call, num_steps * calls, config.batch_size,
              compile_s=compile_s)


def build_cases(model, modes, seeds, steps_per_dispatch, quick, num_examples=None, batch_size=0, log=print):
  """The benchmark rows of `model` for `modes`, compiled (compile time recorded per row)."""
  dtypes = ["float32"] + (["bfloat16"] if "bf16" in modes else [])
  cases = []
  for dtype in dtypes:
    config = bench_config(model, dtype, quick, batch_size)
    config.steps_per_dispatch = steps_per_dispatch
    n = num_examples or config.data.num_train
    data = synthetic_data(config, n)
    todo = []
    if dtype == "float32":
      if "step" in modes:
        todo.append(("step", lambda: _trainer_case(model, "step", config, data, 1, steps_per_dispatch)))
      if "scan" in modes:
        todo.append(("scan", lambda: _trainer_case(model, "scan", config, data, steps_per_dispatch, 1)))
      if "vmap" in modes:
        for runs in seeds:
          todo.append((f"vmap{runs}", functools.partial(_vmap_case, model, config, data, runs)))
    else:
      todo.append(("bf16", lambda: _trainer_case(model, "bf16", config, data, steps_per_dispatch, 1)))
    if "bare" in modes:
      todo.append(("bare", lambda: _bare_case(model, "bare", config, data, steps_per_dispatch, 1)))
      if "step" in modes and dtype == "float32" and steps_per_dispatch > 1:  # else `bare` has no loop
        todo.append(("bare_step", lambda: _bare_case(model, "bare_step", config, data, 1, steps_per_dispatch)))
    for name, make in todo:
      t0 = time.perf_counter()
      case = make()
      cases.append(case)
      log(f"  compiled {model}/{name} ({dtype}) in {case.compile_s:.1f} s "
          f"[{time.perf_counter() - t0:.1f} s with setup]")
  return cases


def time_cases(cases, repeats: int, log=print):
  """A warm-up dispatch per case, then `repeats` rounds timing each case once (round-robin)."""
  for case in cases:
    jax.block_until_ready(case.call())
  t_start = time.perf_counter()
  for r in range(repeats):
    for case in cases:
      t0 = time.perf_counter()
      jax.block_until_ready(case.call())
      case.times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_start
    eta = elapsed / (r + 1) * (repeats - r - 1)
    rates = ", ".join(f"{c.model}/{c.name} {c.iters * c.runs / c.times[-1]:.1f} it/s" for c in cases)
    log(f"  round {r + 1}/{repeats} ({elapsed:.0f} s, ETA {eta:.0f} s): {rates}")


def summarize(cases, flops: dict) -> list[dict]:
  """JSON rows: best and median it/s (summed over vmapped runs), images/s, compile time, ratio to the
  row's ceiling.

  `vs_bare` is the median over rounds of the row's images/s over its ceiling's in the same round:
  both were timed within seconds of each other, so a neighbour's load that comes and goes between
  rounds cancels out (best-of-rounds figures can come from different rounds).
  """
  rows = []
  for c in cases:
    best, median = min(c.times), float(np.median(c.times))
    its = c.iters * c.runs / best
    rows.append({
        "model": c.model, "mode": c.name, "compute_dtype": c.compute_dtype, "runs": c.runs,
        "batch": c.batch, "iters_per_dispatch": c.iters, "iters_per_s": its,
        "iters_per_s_median": c.iters * c.runs / median, "images_per_s": its * c.batch,
        "compile_s": c.compile_s, "dispatch_times_s": c.times,
        "tflops_per_s": its * flops[c.model][c.compute_dtype] / 1e12,
    })
  for row in rows:
    # One step per dispatch against the bare loop dispatched the same way; the rest against the scan.
    same = [r for r in rows if r["model"] == row["model"] and r["compute_dtype"] == row["compute_dtype"]]
    bare = [r for r in same if r["mode"] == "bare_step" and row["mode"] in ("step", "bare_step")]
    bare = bare or [r for r in same if r["mode"] == "bare"]
    if not bare:
      row["vs_bare"] = None
      continue
    bare = bare[0]
    work, bare_work = row["iters_per_dispatch"] * row["runs"], bare["iters_per_dispatch"] * bare["runs"]
    ratios = [(work / t) / (bare_work / tb) for t, tb in zip(row["dispatch_times_s"], bare["dispatch_times_s"])]
    row["vs_bare"] = float(np.median(ratios))
  return rows


def format_table(rows) -> str:
  """A fixed-width table of the rows."""
  head = (f"{'model':<10} {'mode':<9} {'dtype':<9} {'it/s':>9} {'images/s':>10} {'TFLOP/s':>8} "
          f"{'compile s':>9} {'vs bare':>7} {'floor it/s':>10}")
  lines = [head, "-" * len(head)]
  for r in rows:
    ratio = f"{r['vs_bare']:.3f}" if r["vs_bare"] is not None else "-"
    floor = f"{r['floor_iters_per_s']:.1f}" if r.get("floor_iters_per_s") else "-"
    lines.append(f"{r['model']:<10} {r['mode']:<9} {r['compute_dtype']:<9} {r['iters_per_s']:>9.2f} "
                 f"{r['images_per_s']:>10.0f} {r['tflops_per_s']:>8.3f} {r['compile_s']:>9.1f} {ratio:>7} "
                 f"{floor:>10}")
  lines.append("it/s: best round, summed over vmapped runs; vs bare: median over rounds of the same-round "
               "ratio to the bare loop (same dtype and dispatch style); floor it/s: the iteration's FLOPs "
               "at the device's float32 matmul rate (the physical floor, as iterations/s)")
  return "\n".join(lines)


def matmul_peak_flops(m: int = 200, k: int = 1200, n: int = 1200, seconds: float = 1.0) -> float:
  """FLOP/s of one float32 [m, k] x [k, n] matmul on the default device, best of 3 timings of
  back-to-back dispatches: what the device reaches on the paper model's largest matmul (D and G on
  2 x 100 examples, 1200 wide), the practical peak for the physical floor of these models."""
  x, w = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
  f = jax.jit(lambda x, w: x @ w)
  jax.block_until_ready(f(x, w))
  t0, calls = time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds / 10 or calls < 3:
    jax.block_until_ready(f(x, w))
    calls += 1
  calls = max(3, int(calls * 10 / 3))  # ~seconds/3 per timing
  best = float("inf")
  for _ in range(3):
    t0 = time.perf_counter()
    for _ in range(calls):
      y = f(x, w)
    jax.block_until_ready(y)
    best = min(best, (time.perf_counter() - t0) / calls)
  return 2.0 * m * k * n / best


def run(models, modes, seeds=(8, 16), steps_per_dispatch=5, repeats=3, quick=False, num_examples=None,
        batch_size=0, log=print) -> dict:
  """Builds, compiles and times every (model, mode) row; returns the JSON report.

  Args:
    models: names from `MODELS`.
    modes: names from `MODES`.
    seeds: run counts for the `vmap` mode.
    steps_per_dispatch: iterations per timed dispatch (the `step` mode makes this many dispatches).
    repeats: timed rounds; each row reports its best round.
    quick: shrink the DCGAN (`bench_config`), for CPUs.
    num_examples: synthetic training examples (default: the real data set's training split size).
    batch_size: overrides both experiments' batch size (0: 100 for mnist_mlp, 128 for dcgan32).
    log: called with progress lines.
  """
  for m in models:
    if m not in MODELS:
      raise UserError(f"unknown model {m!r} in --models; choose from {','.join(MODELS)}")
  for m in modes:
    if m not in MODES:
      raise UserError(f"unknown mode {m!r} in --modes; choose from {','.join(MODES)}")
  if steps_per_dispatch < 1 or repeats < 1 or any(s < 1 for s in seeds) or batch_size < 0:
    raise UserError("--steps_per_dispatch, --repeats and --seeds must be >= 1, --batch_size >= 0")
  t0 = time.perf_counter()
  cases, flops = [], {}
  for model in models:
    model_modes = [m for m in modes if m != "bf16" or model == "dcgan32"]
    flops[model] = {}
    for dtype in ("float32", "bfloat16"):
      config = bench_config(model, dtype, quick, batch_size)
      shape = (784,) if model == "mnist_mlp" else (32, 32, 3)
      flops[model][dtype] = flops_per_iteration(config, shape)
    log(f"{model}: {flops[model]['float32'] / 1e9:.2f} GFLOP per iteration; compiling")
    cases += build_cases(model, model_modes, seeds, steps_per_dispatch, quick, num_examples, batch_size, log)
  log(f"timing {len(cases)} rows, {repeats} rounds")
  time_cases(cases, repeats, log)
  rows = summarize(cases, flops)
  peak = matmul_peak_flops()
  log(f"float32 matmul [200,1200]x[1200,1200]: {peak / 1e12:.3f} TFLOP/s")
  for row in rows:  # the physical floor: the iteration's FLOPs at that matmul rate
    row["floor_iters_per_s"] = row["runs"] * peak / flops[row["model"]][row["compute_dtype"]]
  device = jax.devices()[0]
  return {
      "date": datetime.date.today().isoformat(),
      "command": " ".join(["python -m gan_jax.bench"] + sys.argv[1:]),
      "platform": device.platform,
      "device_kind": device.device_kind,
      "cpu_count": os.cpu_count(),
      "jax_version": jax.__version__,
      "quick": quick,
      "steps_per_dispatch": steps_per_dispatch,
      "repeats": repeats,
      "flops_per_iteration": flops,
      "matmul_peak_tflops": peak / 1e12,
      "total_time_s": time.perf_counter() - t0,
      "rows": rows,
  }


# ============================================================================ profile
PROFILE_KINDS = ("matmul/conv", "random numbers", "other (elementwise, reductions, copies)")
_RANDOM_OPS = re.compile(r"_bernoulli|_uniform|_normal|threefry|random_bits|_split|fold_in|permutation")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.-]+) = .*?\s([a-z][a-z0-9-]*)\(")


def _top_level_ops(hlo_text: str) -> dict:
  """{instruction name: (kind, pass)} for the ENTRY computation of an HLO module.

  Only top-level instructions are kept: a `while` (here: threefry's loop) is timed as a whole, so
  the instructions of its body, which the trace also lists, are not counted twice. `pass` is
  'backward' for instructions from a transposed (gradient) computation, 'forward' for the others
  that name their source, 'unattributed' for those XLA created without a source (e.g. the weight
  gradients of transposed convolutions, rewritten as dilated convolutions).
  """
  ops, in_entry = {}, False
  for line in hlo_text.splitlines():
    if line.startswith("ENTRY"):
      in_entry = True
      continue
    if in_entry and line.startswith("}"):
      break
    m = _INSTRUCTION.match(line) if in_entry else None
    if not m:
      continue
    name, opcode = m.groups()
    op_name = re.search(r'op_name="([^"]*)"', line)
    op_name = op_name.group(1) if op_name else ""
    if _RANDOM_OPS.search(op_name):
      kind = PROFILE_KINDS[1]
    elif opcode in ("dot", "convolution") or re.search(r"ynn|dot|conv|gemm", name):
      kind = PROFILE_KINDS[0]
    else:
      kind = PROFILE_KINDS[2]
    ops[name] = (kind, "backward" if "transpose(" in op_name else "forward" if op_name else "unattributed")
  return ops


def _trace(run_once, hlo_text: str, dispatches: int) -> dict:
  """Runs `run_once` (one step, returns something to block on) `dispatches` times under
  `jax.profiler` and sums the trace's durations of `hlo_text`'s top-level instructions."""
  ops = _top_level_ops(hlo_text)
  for _ in range(2):  # warm-up
    jax.block_until_ready(run_once())
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      for _ in range(dispatches):
        out = run_once()
      jax.block_until_ready(out)
    traces = glob.glob(os.path.join(logdir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(traces[0]) as f:
      events = json.load(f)["traceEvents"]
  per_op = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("name") in ops:
      per_op[e["name"]] += e.get("dur", 0) / 1e3 / dispatches
  kinds = {k: 0.0 for k in PROFILE_KINDS}
  passes = {"forward": 0.0, "backward": 0.0, "unattributed": 0.0}
  for name, ms in per_op.items():
    kinds[ops[name][0]] += ms
    passes[ops[name][1]] += ms
  return {"total": sum(kinds.values()), "kinds": kinds, "passes": passes,
          "top": [(name, ms, ops[name][0]) for name, ms in per_op.most_common(6)]}


def profile_step(model: str, quick: bool, batch_size: int = 0, dispatches: int = 5) -> dict:
  """Where one training step's time goes, in the trainer and in the bare loop.

  Traces `dispatches` one-step dispatches of each with `jax.profiler` (the trainer's program of the
  dispatches it does not log, without gradient norms) and sums the durations of the
  program's top-level instructions by kind (`PROFILE_KINDS`) and by pass (forward, or gradient:
  instructions from a transposed computation). Returns {'model', 'trainer': {...}, 'bare': {...}},
  each with milliseconds per step: 'total', 'kinds', 'passes', 'top' [(instruction, ms, kind)].
  The profiler slows a CPU down several times (its wall time is not reported): compare the shares,
  and the trainer with the bare loop, not these milliseconds with the timed table.
  """
  config = bench_config(model, "float32", quick, batch_size)
  config.steps_per_dispatch = 1
  data = synthetic_data(config, config.data.num_train)
  gan = gan_lib.build_gan(config, data)
  runner = parallel.Runner(gan, "none")
  box = {"state": runner.put(gan.init(config.seed, None))}
  arrays = runner.put(data.arrays)

  def trainer_once():
    box["state"], metrics = runner.run(box["state"], arrays, 1, "none")
    return metrics

  trainer = _trace(trainer_once, runner.compiled(box["state"], arrays, 1, "none").as_text(), dispatches)
  init, steps = make_bare(config, data.example_shape, data.sampler.num_examples)
  device = jax.local_devices()[0]
  box["bare"] = jax.device_put(init(config.seed), device)
  bare_arrays = jax.device_put(data.arrays, device)
  fn = jax.jit(steps, donate_argnums=0).lower(box["bare"], bare_arrays).compile()

  def bare_once():
    box["bare"], losses = fn(box["bare"], bare_arrays)
    return losses

  bare = _trace(bare_once, fn.as_text(), dispatches)
  return {"model": model, "trainer": trainer, "bare": bare}


def format_profile(p: dict) -> str:
  """Lines of a `profile_step` result: the trainer's and the bare loop's columns side by side."""
  t, b = p["trainer"], p["bare"]
  lines = [f"{p['model']}: instruction time of one step under jax.profiler (ms, share)   trainer      bare loop"]
  for group in ("kinds", "passes"):
    for k in t[group]:
      label = k if group == "kinds" else f"{k} pass"
      lines.append(f"  {label:<48} {t[group][k]:7.2f} {t[group][k] / t['total']:5.0%}  "
                   f"{b[group][k]:7.2f} {b[group][k] / b['total']:5.0%}")
  lines.append(f"  {'total':<48} {t['total']:7.2f}        {b['total']:7.2f}")
  lines.append("  trainer's slowest: " + ", ".join(f"{n} {ms:.2f} ms ({k.split()[0]})" for n, ms, k in t["top"]))
  return "\n".join(lines)


# ============================================================================ command line
def _main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  quick = f.quick if f.quick is not None else jax.default_backend() == "cpu"
  spd = f.steps_per_dispatch or (4 if quick else 200)
  repeats = f.repeats or (2 if quick else 5)

  def parse(text, name):
    return [t.strip() for t in text.split(",") if t.strip()] or _fail(f"--{name} is empty")

  try:
    seeds = [int(s) for s in parse(f.seeds, "seeds")]
  except ValueError:
    raise UserError(f"--seeds must be comma-separated integers, got {f.seeds!r}") from None
  if quick:
    print(f"quick: DCGAN widths /{QUICK_WIDTH_DIVISOR} and batch {f.batch_size or QUICK_DCGAN_BATCH}, "
          f"{spd} steps per dispatch, {repeats} rounds (--noquick for the real sizes)", flush=True)
  report = run(parse(f.models, "models"), parse(f.modes, "modes"), seeds, spd, repeats, quick,
               f.num_examples or None, f.batch_size, log=lambda s: print(s, flush=True))
  if f.profile:
    report["profiles"] = [profile_step(m, quick, f.batch_size) for m in parse(f.models, "models")]
  print(f"\n{report['device_kind']} ({report['platform']}), {report['date']}, {report['command']}")
  print(format_table(report["rows"]))
  for p in report.get("profiles", []):
    print(format_profile(p))
  if f.json_out:
    os.makedirs(os.path.dirname(os.path.abspath(f.json_out)), exist_ok=True)
    with open(f.json_out, "w", encoding="utf-8") as out:
      json.dump(report, out, indent=2)
    print(f"wrote {f.json_out}")


def _fail(message):
  raise UserError(message)


if __name__ == "__main__":
  from absl import flags  # pylint: disable=g-import-not-at-top

  from gan_jax import cli  # pylint: disable=g-import-not-at-top

  flags.DEFINE_string("models", ",".join(MODELS), f"Comma-separated models: {', '.join(MODELS)}.")
  flags.DEFINE_string("modes", ",".join(MODES), f"Comma-separated modes: {', '.join(MODES)}.")
  flags.DEFINE_string("seeds", "8,16", "Comma-separated run counts for the vmap mode.")
  flags.DEFINE_integer("steps_per_dispatch", 0, "Iterations per timed dispatch (0: 4 quick, 200 otherwise).")
  flags.DEFINE_integer("repeats", 0, "Timed rounds per row, best reported (0: 2 quick, 5 otherwise).")
  flags.DEFINE_integer("num_examples", 0, "Synthetic training examples (0: the real training split's size).")
  flags.DEFINE_integer("batch_size", 0, "Batch size of every model (0: the experiment's, 100 and 128).")
  flags.DEFINE_bool("quick", None, "Small DCGAN, few steps (default: on when JAX runs on a CPU).")
  flags.DEFINE_string("json_out", "", "Write the report as JSON here.")
  flags.DEFINE_bool("profile", False, "Also trace a few one-step dispatches of each model's trainer "
                    "with jax.profiler and print where a step's time goes.")
  sys.exit(cli.run(_main))
