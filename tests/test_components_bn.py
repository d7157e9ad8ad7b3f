"""Batch norm and class-conditional GANs (docs/COMPONENTS.md), and the configs that use them.

Batch statistics are taken over the global batch: 8 fake devices under pmap and under sharding train
what one device trains (tests/conftest.py provides the devices). Under vmap each member keeps its own
statistics. The published DCGAN's layer structure and initialisation; labels from the data follow the
images' permutation; the projection discriminator's output by hand; ACGAN's losses; one sample row per
class. Models are a few channels wide so that each test compiles in seconds.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from gan_jax import models, parallel, train, vmap as vmap_lib
from gan_jax.core import build, gan as gan_lib, nets, regularizers
from gan_jax.data import pipeline
from gan_jax.errors import UserError
from gan_jax.run import reader
from gan_jax.models import conditional
from test_components import tiny_config
from test_pinned_hashes import _fake_mnist

BN_COND = {"model.g_norm": "batch", "model.d_norm": "batch", "model.num_classes": 10, "model.g_cond": "cbn",
           "model.normal_init_std": 0.02}


def _synthetic(shape=(32, 32, 3), n=64, classes=10, seed=0) -> pipeline.Data:
  """Random images in [-1, 1] with labels i % classes, as `pipeline.build_data` would return them."""
  images = np.random.RandomState(seed).randint(0, 256, (n,) + shape).astype(np.uint8)
  sampler = pipeline.Sampler(example_shape=shape, num_examples=n, scale="symmetric")
  return pipeline.Data(sampler, {"train": images}, None, "synthetic", image_shape=shape,
                       display_scale="symmetric", labels=(np.arange(n) % classes).astype(np.int32))


# ----------------------------------------------------------------------------- global batch statistics
# Every component with state or randomness, on 8 devices and on one: batch norm (G and D), labels,
# EMA, DiffAugment and bCR; and, on a D without batch norm, DRAGAN (a global-batch std) made lazy,
# with weight clipping.
DEVICE_RUNS = {
    "bn": {**BN_COND, "ema.decay": 0.5, "loss.augment": "translation,cutout,color", "loss.bcr_real": 1.0},
    "dragan": {"loss.penalty": "dragan", "loss.penalty_every": 2, "optimizer.d_clip": 0.05, "ema.decay": 0.5},
}


@functools.lru_cache(maxsize=None)
def _device_run(name: str, mode: str):
  config = tiny_config(**DEVICE_RUNS[name])
  config.batch_size = 16  # 2 examples per device: local statistics would be far from the global ones
  data, gan, state = build.setup(config)
  init = jax.device_get(state)
  runner = parallel.Runner(gan, mode)
  out, metrics = runner.run(runner.put(init), runner.put(data.arrays), 3)
  return init, runner.get(out), jax.device_get(metrics), runner.num_devices


@pytest.mark.parametrize("name", sorted(DEVICE_RUNS))
@pytest.mark.parametrize("mode", ["pmap", "sharding"])
def test_components_do_not_depend_on_the_device_count(name, mode):
  init, ref, ref_metrics, _ = _device_run(name, "none")
  _, run, metrics, devices = _device_run(name, mode)
  assert devices == 8
  if name == "bn":
    moved = ref.g_batch_stats["bn_project"]["bn"]["mean"] - init.g_batch_stats["bn_project"]["bn"]["mean"]
    assert np.max(np.abs(moved)) > 1e-3
  close = functools.partial(np.testing.assert_allclose, rtol=2e-4, atol=2e-5)
  for part in ("g_params", "d_params", "ema_params", "g_batch_stats", "d_batch_stats"):
    jax.tree.map(close, getattr(run, part), getattr(ref, part))
  for key in ("d_loss", "g_loss", "d_real", "d_fake"):
    close(metrics[key], ref_metrics[key], err_msg=key)


def test_batch_norm_per_member_under_vmap():
  configs = []
  for seed in (0, 1):
    c = tiny_config(**BN_COND, **{"optimizer.name": "sgd", "optimizer.g_lr": 0.05, "optimizer.d_lr": 0.05,
                                  "ema.decay": 0.5, "loss.augment": "translation"})
    c.seed = seed
    configs.append(c)
  group = vmap_lib.VmapGroup.build(configs)
  states, _ = group.run(group.init(), 2)
  for i, c in enumerate(configs):
    data, gan, state = build.setup(c)
    solo, _ = jax.jit(functools.partial(gan.train_steps, num_steps=2))(state, data.arrays)
    member = group.member(states, i)
    for part in ("g_params", "ema_params", "g_batch_stats", "d_batch_stats"):
      jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
                   getattr(member, part), getattr(solo, part))
  a, b = group.member(states, 0), group.member(states, 1)
  assert not np.allclose(a.d_batch_stats["bn_1"]["bn"]["mean"], b.d_batch_stats["bn_1"]["bn"]["mean"])


def test_sampling_with_train_or_eval_statistics():
  data, gan, state = build.setup(tiny_config(**{"model.g_norm": "batch"}))
  state, _ = jax.jit(gan.train_step)(state, data.arrays)
  z = gan.noise_batch(jax.random.PRNGKey(0), 6)
  variables = {"params": state.g_params, "batch_stats": state.g_batch_stats}
  train_mode = gan.generate(state.g_params, z, batch_stats=state.g_batch_stats)
  np.testing.assert_allclose(train_mode, gan.generator.apply(variables, z, train=True, mutable=["batch_stats"])[0])
  eval_gan = build.build_gan(tiny_config(**{"model.g_norm": "batch", "model.sample_bn": "eval"}), data)
  eval_mode = eval_gan.generate(state.g_params, z, batch_stats=state.g_batch_stats)
  np.testing.assert_allclose(eval_mode, gan.generator.apply(variables, z, train=False))
  assert not np.allclose(train_mode, eval_mode)
  # A D with batch norm outside training: the running averages when given, else the batch's statistics.
  _, gan_d, state_d = build.setup(tiny_config(**{"model.d_norm": "batch"}))
  x = jnp.asarray(data.arrays["train"][:4], jnp.float32) / 127.5 - 1
  d_vars = {"params": state_d.d_params, "batch_stats": state_d.d_batch_stats}
  np.testing.assert_allclose(gan_d.discriminate(state_d.d_params, x, batch_stats=state_d.d_batch_stats),
                             gan_d.discriminator.apply(d_vars, x, train=False), rtol=1e-6)
  np.testing.assert_allclose(gan_d.discriminate(state_d.d_params, x),
                             gan_d.discriminator.apply(d_vars, x, train=True, mutable=["batch_stats"])[0], rtol=1e-6)
  with pytest.raises(UserError, match="model.sample_bn"):
    build.build_gan(tiny_config(**{"model.g_norm": "batch", "model.sample_bn": "running"}), data)


def test_batch_norm_mistakes_are_user_errors():
  data = build.setup(tiny_config())[0]
  with pytest.raises(UserError, match="per-example input gradients"):
    build.build_gan(tiny_config(**{"model.d_norm": "batch", "loss.penalty": "r1"}), data)
  c = load_config("digits", "smoke")
  c.model.g_norm = "batch"
  with pytest.raises(UserError, match="model.g_norm='batch' needs a generator with batch norm"):
    models.build_generator(c.model, (64,))
  with pytest.raises(UserError, match="unknown model.d_norm"):
    models.build_discriminator(tiny_config(**{"model.d_norm": "layer"}).model)


@pytest.mark.parametrize("side, g_channels, d_channels", [
    (28, (256, 128), (64, 128)), (32, (512, 256, 128), (64, 128, 256)),
    (64, (512, 256, 128, 64), (64, 128, 256, 512))])
def test_published_dcgan_structure_and_init(side, g_channels, d_channels):
  """Radford et al.: BN everywhere but G's output and D's input, ReLU in G, leaky ReLU 0.2 in D,
  weights N(0, 0.02); layers followed by BN have no bias."""
  mc = tiny_config(**{"model.g_norm": "batch", "model.d_norm": "batch", "model.normal_init_std": 0.02}).model
  mc.g_channels, mc.d_channels = g_channels, d_channels
  channels = 1 if side == 28 else 3
  g = models.build_generator(mc, (side, side, channels))
  d = models.build_discriminator(mc)
  gv = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((2, 8))))
  dv = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((2, side, side, channels))))
  n = len(g_channels)
  assert "bias" not in gv["params"]["project"] and "bn_project" in gv["batch_stats"]
  for i in range(n - 1):
    assert "bias" not in gv["params"][f"up_{i}"] and f"bn_{i}" in gv["batch_stats"]
  assert "bias" in gv["params"][f"up_{n - 1}"] and f"bn_{n - 1}" not in gv["batch_stats"]  # the output layer
  assert gv["params"][f"up_{n - 1}"]["kernel"].shape == (4, 4, g_channels[-1], channels)
  assert "bias" in dv["params"]["conv_0"] and "bn_0" not in dv["batch_stats"]  # the input layer
  for i in range(1, len(d_channels)):
    assert "bias" not in dv["params"][f"conv_{i}"] and f"bn_{i}" in dv["batch_stats"]
  out = jax.eval_shape(lambda v: g.apply(v, jnp.zeros((2, 8)), train=True, mutable=["batch_stats"]), gv)[0]
  assert out.shape == (2, side, side, channels)
  if side == 28:  # initialise for real once: N(0, 0.02) weights, N(1, 0.02) BN scales
    gp = g.init(jax.random.PRNGKey(0), jnp.zeros((2, 8)))["params"]
    np.testing.assert_allclose(np.std(gp["up_0"]["kernel"]), 0.02, rtol=0.05)
    np.testing.assert_allclose(np.mean(gp["up_0"]["kernel"]), 0.0, atol=0.002)
    scale = np.asarray(gp["bn_project"]["bn"]["scale"])
    assert abs(scale.mean() - 1) < 0.01 and 0.01 < scale.std() < 0.03


# ----------------------------------------------------------------------------- class-conditional
def test_labels_follow_the_images_permutation():
  n, b = 60, 12
  sampler = pipeline.Sampler(example_shape=(1,), num_examples=n, scale=None)
  arrays = {"train": np.arange(n, dtype=np.float32)[:, None], "labels": (np.arange(n) * 7 % 10).astype(np.int32)}
  state = sampler.init_state(jax.random.PRNGKey(1))
  keys = jax.random.split(jax.random.PRNGKey(2), b // 2)
  nxt = jax.jit(lambda s, off: sampler.next_labeled(arrays, s, jax.random.PRNGKey(3), keys, off, b))
  for _ in range(2 * (n // b)):  # across an epoch boundary; two "devices" take the two halves
    x0, y0, _ = nxt(state, 0)
    x1, y1, state = nxt(state, b // 2)
    x, y = np.concatenate([x0[:, 0], x1[:, 0]]).astype(int), np.concatenate([y0, y1])
    np.testing.assert_array_equal(y, x * 7 % 10)
  assert int(state.epoch) == 1


def test_labels_are_on_device_only_for_conditional_runs():
  uncond = tiny_config()
  data = pipeline.build_data(uncond)
  assert "labels" not in data.arrays and data.labels is not None
  cond = tiny_config(**{"model.num_classes": 10})
  with_labels = pipeline.with_labels(data, cond)
  np.testing.assert_array_equal(with_labels.arrays["labels"], data.labels)
  assert "labels" not in pipeline.with_labels(with_labels, uncond).arrays  # one data set, both kinds of run
  with pytest.raises(UserError, match="labels go up to 9; set model.num_classes=10"):
    pipeline.with_labels(data, tiny_config(**{"model.num_classes": 5}))
  toy = load_config("mog_2d", "smoke")
  toy.model.num_classes = 3
  with pytest.raises(UserError, match="needs labelled data"):
    pipeline.build_data(toy)


def test_projection_head_by_hand():
  class Head(conditional.nn.Module):
    @conditional.nn.compact
    def __call__(self, features, labels):
      return conditional.d_head(features, labels, 4, "projection", conditional.nn.initializers.normal(1.0),
                                jnp.float32)

  phi = jnp.asarray(np.random.RandomState(0).normal(size=(3, 5)), jnp.float32)
  y = jnp.array([2, 0, 2])
  params = Head().init(jax.random.PRNGKey(0), phi, y)["params"]
  w, bias = np.asarray(params["logit"]["kernel"])[:, 0], float(params["logit"]["bias"][0])
  embed = np.asarray(params["embed"]["kernel"])  # [classes, features]: row y is e_y
  expected = np.asarray(phi) @ w + bias + np.sum(embed[np.asarray(y)] * np.asarray(phi), axis=1)
  np.testing.assert_allclose(Head().apply({"params": params}, phi, y), expected, rtol=1e-5)


def test_projection_discriminator_uses_the_features_of_its_linear_head():
  """D(x, y) = w.phi(x) + b + e_y.phi(x): with w = 0, b = 0 and e_y = v, D(x, y) = v.phi(x), which
  must equal the unconditional part with w = v, e = 0."""
  mc = tiny_config(**{"model.num_classes": 3}).model
  d = models.build_discriminator(mc)
  x = jnp.asarray(np.random.RandomState(1).uniform(-1, 1, (4, 8, 8, 1)), jnp.float32)
  y = jnp.array([0, 1, 2, 1])
  p = d.init(jax.random.PRNGKey(0), x, labels=y)["params"]
  v = jax.random.normal(jax.random.PRNGKey(1), p["logit"]["kernel"].shape)
  as_projection = dict(p, logit={"kernel": jnp.zeros_like(v), "bias": jnp.zeros(1)},
                       embed={"kernel": jnp.tile(v[:, 0], (3, 1))})
  as_linear = dict(p, logit={"kernel": v, "bias": jnp.zeros(1)}, embed={"kernel": jnp.zeros((3, v.shape[0]))})
  np.testing.assert_allclose(d.apply({"params": as_projection}, x, labels=y),
                             d.apply({"params": as_linear}, x, labels=y), rtol=1e-5, atol=1e-6)
  assert p["embed"]["kernel"].shape == (3, v.shape[0])


def test_acgan_losses_by_hand():
  logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
  labels = jnp.array([0, 2])
  log_softmax = np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(1, keepdims=True))
  ce = -np.mean(log_softmax[[0, 1], [0, 2]])
  np.testing.assert_allclose(regularizers.class_cross_entropy(logits, labels), ce, rtol=1e-6)
  np.testing.assert_allclose(regularizers.acgan_d_loss(logits, labels, logits, labels), 2 * ce, rtol=1e-6)
  data, gan, state = build.setup(tiny_config(**{"model.num_classes": 10, "model.d_cond": "acgan"}))
  assert gan.acgan_weight == 1.0 and state.d_params["classes"]["kernel"].shape[-1] == 10
  out = gan.discriminate_raw(state.d_params, jnp.zeros((2, 8, 8, 1)), labels=jnp.array([1, 2]))
  assert out.shape == (2, 11) and gan.discriminate(state.d_params, jnp.zeros((2, 8, 8, 1)),
                                                   labels=jnp.array([1, 2])).shape == (2,)
  _, m = jax.jit(gan.train_step)(state, data.arrays)
  assert float(m["g_loss"]) > 1.0  # includes the cross-entropy of 10 classes (about log 10)


def test_conditional_generator_and_class_rows():
  labels, cols = nets.grid_labels(10, 100)
  assert cols == 10 and np.array_equal(np.asarray(labels).reshape(10, 10), np.repeat(np.arange(10), 10).reshape(10, 10))
  labels, cols = nets.grid_labels(3, 8)
  assert cols == 3 and list(np.asarray(labels)) == [0, 0, 0, 1, 1, 1, 2, 2]
  assert nets.grid_labels(0, 8) == (None, None)
  data, gan, state = build.setup(tiny_config(**{"model.num_classes": 10}))  # one-hot label on z
  assert state.g_params["project"]["kernel"].shape[0] == gan.noise_dim + 10
  z = jnp.tile(gan.noise_batch(jax.random.PRNGKey(0), 1), (2, 1))
  x = gan.generate(state.g_params, z, jnp.array([3, 7]))
  assert not np.allclose(x[0], x[1])  # the same noise, two classes: two images


def test_conditional_and_unconditional_groups_share_one_data_set():
  """A sweep loads the data once for groups that differ only in model keys (gan_jax/sweep/runner.py)."""
  uncond = tiny_config()
  data = pipeline.build_data(uncond)
  cond = tiny_config(**BN_COND)
  for config in (uncond, cond):
    group = vmap_lib.VmapGroup.build([config], data)
    states, metrics = group.run(group.init(), 1)
    assert np.all(np.isfinite(metrics["d_loss"]))
    assert ("labels" in group.data.arrays) == bool(config.model.num_classes)


# ----------------------------------------------------------------------------- configs
def test_cdcgan_mnist_smoke_trains_with_class_rows_and_ema(tmp_path):
  config = load_config("cdcgan_mnist", "smoke")
  config.data.dir, config.data.num_train, config.parallel.mode = _fake_mnist(tmp_path / "mnist"), 250, "none"
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["step"] == 4 and os.path.exists(tmp_path / "run" / "samples.png")
  loaded = reader.load_run(str(tmp_path / "run"))  # the EMA generator and both networks' statistics
  assert isinstance(loaded.state, gan_lib.GANState) and loaded.state.ema_params is not None
  assert loaded.state.g_batch_stats is not None
  assert loaded.sample(4).shape == (4, 28, 28, 1)
  full = load_config("cdcgan_mnist", "")
  assert (full.model.num_classes, full.model.g_norm, full.model.d_norm, full.ema.decay) == (10, "batch", "none", 0.999)
  assert full.model.d_spectral_norm and full.model.d_cond == "projection"
  assert load_config("cdcgan_mnist", "cpu").steps_per_dispatch == 1


@pytest.mark.parametrize("name, shape", [("sngan_cifar10", (32, 32, 3)), ("dcgan_cifar10", (32, 32, 3)),
                                         ("sngan_mnist", (28, 28, 1))])
def test_new_configs_build_and_take_a_step(name, shape):
  config = load_config(name, "smoke")
  data = pipeline.with_labels(_synthetic(shape), config)
  gan = build.build_gan(config, data)
  state = gan.init(0)
  _, m = jax.jit(gan.train_step)(state, data.arrays)
  assert np.isfinite(float(m["d_loss"]))
  full = load_config(name, "")
  for key, value in json.loads(full.to_json())["model"].items():  # the full model builds too (no init)
    assert value is not None, key
  models.build_generator(full.model, shape)
  models.build_discriminator(full.model)
  if name == "sngan_cifar10":
    assert (full.loss.name, full.k_disc_steps, full.batch_size, full.optimizer.b1, full.optimizer.b2,
            full.model.d_spectral_norm) == ("hinge", 5, 64, 0.0, 0.9, True)


@pytest.mark.parametrize("key,value,expected", [
    ("num_classes", -1, "model.num_classes must be >= 0"),
    ("g_norm", "foo", "unknown model.g_norm 'foo'"),
    ("g_cond", "foo", "unknown model.g_cond 'foo'"),
])
def test_a_bad_component_value_is_named_before_what_the_model_supports(key, value, expected):
  """On the MLP generator (neither conditional nor normalised) a bad value is reported as such, not as
  'needs a class-conditional generator'."""
  mc = load_config("digits", "smoke").model
  mc[key] = value
  with pytest.raises(UserError, match=expected):
    models.build_generator(mc, (64,))
