"""The paper's CIFAR-10 models: full-size geometry (shapes only, nothing compiled), the cuda-convnet
pooling, initialisation, config mistakes, and one training step of each config on mock CIFAR-10."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from gan_jax import models
from gan_jax.core import build
from gan_jax.models import cifar
from gan_jax.errors import UserError


def _shapes(tree):
  return jax.tree.map(lambda a: tuple(a.shape), tree)


def _abstract_params(module, x_shape, **kwargs):
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(x_shape), **kwargs))["params"]


def test_full_size_fully_connected_pair_matches_the_paper():
  mc = load_config("cifar10_fc", "").model
  g = _shapes(_abstract_params(models.build_generator(mc, (3072,)), (1, 100)))
  assert [g[k]["kernel"] for k in ("hidden_0", "hidden_1", "linear_out")] == [
      (100, 8000), (8000, 8000), (8000, 3072)]
  d = _shapes(_abstract_params(models.build_discriminator(mc), (1, 3072), train=False))
  assert [d[k]["kernel"] for k in ("maxout_0", "maxout_1", "logit")] == [
      (3072, 1600 * 5), (1600, 1600 * 5), (1600, 1)]


def test_full_size_convolutional_pair_matches_the_paper():
  mc = load_config("cifar10_conv", "").model
  gen = models.build_generator(mc, (32, 32, 3))
  assert gen.grid() == (10, 10, 80)  # 8000 sigmoid units = 80 maps of 10x10
  g = _abstract_params(gen, (1, 100))
  assert _shapes(g)["deconv"]["kernel"] == (5, 5, 80, 3)
  assert _shapes(g)["pixel_bias"] == (32, 32, 3)  # one bias per output pixel (tied_b: 0)
  out = jax.eval_shape(lambda p: gen.apply({"params": p}, jnp.zeros((2, 100))), g)
  assert out.shape == (2, 32, 32, 3)
  disc = models.build_discriminator(mc)
  d = _shapes(_abstract_params(disc, (1, 32, 32, 3), train=False))
  assert d["conv_maxout_0"]["kernel"] == (8, 8, 3, 32 * 2)
  assert d["conv_maxout_1"]["kernel"] == (8, 8, 32, 32 * 2)
  assert d["conv_maxout_2"]["kernel"] == (5, 5, 32, 192 * 2)
  # 33 -> pool 16 -> 15 -> pool 7 -> 9 -> pool 5: the dense maxout layer reads 5 * 5 * 192 features.
  assert d["maxout_0"]["kernel"] == (5 * 5 * 192, 500 * 5)
  assert models.uses_dropout(disc)


@pytest.mark.parametrize("size,window,stride,expected", [(33, 4, 2, 16), (15, 4, 2, 7), (9, 2, 2, 5),
                                                         (8, 2, 2, 4)])
def test_pooling_keeps_the_partial_last_window(size, window, stride, expected):
  x = np.random.default_rng(0).normal(size=(1, size, size, 2)).astype(np.float32)
  got = np.asarray(cifar.max_pool_ceil(jnp.asarray(x), window, stride))
  assert got.shape == (1, expected, expected, 2)
  for i in range(expected):
    for j in range(expected):
      block = x[0, i * stride:i * stride + window, j * stride:j * stride + window]
      np.testing.assert_allclose(got[0, i, j], block.max(axis=(0, 1)))


def test_initial_weights_follow_the_yaml_ranges():
  mc = load_config("cifar10_fc", "smoke").model
  p = jax.jit(models.build_generator(mc, (3072,)).init)(jax.random.PRNGKey(0), jnp.zeros((1, 100)))["params"]
  assert 0.04 < np.abs(p["hidden_0"]["kernel"]).max() <= 0.05
  assert 0.4 < np.abs(p["linear_out"]["kernel"]).max() <= 0.5  # irange .5 on the output layer
  assert not np.any(p["linear_out"]["bias"])
  mc = load_config("cifar10_conv", "smoke").model
  init = jax.jit(functools.partial(models.build_discriminator(mc).init, train=False))
  p = init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
  assert all(0.004 < np.abs(p[k]["kernel"]).max() <= 0.005 for k in p)


@pytest.mark.parametrize("change,shape,message", [
    ({"g_hidden": (16, 150)}, (32, 32, 3), "multiple of 10x10"),
    ({}, (3072,), "set --config.data.layout=nhwc"),
    ({"g_deconv_stride": 4}, (32, 32, 3), "cannot make 32x32 images"),
    ({"g_hidden_activations": ("relu",)}, (32, 32, 3), "one activation per hidden layer"),
])
def test_bad_generator_settings_are_user_errors(change, shape, message):
  mc = load_config("cifar10_conv", "smoke").model
  for key, value in change.items():
    mc[key] = value
  with pytest.raises(UserError, match=message):
    gen = models.build_generator(mc, shape)
    gen.init(jax.random.PRNGKey(0), jnp.zeros((1, 100)))


def test_mismatched_conv_layer_lists_are_a_user_error():
  mc = load_config("cifar10_conv", "smoke").model
  mc.d_conv_pads = (4, 3)
  with pytest.raises(UserError, match="one entry per convolutional layer"):
    models.build_discriminator(mc).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize("name", ["cifar10_fc", "cifar10_conv"])
def test_one_training_step_on_mock_cifar10(name, tmp_path):
  from test_cifar10 import _batches, _write_folder  # pylint: disable=g-import-not-at-top  (CIFAR-10's format)
  config = load_config(name, "smoke")
  config.parallel.mode = "none"
  config.data.dir = _write_folder(tmp_path / "cifar10", _batches(per_batch=4))
  config.data.num_train = 16  # data_batch_1..4, 4 images each; data_batch_5 is validation
  data, gan, state = build.setup(config)
  x = data.arrays["train"]
  assert x.shape == ((16, 3072) if name == "cifar10_fc" else (16, 32, 32, 3))
  flat = x.reshape(len(x), -1).astype(np.float64)
  np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-4)  # GCN: each image centred ...
  np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 55, rtol=1e-4)  # ... with norm 55
  step = jax.jit(functools.partial(gan.train_steps, num_steps=1))
  new, metrics = step(state, data.arrays)
  assert int(new.step) == 1
  for key in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
    assert np.isfinite(metrics[key]).all(), key
  assert float(metrics["g_grad_norm"][0]) > 0 and float(metrics["d_grad_norm"][0]) > 0
  # G's output layer moves at once; its first layers only by less than float32 resolves, since D's
  # U(-0.005, 0.005) weights make the gradient reaching them tiny, as in the reference code.
  out = "linear_out" if name == "cifar10_fc" else "deconv"
  assert np.any(np.asarray(new.g_params[out]["kernel"]) != np.asarray(state.g_params[out]["kernel"]))
  assert np.any(np.asarray(new.d_params["logit"]["kernel"]) != np.asarray(state.d_params["logit"]["kernel"]))
