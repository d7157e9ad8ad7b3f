"""The GAN: one training state and one pure update (Algorithm 1, or the reference code's simultaneous
update), written once for one device, many devices under `jax.pmap`, and `jax.jit` with shardings.

Randomness is per example. Iteration t of a run uses `fold_in(root, t)`; its phase j (the k
discriminator steps, then the generator step) uses `fold_in(., j)`, split into one key per example of
the *global* batch. Example i's noise, dropout masks and (toy) data come from its own key. A device
takes the keys of its slice of the batch, so a run's numbers do not depend on how many devices share
the batch: `pmap`, `sharding` and a single device compute the same update.

The ablation components (docs/COMPONENTS.md: EMA of G, DiffAugment, consistency regularisation,
lazy penalties, weight clipping, batch norm, class labels) are fields of `GAN` that default to off;
off, the update below computes exactly what it computed without them. The forward passes that carry
labels, batch statistics and augmentations are in gan_jax/core/nets.py.
"""

import dataclasses
import functools
import hashlib
import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from gan_jax import models
from gan_jax.core import ema as ema_lib, losses, nets, penalties, regularizers, rng
from gan_jax.core.state import OPTIONAL_FIELDS, REQUIRED_FIELDS, GANState  # pylint: disable=unused-import
from gan_jax.data.pipeline import Sampler
from gan_jax.errors import UserError

UPDATE_MODES = ("alternating", "simultaneous")
NOISE_TYPES = ("uniform", "gaussian")
# Metrics that `GAN.train_steps(..., grad_norms=...)` measures at every iteration, the last or none.
GRAD_NORM_METRICS = ("d_grad_norm", "g_grad_norm")
GRAD_NORM_MODES = ("every", "last", "none")



