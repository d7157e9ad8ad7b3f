"""The ceiling: the benchmark's two models, optimizer, data gather and random draws as plain JAX.

Kept hand-written on purpose: it is what someone would write for these models without gan_jax, so the
trainer's rows are measured against it (`vs bare`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gan_jax.errors import UserError
from gan_jax.models import dcgan

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
        h = _conv(p, dcgan.upsample_2x(h, mc.g_resize), 1, dtype)
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
