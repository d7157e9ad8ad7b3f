"""The ablation components (docs/COMPONENTS.md), each against a closed form or a small hand computation.

EMA of G, DiffAugment, consistency regularisation, DRAGAN, lazy penalties, weight clipping,
learning-rate schedules and presets, SNGAN's ResNet pair with self-attention. Every component is
off by default and then leaves the state and the update as they were (tests/test_pinned_hashes.py
pins that bit for bit; here: the state's structure). Batch norm and class-conditional GANs are in
tests/test_components_bn.py. Models are a few channels wide so that each test compiles in seconds.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import load_config
from gan_jax import models, train
from gan_jax.core import augment, build, ema, gan as gan_lib, optim, penalties, regularizers, rng
from gan_jax.errors import UserError
from gan_jax.models import attention
from gan_jax.run import reader


def tiny_config(**overrides):
  """A DCGAN a few channels wide on the 8x8 digits (offline), as NHWC images in [-1, 1]."""
  c = load_config("dcgan_28", "smoke")
  c.data.source, c.data.name = "digits", "digits"
  c.data.scale, c.data.layout = "symmetric", "nhwc"
  c.model.g_channels, c.model.d_channels, c.model.noise_dim = (8, 8), (8, 8), 8
  c.batch_size, c.parallel.mode = 8, "none"
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  return c


@functools.lru_cache(maxsize=None)
def _setup(items):
  return build.setup(tiny_config(**dict(items)))


def setup(**overrides):
  """(data, gan, state) of `tiny_config(**overrides)`, built once per distinct overrides."""
  return _setup(tuple(sorted(overrides.items())))


def _leaf_paths(tree):
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


# ----------------------------------------------------------------------------- off = unchanged
def test_components_off_add_nothing_to_the_state():
  _, gan, state = setup()
  assert gan.ema is None and not gan.augment and gan.penalty_every == 1 and not gan.d_clip
  assert not gan.num_classes and not gan.g_bn and not gan.d_bn
  names = {p.split("[")[0].split(".")[1] for p in _leaf_paths(state)}
  assert names == set(gan_lib.REQUIRED_FIELDS)
  assert state.ema_params is None and state.g_batch_stats is None and state.d_batch_stats is None
  _, gan_ema, state_ema = setup(**{"ema.decay": 0.9})
  extra = [p for p in _leaf_paths(state_ema) if p.startswith(".ema_params")]
  assert len(extra) == len(jax.tree.leaves(state_ema.g_params))


# ----------------------------------------------------------------------------- EMA
def test_ema_decay_follows_start_and_warmup():
  e = ema.EMA(decay=0.9, start_step=3, warmup=4)
  got = [float(ema.decay_at(e, s)) for s in range(1, 10)]
  np.testing.assert_allclose(got, [0, 0, 0, 0.9 * 0.25, 0.9 * 0.5, 0.9 * 0.75, 0.9, 0.9, 0.9], rtol=1e-6)
  assert [float(ema.decay_at(ema.EMA(0.5), s)) for s in (1, 2)] == [0.5, 0.5]
  with pytest.raises(UserError, match="ema.decay"):
    ema.from_config(ml_collections.ConfigDict({"ema": {"decay": 1.5}}))
  assert ema.from_config(ml_collections.ConfigDict({"ema": {"decay": 0.0}})) is None


def test_ema_in_training_is_the_closed_form_average():
  """ema_T = sum_s w_s theta_s with w_s = (1 - d_s) prod_{t > s} d_t (theta_0 the initial G)."""
  data, gan, state = setup(**{"ema.decay": 0.8, "ema.start_step": 1, "ema.warmup": 2})
  step = jax.jit(gan.train_step)
  thetas = [state.g_params]
  for _ in range(5):
    state, _ = step(state, data.arrays)
    thetas.append(state.g_params)
  d = [None] + [float(ema.decay_at(gan.ema, s)) for s in range(1, 6)]
  np.testing.assert_allclose(d[1:], [0, 0.4, 0.8, 0.8, 0.8], rtol=1e-6)  # a copy at step 1, then the ramp
  weights = [0.0] * 6
  for s in range(1, 6):
    weights[s] = (1 - d[s]) * math.prod(d[s + 1:])
  assert abs(sum(weights) - 1) < 1e-12  # d_1 = 0: theta_0 has no weight
  expected = jax.tree.map(lambda *ts: sum(w * np.asarray(t, np.float64) for w, t in zip(weights, ts)), *thetas)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7), state.ema_params, expected)
  assert not np.allclose(jax.tree.leaves(state.ema_params)[0], jax.tree.leaves(state.g_params)[0])
  # Samples use the average; without `use_for_samples`, G's own parameters.
  assert gan.sampling_variables(state)[0] is state.ema_params


def test_ema_is_checkpointed_resumed_bit_exactly_and_used_for_samples(tmp_path):
  config = tiny_config(**{"ema.decay": 0.5})
  config.num_steps, config.steps_per_dispatch, config.log_every = 4, 2, 2
  config.sample_every, config.checkpoint_every, config.num_samples = 4, 2, 4
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  config.num_steps = 2
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  config.num_steps = 4
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert resumed["resumed_from"] == 2 and resumed["params_sha256"] == straight["params_sha256"]
  a = reader.load_run(str(tmp_path / "straight"))
  b = reader.load_run(str(tmp_path / "resumed"))
  jax.tree.map(np.testing.assert_array_equal, a.state.ema_params, b.state.ema_params)
  key = jax.random.fold_in(jax.random.PRNGKey(0), rng.READER)
  np.testing.assert_array_equal(a.reader.generate(a.state, 3),
                                gan_lib.generate_samples(a.reader.gan, a.state.ema_params, key, 3))


# ----------------------------------------------------------------------------- DiffAugment
def test_translation_cutout_color_flip_by_hand():
  x = jnp.asarray(np.random.RandomState(0).uniform(-1, 1, (8, 8, 3)), jnp.float32)
  key = jax.random.PRNGKey(7)
  # translation: output pixel (i, j) = input (i - th, j - tw), zero outside; |t| <= round(8 / 8) = 1.
  kh, kw = jax.random.split(key)
  th, tw = int(jax.random.randint(kh, (), -1, 2)), int(jax.random.randint(kw, (), -1, 2))
  expected = np.zeros_like(x)
  for i in range(8):
    for j in range(8):
      if 0 <= i - th < 8 and 0 <= j - tw < 8:
        expected[i, j] = x[i - th, j - tw]
  np.testing.assert_array_equal(augment.translate(x, key), expected)
  # cutout: a 4x4 square (clipped at the edges) set to 0, the rest untouched.
  out = np.asarray(augment.cutout(x, key))
  zero = np.all(out == 0, axis=-1)
  ch, cw = int(jax.random.randint(kh, (), 0, 9)), int(jax.random.randint(kw, (), 0, 9))
  rows = (np.arange(8) >= ch - 2) & (np.arange(8) < ch + 2)
  cols = (np.arange(8) >= cw - 2) & (np.arange(8) < cw + 2)
  np.testing.assert_array_equal(zero, rows[:, None] & cols[None, :])
  np.testing.assert_array_equal(out[~zero], np.asarray(x)[~zero])
  # color: brightness, saturation, contrast with the three uniforms of the key.
  kb, ks, kc = jax.random.split(key, 3)
  b, s, c = (float(jax.random.uniform(k, ())) for k in (kb, ks, kc))
  y = np.asarray(x, np.float64) + b - 0.5
  y = (y - y.mean(-1, keepdims=True)) * 2 * s + y.mean(-1, keepdims=True)
  y = (y - y.mean()) * (c + 0.5) + y.mean()
  np.testing.assert_allclose(augment.color(x, key), y, rtol=1e-5, atol=1e-5)
  flipped = augment.flip(x, key)
  assert np.array_equal(flipped, x[:, ::-1]) or np.array_equal(flipped, x)


def test_augmentation_is_per_example_and_differentiable():
  policy = augment.parse_policy("translation,cutout,color")
  x = jnp.asarray(np.random.RandomState(1).uniform(-1, 1, (6, 8, 8, 1)), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(3), 6)
  batch = augment.augment_batch(policy, x, keys)
  for i in (0, 5):  # example i depends on its own key only: the same alone as in the batch
    np.testing.assert_allclose(batch[i], augment.augment_example(policy, x[i], keys[i]), rtol=1e-6)
  grad = jax.grad(lambda v: jnp.sum(augment.augment_batch(policy, v, keys)))(x)
  assert np.any(np.asarray(grad) != 0)  # G's gradient flows through the augmentation
  with pytest.raises(UserError, match="unknown loss.augment operation 'zoom'"):
    augment.parse_policy("translation,zoom")
  with pytest.raises(UserError, match="augments images"):
    build.setup(_toy_with(**{"loss.augment": "translation"}))


def _toy_with(**overrides):
  c = load_config("mog_2d", "smoke")
  c.parallel.mode = "none"
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  return c


# ----------------------------------------------------------------------------- bCR, DRAGAN, lazy, clip
def test_consistency_regularisation_by_hand():
  w = jnp.asarray(np.random.RandomState(2).normal(size=64), jnp.float32)
  d_fn = lambda v: v.reshape(len(v), -1) @ w  # a linear D
  x = jnp.asarray(np.random.RandomState(3).uniform(-1, 1, (4, 8, 8, 1)), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(4), 4)
  policy = ("flip", "translation")
  got = regularizers.consistency(d_fn, x, d_fn(x), keys, rng.BCR_REAL, policy)
  expected = np.mean([(float(d_fn(x[i:i + 1])[0]) - float(d_fn(augment.augment_example(
      policy, x[i], jax.random.fold_in(keys[i], rng.BCR_REAL))[None])[0])) ** 2 for i in range(4)])
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert float(got) > 0


def test_bcr_terms_enter_d_loss_only():
  data, gan, state = setup(**{"loss.bcr_real": 10.0, "loss.bcr_fake": 5.0})
  _, plain, _ = setup()
  assert (gan.bcr_real, gan.bcr_fake, gan.bcr_augment) == (10.0, 5.0, ("flip", "translation"))
  _, m = jax.jit(gan.train_step)(state, data.arrays)
  _, m0 = jax.jit(plain.train_step)(state, data.arrays)
  assert float(m["d_loss"]) > float(m0["d_loss"])  # the same first batch, plus the consistency terms
  np.testing.assert_allclose(m["value"], m0["value"], rtol=1e-6)  # the same logits: D's loss gained only bCR


def test_dragan_penalty_by_hand():
  keys = jax.random.split(jax.random.PRNGKey(5), 4)
  real = jax.random.normal(jax.random.PRNGKey(6), (4, 3))
  fake = jnp.zeros((4, 3))
  w = jnp.array([1.2, -1.6, 0.0])  # linear D: gradient w, ||w|| = 2, penalty (2 - 1)^2
  linear = lambda v, k: v @ w
  np.testing.assert_allclose(penalties.gradient_penalty("dragan", linear, real, fake, keys), 1.0, rtol=1e-5)
  # D(x) = 0.5 ||x||^2: the gradient is the perturbed point x + a * 0.5 * std(x) * u itself.
  quad = lambda v, k: 0.5 * jnp.sum(v**2, axis=1)
  r = np.asarray(real, np.float64)
  a = np.asarray(jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, rng.PENALTY), ()))(keys))
  u = np.asarray(jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, rng.DRAGAN), (3,)))(keys))
  x_hat = r + a[:, None] * 0.5 * r.std() * u
  expected = np.mean((np.linalg.norm(x_hat, axis=1) - 1) ** 2)
  np.testing.assert_allclose(penalties.gradient_penalty("dragan", quad, real, fake, keys), expected, rtol=1e-5)


def test_lazy_penalty_every_n_updates_times_n():
  fn = lambda: jnp.float32(3.0)
  lazy = jax.jit(lambda i: regularizers.lazy(4, i, fn))
  assert [float(lazy(i)) for i in range(6)] == [12.0, 0, 0, 0, 12.0, 0]
  assert float(regularizers.lazy(1, None, fn)) == 3.0
  # In the update: D update 0 carries 2 x the R1 term (every 2, times 2), on the same first batch.
  r1 = {"loss.penalty": "r1", "loss.penalty_weight": 1.0}
  data, lazy_gan, state = setup(**r1, **{"loss.penalty_every": 2})
  _, eager_gan, _ = setup(**r1)
  _, plain, _ = setup()
  first = lambda gan: float(jax.jit(gan.train_step)(state, data.arrays)[1]["d_loss"])
  plain_loss = first(plain)
  np.testing.assert_allclose(first(lazy_gan) - plain_loss, 2 * (first(eager_gan) - plain_loss), rtol=1e-4)
  assert first(eager_gan) > plain_loss
  with pytest.raises(UserError, match="penalty_every"):
    setup(**{"loss.penalty_every": 0})


def test_weight_clipping_after_each_d_update():
  data, gan, state = setup(**{"optimizer.d_clip": 0.01, "loss.name": "wasserstein", "optimizer.name": "sgd",
                              "optimizer.d_lr": 1.0})
  new, _ = jax.jit(gan.train_step)(state, data.arrays)
  _, plain, _ = setup(**{"loss.name": "wasserstein", "optimizer.name": "sgd", "optimizer.d_lr": 1.0})
  unclipped, _ = jax.jit(plain.train_step)(state, data.arrays)
  for got, raw in zip(jax.tree.leaves(new.d_params), jax.tree.leaves(unclipped.d_params)):
    np.testing.assert_array_equal(got, np.clip(raw, -0.01, 0.01))
  assert max(float(jnp.max(jnp.abs(p))) for p in jax.tree.leaves(new.d_params)) == pytest.approx(0.01)


# ----------------------------------------------------------------------------- schedules and presets
def test_learning_rate_schedules():
  cfg = lambda **kw: ml_collections.ConfigDict({"name": "adam", "schedule": "constant", "warmup_steps": 0,
                                                "decay_steps": 0, **kw})
  assert optim.lr_factor(cfg()) is None
  warm = optim.lr_factor(cfg(warmup_steps=4))
  np.testing.assert_allclose([warm(c) for c in (0, 1, 2, 4, 100)], [0, 0.25, 0.5, 1, 1])
  lin = optim.lr_factor(cfg(schedule="linear", warmup_steps=2, decay_steps=10), updates_per_step=1)
  np.testing.assert_allclose([lin(c) for c in (0, 1, 2, 6, 10, 12)], [0, 0.5, 1, 0.5, 0, 0])
  # D with k = 2 updates per step follows the same clock in steps; decay_steps 0 means num_steps.
  lin_d = optim.lr_factor(cfg(schedule="linear"), updates_per_step=2, num_steps=5)
  np.testing.assert_allclose([lin_d(c) for c in (0, 5, 10)], [1, 0.5, 0])
  # The optimizer's steps are lr * factor: Adam's first step is lr * sign(g) (bias-corrected).
  tx = optim.build_optimizer(cfg(schedule="linear", decay_steps=4, b1=0.5, b2=0.999), 0.1, 10, 1, 4)
  p = jnp.ones(2)
  s = tx.init(p)
  steps = []
  for _ in range(3):
    u, s = tx.update(jnp.array([1.0, -2.0]), s, p)
    steps.append(np.asarray(u))
  np.testing.assert_allclose(steps[0], [-0.1, 0.1], rtol=1e-4)
  np.testing.assert_allclose(steps[1], [-0.075, 0.075], rtol=1e-4)
  with pytest.raises(UserError, match="optimizer.schedule"):
    optim.lr_factor(cfg(schedule="cosine"))
  with pytest.raises(UserError, match="paper_sgd"):
    optim.lr_factor(cfg(name="paper_sgd", warmup_steps=3))


def test_ttur_preset():
  _, gan, state = setup(**{"optimizer.preset": "ttur"})
  for tx, p, lr in ((gan.d_tx, state.d_params, 4e-4), (gan.g_tx, state.g_params, 1e-4)):
    ref = optax.adam(lr, b1=0.0, b2=0.9)
    g = jax.tree.map(lambda x: jnp.full_like(x, 0.3), p)
    u, s = tx.update(g, tx.init(p), p)
    u2, _ = tx.update(g, s, p)
    r, rs = ref.update(g, ref.init(p), p)
    r2, _ = ref.update(g, rs, p)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), (u, u2), (r, r2))
  with pytest.raises(UserError, match="unknown optimizer.preset"):
    setup(**{"optimizer.preset": "fast"})
  data = setup()[0]
  with pytest.raises(UserError, match="cannot also vary optimizer.g_lr"):
    build.build_gan(tiny_config(**{"optimizer.preset": "ttur"}), data, {"optimizer.g_lr": 1e-3})


# ----------------------------------------------------------------------------- ResNet (SNGAN)
def _sngan_model(**overrides):
  c = load_config("sngan_cifar10", "")
  for key, value in overrides.items():
    c.model[key] = value
  return c.model


def test_sngan_resnet_shapes_match_the_paper():
  """Miyato et al. 2018, Table 4: G z(128) -> 4x4x256 -> 3 up-ResBlocks 256 -> BN, ReLU, conv3x3 -> 3,
  tanh; D optimised block + ResBlock down + 2 ResBlocks, 128 channels, ReLU, global sum pool, dense."""
  mc = _sngan_model()
  g = models.build_generator(mc, (32, 32, 3))
  d = models.build_discriminator(mc)
  gv = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((2, 128))))
  dv = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3))))
  gp, dp = gv["params"], dv["params"]
  assert gp["project"]["kernel"].shape == (128, 4 * 4 * 256)
  for i in range(3):
    assert gp[f"block_{i}"]["conv_0"]["kernel"].shape == (3, 3, 256, 256)
    assert gp[f"block_{i}"]["conv_1"]["kernel"].shape == (3, 3, 256, 256)
    assert gp[f"block_{i}"]["shortcut"]["kernel"].shape == (1, 1, 256, 256)
    assert gv["batch_stats"][f"block_{i}"]["bn_0"]["bn"]["mean"].shape == (256,)
  assert gp["conv_out"]["kernel"].shape == (3, 3, 256, 3)
  assert dp["block_0"]["conv_0"]["kernel"].shape == (3, 3, 3, 128)
  assert dp["block_0"]["shortcut"]["kernel"].shape == (1, 1, 3, 128)
  assert "shortcut" in dp["block_1"] and "shortcut" not in dp["block_2"] and "shortcut" not in dp["block_3"]
  assert dp["logit"]["kernel"].shape == (128, 1)
  out = jax.eval_shape(lambda v: g.apply(v, jnp.zeros((2, 128)), train=True, mutable=["batch_stats"]), gv)[0]
  assert out.shape == (2, 32, 32, 3)
  assert jax.eval_shape(lambda v: d.apply(v, jnp.zeros((2, 32, 32, 3))), dv).shape == (2,)
  count = sum(math.prod(p.shape) for p in jax.tree.leaves(gp))
  assert count == 128 * 4096 + 4096 + 3 * (2 * (9 * 256 * 256 + 256) + 256 * 256 + 256 + 4 * 256) + 2 * 256 + \
      9 * 256 * 3 + 3


def test_resnet_init_is_glorot_uniform_with_the_papers_gains():
  mc = _sngan_model(g_res_channels=(16, 16), g_res_base=2, d_res_channels=(16, 16), d_res_down=(True, True))
  g = models.build_generator(mc, (8, 8, 3))
  d = models.build_discriminator(mc)
  gp = g.init(jax.random.PRNGKey(0), jnp.zeros((1, 128)))["params"]
  dp = d.init(jax.random.PRNGKey(1), jnp.zeros((1, 8, 8, 3)))["params"]

  def check(kernel, gain):
    k = np.asarray(kernel)
    fan_in, fan_out = math.prod(k.shape[:-1]), math.prod(k.shape[:-2]) * k.shape[-1]
    bound = gain * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(k).max() <= bound + 1e-7 and np.abs(k).max() > 0.9 * bound
    np.testing.assert_allclose(k.std(), bound / math.sqrt(3), rtol=0.15)

  check(gp["block_0"]["conv_0"]["kernel"], math.sqrt(2))
  check(gp["block_0"]["shortcut"]["kernel"], 1.0)
  check(gp["project"]["kernel"], 1.0)
  check(dp["block_1"]["conv_1"]["kernel"], math.sqrt(2))
  check(dp["logit"]["kernel"], 1.0)
  assert float(jnp.abs(dp["logit"]["bias"]).max()) == 0.0


def test_self_attention_by_hand():
  rs = np.random.RandomState(8)
  x = jnp.asarray(rs.normal(size=(2, 3, 3, 16)), jnp.float32)
  block = attention.SelfAttention()
  params = block.init(jax.random.PRNGKey(0), x)["params"]
  np.testing.assert_array_equal(block.apply({"params": params}, x), x)  # gamma starts at 0: identity
  params = dict(params, gamma=jnp.float32(0.7))
  w = {n: np.asarray(params[n]["kernel"][0, 0], np.float64) for n in "fghv"}
  xs = np.asarray(x, np.float64).reshape(2, 9, 16)
  f, g, h = xs @ w["f"], xs @ w["g"], xs @ w["h"]
  s = np.einsum("bic,bjc->bji", f, g)
  beta = np.exp(s - s.max(-1, keepdims=True))
  beta /= beta.sum(-1, keepdims=True)
  o = np.einsum("bji,bic->bjc", beta, h) @ w["v"]
  np.testing.assert_allclose(block.apply({"params": params}, x), (xs + 0.7 * o).reshape(2, 3, 3, 16),
                             rtol=1e-4, atol=1e-5)


def test_resnet_gan_trains_with_spectral_norm_and_attention():
  c = tiny_config()
  c.model.generator = c.model.discriminator = "resnet"
  c.model.g_norm, c.model.d_spectral_norm, c.model.attention_res = "batch", True, 4
  c.model.g_res_channels, c.model.g_res_base, c.model.d_res_channels = (8, 8), 2, (8, 8)
  c.model.d_res_down = (True, False)
  c.loss.name, c.k_disc_steps = "hinge", 2
  data, gan, state = build.setup(c)
  # G's blocks end at 4x4 and 8x8, D's at 4x4 twice: attention after the first 4x4 block of each.
  assert "attention_0" in state.g_params and "attention_1" not in state.g_params and gan.g_bn
  assert "attention_0" in state.d_params and "attention_1" not in state.d_params
  new, m = jax.jit(gan.train_step)(state, data.arrays)
  assert np.isfinite(float(m["d_loss"])) and np.isfinite(float(m["g_loss"]))
  assert not np.allclose(new.g_batch_stats["block_0"]["bn_0"]["bn"]["mean"], 0.0)  # G's statistics moved
  bad = tiny_config()
  bad.model.generator = "resnet"
  with pytest.raises(UserError, match="makes 32x32 images"):
    build.setup(bad)
  bad.model.g_res_base, bad.model.attention_res = 1, 5  # blocks end at 2, 4 and 8
  with pytest.raises(UserError, match="attention_res=5"):
    build.setup(bad)