@dataclasses.dataclass(frozen=True)
class GAN:
  """The static parts of a GAN: models, optimizers, loss, noise and the update schedule."""

  generator: nn.Module
  discriminator: nn.Module
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  loss: losses.GANLoss
  sampler: Sampler
  batch_size: int
  noise: str = "uniform"
  noise_dim: int = 100
  k_disc_steps: int = 1
  update_mode: str = "alternating"
  d_dropout: bool = True
  penalty: str = "none"  # gradient penalty on D (gan_jax.penalties), added to D's loss
  penalty_weight: Any = 10.0  # a float, or a traced scalar when runs are vmapped (gan_jax.vmap)
  d_spectral_norm: bool = False  # D computes with spectrally normalised weights (gan_jax.penalties)
  batch_sharding: Any = None  # under jit with a Mesh: how examples are laid out across devices
  # Components for ablations (docs/COMPONENTS.md); the defaults are off and change nothing.
  ema: Any = None  # gan_jax.core.ema.EMA: a moving average of G's parameters in the state
  augment: tuple = ()  # DiffAugment operations on every D input in training (gan_jax.core.augment)
  bcr_real: float = 0.0  # consistency regularisation weights (gan_jax.core.regularizers)
  bcr_fake: float = 0.0
  bcr_augment: tuple = ("flip", "translation")
  penalty_every: int = 1  # lazy penalty: every N-th D update, times N
  d_clip: float = 0.0  # clip D's parameters to [-c, c] after each D update
  num_classes: int = 0  # class-conditional G and D (gan_jax.core.nets)
  acgan_weight: float = 0.0  # > 0: D has an ACGAN head, with these classification losses
  g_bn: bool = False  # G / D have batch norm: statistics in the state (gan_jax.core.nets)
  d_bn: bool = False
  sample_bn: str = "train"  # G's batch norm when sampling: 'train' (batch statistics) | 'eval'

  # ------------------------------------------------------------------ sampling
  def sample_noise(self, key):
    """One noise vector [noise_dim] from one key; uniform has unit variance, U[-sqrt 3, sqrt 3]."""
    if self.noise == "uniform":
      return jax.random.uniform(key, (self.noise_dim,), minval=-math.sqrt(3), maxval=math.sqrt(3))
    return jax.random.normal(key, (self.noise_dim,))

  def noise_batch(self, key, n: int):
    """[n, noise_dim] noise, example i from `split(key, n)[i]`."""
    keys = jax.random.split(key, n)
    return jax.vmap(lambda k: self.sample_noise(jax.random.fold_in(k, rng.NOISE)))(keys)

  def generate(self, g_params, z, labels=None, batch_stats=None):
    """G(z) (for a conditional G, of class `labels`; with batch norm, see `nets.g_sample`)."""
    if self.num_classes or self.g_bn:
      return nets.g_sample(self, g_params, z, labels, batch_stats)
    return self.generator.apply({"params": g_params}, z)

  def discriminate(self, d_params, x, keys=None, labels=None, batch_stats=None):
    """Logits [b]. With `keys` (one per example) D runs in training mode, each example drawing its
    own dropout mask; without, D is deterministic (dropout off, as at test time). A D with batch
    norm uses `batch_stats` (its running averages), or without them the batch's own statistics."""
    if self.d_bn:
      return nets.split_classes(self, nets.d_eval(self, d_params, x, labels, batch_stats))[0]
    return nets.split_classes(self, self.discriminate_raw(d_params, x, keys, labels))[0]

  def discriminate_raw(self, d_params, x, keys=None, labels=None):
    """`discriminate` for a D without batch norm, ACGAN's class logits left in ([b, 1 + C])."""
    if self.d_spectral_norm:
      d_params = penalties.spectral_normalize(d_params)
    kw = {"labels": labels} if self.num_classes else {}
    if keys is None or not self.d_dropout:
      return self.discriminator.apply({"params": d_params}, x, train=False, **kw)
    if self.num_classes:
      one = lambda xi, ki, yi: self.discriminator.apply(
          {"params": d_params}, xi[None], train=True, labels=yi[None], rngs={"dropout": ki})[0]
      return jax.vmap(one)(x, keys, labels)

    def one(xi, ki):
      return self.discriminator.apply({"params": d_params}, xi[None], train=True, rngs={"dropout": ki})[0]

    return jax.vmap(one)(x, keys)

  def sampling_variables(self, state: GANState):
    """(G's parameters, G's batch statistics) to sample with: the moving average when it is on."""
    use_ema = self.ema is not None and self.ema.use_for_samples
    return (state.ema_params if use_ema else state.g_params), state.g_batch_stats

  # ------------------------------------------------------------------ state
  def init(self, seed: int, mean_example=None) -> GANState:
    """A fresh state. With `mean_example`, G's output bias starts at the data mean (the paper).

    Compiled as one program (eager initialisation dispatches hundreds of small ops, seconds each
    time a process starts); `seed` is traced, so other seeds reuse the program.
    """
    bias = None
    if mean_example is not None and hasattr(self.generator, "output_activation"):
      bias = models.output_bias_for_data(mean_example, self.generator.output_activation)
    return _init_jit(self, seed, bias)

  def _init(self, seed, output_bias=None) -> GANState:
    root = jax.random.PRNGKey(seed)
    k_g, k_d = jax.random.split(jax.random.fold_in(root, rng.INIT))
    z = jnp.zeros((1, self.noise_dim))
    kw = {"labels": jnp.zeros((1,), jnp.int32)} if self.num_classes else {}
    g_vars = self.generator.init(k_g, z, **kw)
    g_params = g_vars["params"]
    x = jnp.zeros((1,) + tuple(self.sampler.example_shape))
    d_vars = self.discriminator.init(k_d, x, train=False, **kw)
    d_params = d_vars["params"]
    if output_bias is not None and "output" in g_params:
      g_params = flax.core.copy(g_params, {"output": dict(g_params["output"], bias=jnp.asarray(output_bias))})
    return GANState(
        step=jnp.int32(0), key=root, g_params=g_params, d_params=d_params,
        g_opt_state=self.g_tx.init(g_params), d_opt_state=self.d_tx.init(d_params),
        data=self.sampler.init_state(jax.random.fold_in(root, rng.DATA)),
        ema_params=g_params if self.ema is not None else None,
        g_batch_stats=g_vars["batch_stats"] if self.g_bn else None,
        d_batch_stats=d_vars["batch_stats"] if self.d_bn else None)

  # ------------------------------------------------------------------ update
  def _local(self, axis_name):
    """(offset, local batch) of this device's slice of the global batch."""
    if axis_name is None:
      return 0, self.batch_size
    n = lax.axis_size(axis_name)
    if self.batch_size % n:
      raise UserError(f"batch_size {self.batch_size} is not divisible by the {n} devices; "
                      f"use a multiple of {n}")
    b = self.batch_size // n
    return lax.axis_index(axis_name) * b, b

  def _shard(self, x):
    """Lays a global batch out across the mesh (a no-op off the sharding route)."""
    if self.batch_sharding is None:
      return x
    return lax.with_sharding_constraint(x, self.batch_sharding)

  def _example_keys(self, key, offset, b):
    keys = self._shard(jax.random.split(key, self.batch_size))
    return keys if b == self.batch_size else lax.dynamic_slice_in_dim(keys, offset, b)

  def _penalty(self, d_params, real, fake, keys, labels=None, update_index=None, pmean=None):
    """penalty_weight * the gradient penalty (0 for 'none'); `keys` are the real examples' dropout keys.
    Lazy (`penalty_every` > 1) at D update `update_index`; `labels` for a conditional D."""
    if self.penalty == "none":
      return 0.0
    if labels is None:
      d_fn = lambda x, k: self.discriminate(d_params, x, k)
    else:
      d_fn = lambda x, k, y: self.discriminate(d_params, x, k, labels=y)
    fn = lambda: self.penalty_weight * penalties.gradient_penalty(self.penalty, d_fn, real, fake, keys, labels, pmean)
    return regularizers.lazy(self.penalty_every, update_index, fn)

  def train_step(self, state: GANState, arrays, axis_name=None):
    """One training iteration; see `_update`. Returns (new_state, metrics), metrics a dict of float32
    scalars including both gradients' global norms."""
    state, metrics, (d_grads, g_grads) = self._update(state, arrays, axis_name)
    return state, _with_grad_norms(metrics, d_grads, g_grads)

  def _update(self, state: GANState, arrays, axis_name=None):
    """One training iteration: k discriminator steps then one generator step (`alternating`, the
    paper's Algorithm 1), or both gradients from one batch and one set of samples (`simultaneous`,
    the reference code). Under `pmap`, gradients and metrics are averaged over `axis_name`.

    Returns:
      (new_state, metrics, (d_grads, g_grads)): metrics is a dict of float32 scalars (losses, D's
      outputs and accuracies); the gradients are the last ones each network was updated with.
    """
    offset, b = self._local(axis_name)
    step_key = jax.random.fold_in(jax.random.fold_in(state.key, rng.TRAIN), state.step)
    data_key = jax.random.fold_in(state.key, rng.DATA)
    pmean = (lambda t: lax.pmean(t, axis_name)) if axis_name else (lambda t: t)
    fold = jax.random.fold_in

    def draw(phase, data_state):
      keys = self._example_keys(fold(step_key, phase), offset, b)
      y = y_fake = None
      if self.num_classes:
        x, y, data_state = self.sampler.next_labeled(arrays, data_state, data_key, keys, offset, self.batch_size)
        y, y_fake = self._shard(y), nets.sample_labels(self, keys)
      else:
        x, data_state = self.sampler.next(arrays, data_state, data_key, keys, offset, self.batch_size)
      x = self._shard(x)
      z = jax.vmap(lambda k: self.sample_noise(fold(k, rng.NOISE)))(keys)
      drop_real = jax.vmap(lambda k: fold(k, rng.DROP_REAL))(keys)
      drop_fake = jax.vmap(lambda k: fold(k, rng.DROP_FAKE))(keys)
      return nets.Batch(x, z, drop_real, drop_fake, keys, y, y_fake), data_state

    def d_losses(d_params, g_params, bt, g_stats, d_stats, update_index):
      """(D's loss, G's loss, (real logits, fake logits), G's and D's statistics after the batch)."""
      fake, g_stats = nets.g_train(self, g_params, g_stats, bt.z, bt.y_fake, axis_name)
      real, d_stats = nets.d_train(self, d_params, d_stats, bt.x, bt.y_real, bt.drop_real, bt.keys,
                                   rng.AUG_REAL, axis_name)
      fk, d_stats = nets.d_train(self, d_params, d_stats, fake, bt.y_fake, bt.drop_fake, bt.keys,
                                 rng.AUG_FAKE, axis_name)
      d_loss = self.loss.d(real.logits, fk.logits) + self._penalty(d_params, bt.x, fake, bt.drop_real, bt.y_real,
                                                                   update_index, pmean)
      if nets.has_d_extras(self):
        d_loss = d_loss + nets.d_extras(self, d_params, d_stats, bt, real, fk, axis_name)
      g_loss = self.loss.g(fk.logits)
      if self.acgan_weight:
        g_loss = g_loss + nets.g_extras(self, fk, bt)
      return d_loss, g_loss, (real.logits, fk.logits), (g_stats, d_stats)

    def d_objective(d_params, g_params, bt, g_stats, d_stats, update_index):
      # G's running statistics do not advance in D's steps.
      d_loss, _, logits, (_, d_stats) = d_losses(d_params, g_params, bt, g_stats, d_stats, update_index)
      return d_loss, (logits, d_stats)

    def g_objective(g_params, d_params, bt, g_stats, d_stats):
      fake, g_stats = nets.g_train(self, g_params, g_stats, bt.z, bt.y_fake, axis_name)
      fk, _ = nets.d_train(self, d_params, d_stats, fake, bt.y_fake, bt.drop_fake, bt.keys, rng.AUG_FAKE, axis_name)
      g_loss = self.loss.g(fk.logits)
      if self.acgan_weight:
        g_loss = g_loss + nets.g_extras(self, fk, bt)
      return g_loss, (fk.logits, g_stats)

    g_params, d_params = state.g_params, state.d_params
    g_opt, d_opt, data_state = state.g_opt_state, state.d_opt_state, state.data
    g_stats, d_stats = state.g_batch_stats, state.d_batch_stats

    def d_update(d_params, d_opt, d_grads):
      updates, d_opt = self.d_tx.update(d_grads, d_opt, d_params)
      d_params = optax.apply_updates(d_params, updates)
      if self.d_clip:
        d_params = regularizers.clip_params(d_params, self.d_clip)
      return d_params, d_opt

    if self.update_mode == "alternating":
      for j in range(self.k_disc_steps):
        bt, data_state = draw(j, data_state)
        (d_loss, ((real_logits, fake_logits), d_stats)), d_grads = jax.value_and_grad(
            d_objective, has_aux=True)(d_params, g_params, bt, g_stats, d_stats, state.step * self.k_disc_steps + j)
        d_grads = pmean(d_grads)
        d_params, d_opt = d_update(d_params, d_opt, d_grads)
      bt, _ = draw(self.k_disc_steps, data_state)
      (g_loss, (_, g_stats)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(
          g_params, d_params, bt, g_stats, d_stats)
      g_grads = pmean(g_grads)
    elif self.update_mode == "simultaneous":
      bt, data_state = draw(0, data_state)

      def joint(g_params, d_params):
        d_loss, g_loss, logits, stats = d_losses(d_params, g_params, bt, g_stats, d_stats, state.step)
        return (d_loss, g_loss), (logits, stats)

      (d_loss, g_loss), vjp, ((real_logits, fake_logits), (g_stats, d_stats)) = jax.vjp(
          joint, g_params, d_params, has_aux=True)
      one, zero = jnp.ones_like(d_loss), jnp.zeros_like(d_loss)
      d_grads = pmean(vjp((one, zero))[1])
      g_grads = pmean(vjp((zero, one))[0])
      d_params, d_opt = d_update(d_params, d_opt, d_grads)
    else:
      raise UserError(f"unknown update_mode {self.update_mode!r}; choose one of {list(UPDATE_MODES)}")

    updates, g_opt = self.g_tx.update(g_grads, g_opt, g_params)
    g_params = optax.apply_updates(g_params, updates)
    ema_params = state.ema_params
    if self.ema is not None:
      ema_params = ema_lib.update(self.ema, ema_params, g_params, state.step + 1)

    d_real, d_fake = jax.nn.sigmoid(real_logits), jax.nn.sigmoid(fake_logits)
    metrics = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "value": losses.value(real_logits, fake_logits),
        "d_real": jnp.mean(d_real),
        "d_fake": jnp.mean(d_fake),
        "d_acc_real": jnp.mean((real_logits > 0).astype(jnp.float32)),
        "d_acc_fake": jnp.mean((fake_logits < 0).astype(jnp.float32)),
    }
    metrics = pmean(metrics)
    new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params,
                              g_opt_state=g_opt, d_opt_state=d_opt, data=data_state, ema_params=ema_params,
                              g_batch_stats=g_stats, d_batch_stats=d_stats)
    return new_state, metrics, (d_grads, g_grads)

  def train_steps(self, state: GANState, arrays, num_steps: int, axis_name=None, grad_norms: str = "every"):
    """`num_steps` iterations in one `lax.scan`; metrics come back stacked [num_steps].

    `grad_norms` says where the two gradient norms (`GRAD_NORM_METRICS`) are measured: at "every"
    iteration (stacked [num_steps] like the other metrics), at the "last" one only (shape [1]), or
    "none" (left out). They read every gradient a second time, which costs the paper MLP 7-11% of
    its iteration on a CPU (docs/PERFORMANCE.md), so the trainer asks for them at the last
    iteration of the dispatches it logs only. The losses are stacked at every iteration in all
    three: a non-finite gradient makes the next iteration's losses non-finite, which the trainer
    checks.
    """
    if grad_norms not in GRAD_NORM_MODES:
      raise ValueError(f"grad_norms must be one of {GRAD_NORM_MODES}, got {grad_norms!r}")
    if num_steps == 1:
      # No loop at all: XLA:CPU runs convolutions inside a loop body on a slow path (10x and more,
      # jax-ml/jax#12868), and a one-trip scan still compiles to a loop.
      state, metrics, grads = self._update(state, arrays, axis_name)
      if grad_norms != "none":
        metrics = _with_grad_norms(metrics, *grads)
      return state, jax.tree.map(lambda m: m[None], metrics)

    if grad_norms == "every":
      def body(s, _):
        return self.train_step(s, arrays, axis_name)

      return lax.scan(body, state, None, length=num_steps)

    if grad_norms == "none":
      def body_none(s, _):
        s, metrics, _ = self._update(s, arrays, axis_name)
        return s, metrics

      return lax.scan(body_none, state, None, length=num_steps)

    def body_last(carry, _):  # the loop carries the gradients out; their norms are taken once, after it
      s, _ = carry
      s, metrics, grads = self._update(s, arrays, axis_name)
      return (s, grads), metrics

    zeros = jax.tree.map(jnp.zeros_like, (state.d_params, state.g_params))
    (state, grads), metrics = lax.scan(body_last, (state, zeros), None, length=num_steps)
    norms = _with_grad_norms({}, *grads)
    return state, dict(metrics, **{k: v[None] for k, v in norms.items()})


def _with_grad_norms(metrics, d_grads, g_grads):
  # Gradients are averaged over devices before this, so the norms agree on every device.
  return dict(metrics, d_grad_norm=optax.global_norm(d_grads), g_grad_norm=optax.global_norm(g_grads))


def fixed_noise(gan: GAN, seed: int, n: int):
  """The noise batch used for sample grids: the same for every step of a run."""
  return gan.noise_batch(jax.random.fold_in(jax.random.PRNGKey(seed), rng.SAMPLES), n)


@functools.partial(jax.jit, static_argnums=0)
def _init_jit(gan, seed, output_bias):
  return gan._init(seed, output_bias)  # pylint: disable=protected-access


@functools.partial(jax.jit, static_argnums=(0, 3))
def _generate_jit(gan, g_params, key, n, batch_stats=None):
  z = gan.noise_batch(key, n)
  if not (gan.num_classes or gan.g_bn):
    return gan.generate(g_params, z)
  labels = nets.sample_labels(gan, jax.random.split(key, n)) if gan.num_classes else None
  return gan.generate(g_params, z, labels, batch_stats)


def generate_samples(gan: GAN, g_params, key, n: int, batch: int = 1000) -> np.ndarray:
  """n samples from G as a host array, in batches of `batch`.

  `g_params` is G's parameters, or a whole `GANState`: then the parameters and batch statistics of
  `GAN.sampling_variables` (the moving average when it is on). A conditional G draws each sample's
  class uniformly, from the key of its noise vector.
  """
  stats = None
  if isinstance(g_params, GANState):
    g_params, stats = gan.sampling_variables(g_params)
  out = []
  for i in range(0, n, batch):
    out.append(np.asarray(_generate_jit(gan, g_params, jax.random.fold_in(key, i), min(batch, n - i), stats)))
  return np.concatenate(out)


def params_sha256(state: GANState) -> str:
  """SHA-256 of both networks' parameters (names, shapes, dtypes, bytes): equal runs, equal hash."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path({"g": state.g_params, "d": state.d_params})[0]:
    a = np.asarray(leaf)
    h.update(jax.tree_util.keystr(path).encode())
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()
