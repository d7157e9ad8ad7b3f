"""Tests for the DCGAN-style conv models: shapes, upsampling modes, bf16 compute, configs, training.

Compiles dominate on CPU, so each test runs its models in one jitted program.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from gan_jax.bench import configs
from gan_jax import config as config_lib, models
from gan_jax.core import build
from gan_jax.models import dcgan
from gan_jax.errors import UserError

# (image shape, generator widths, discriminator widths): tiny versions of dcgan_28 / dcgan_32.
SHAPES = {28: ((28, 28, 1), (16, 8), (8, 16)), 32: ((32, 32, 3), (16, 8, 8), (8, 8, 16))}
# (g_upsample, g_resize, g_output)
VARIANTS = (("transposed", "nearest", "tanh"), ("resize_conv", "nearest", "sigmoid"),
            ("resize_conv", "bilinear", "tanh"))
Z = np.random.default_rng(2).standard_normal((3, 100)).astype(np.float32)


def _model_config(size, upsample="transposed", resize="nearest", output="tanh", dtype="float32"):
  mc = config_lib.base_config().model
  _, g_channels, d_channels = SHAPES[size]
  mc.generator = mc.discriminator = "dcgan"
  mc.g_channels, mc.d_channels = g_channels, d_channels
  mc.g_upsample, mc.g_resize, mc.g_output, mc.compute_dtype = upsample, resize, output, dtype
  mc.g_init_scale = mc.d_init_scale = 0.0
  return mc


def _build(mc, size):
  shape = SHAPES[size][0]
  return models.build_generator(mc, shape), models.build_discriminator(mc), shape


def _init_and_run(g, d, shape, z, x=None):
  """Traced: (G params, D params, G(z), D's logits on x, or on G(z) without x)."""
  g_params = g.init(jax.random.PRNGKey(0), jnp.zeros((1, z.shape[-1])))["params"]
  d_params = d.init(jax.random.PRNGKey(1), jnp.zeros((1,) + shape))["params"]
  fake = g.apply({"params": g_params}, z)
  return g_params, d_params, fake, d.apply({"params": d_params}, fake if x is None else x)


@pytest.mark.parametrize("size", [28, 32])
def test_shapes_and_ranges(size):
  built = [_build(_model_config(size, *v), size) for v in VARIANTS]
  out = jax.device_get(jax.jit(lambda z: [_init_and_run(g, d, s, z) for g, d, s in built])(Z))
  shape = SHAPES[size][0]
  for (upsample, _, output), (g_params, _, x, logits) in zip(VARIANTS, out):
    chex.assert_shape(x, (3,) + shape)
    chex.assert_shape(logits, (3,))
    chex.assert_tree_all_finite((x, logits))
    assert x.dtype == logits.dtype == np.float32
    lo = 0.0 if output == "sigmoid" else -1.0
    assert lo <= x.min() and x.max() <= 1.0
    assert x.std() > 0.05  # the initial scale keeps a signal through the layers (no batch norm)
    assert g_params["up_0"]["kernel"].shape[:2] == ((4, 4) if upsample == "transposed" else (3, 3))
  # The two resize methods give different images from the same parameters.
  assert not np.allclose(out[1][2], out[2][2])


def test_upsample_2x():
  x = np.arange(8.0, dtype=np.float32).reshape(1, 2, 2, 2)
  near = np.asarray(dcgan.upsample_2x(x, "nearest"))
  np.testing.assert_array_equal(near[0, :2, :2, 0], np.full((2, 2), x[0, 0, 0, 0]))
  bil = np.asarray(dcgan.upsample_2x(x, "bilinear"))
  assert near.shape == bil.shape == (1, 4, 4, 2)
  assert not np.allclose(near, bil)


def test_discriminator_is_per_example():
  """No batch statistics: an example's logit does not depend on the rest of the batch."""
  g, d, shape = _build(_model_config(32), 32)

  @jax.jit
  def run(z):
    _, d_params, x, together = _init_and_run(g, d, shape, z)
    alone = jax.vmap(lambda xi: d.apply({"params": d_params}, xi[None])[0])(x)
    return together, alone

  together, alone = run(Z)
  np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute(upsample="transposed"):
  g32, d32, shape = _build(_model_config(32, upsample), 32)
  g16, d16, _ = _build(_model_config(32, upsample, dtype="bfloat16"), 32)

  @jax.jit
  def run(z):
    p32 = _init_and_run(g32, d32, shape, z)
    p16 = _init_and_run(g16, d16, shape, z, x=p32[2])  # D in bf16 on the float32 images
    return p32, p16

  (g_params, d_params, x32, l32), (g_params16, d_params16, x16, l16) = jax.device_get(run(Z))
  # Same initialisation whatever the compute dtype, and parameters stay float32.
  chex.assert_trees_all_equal(g_params, g_params16)
  chex.assert_trees_all_equal(d_params, d_params16)
  assert {p.dtype for p in jax.tree.leaves((g_params16, d_params16))} == {np.dtype(np.float32)}
  assert x16.dtype == l16.dtype == np.float32
  err = np.abs(x32 - x16).max()
  assert 0 < err < 0.05 * np.abs(x32).max()  # bf16 rounding (8 bits of mantissa), not another function
  np.testing.assert_allclose(l16, l32, atol=0.05 * np.abs(l32).max() + 1e-3)
  # The convolutions really run in bf16 (not float32 cast at the end).
  jaxpr = str(jax.make_jaxpr(lambda p, z: g16.apply({"params": p}, z))(g_params, Z))
  conv_lines = [line for line in jaxpr.splitlines() if "conv_general_dilated" in line]
  assert conv_lines and all("bf16" in line for line in conv_lines)


@pytest.mark.parametrize("change,message", [
    (dict(layout="flat"), "NHWC"),
    (dict(g_upsample="deconv"), "g_upsample"),
    (dict(g_resize="cubic"), "g_resize"),
    (dict(g_channels=(8, 8, 8, 8, 8)), "divisible by 32"),
    (dict(g_output="softmax"), "activation"),
])
def test_config_errors(change, message):
  mc = _model_config(28)
  shape = (784,) if change.pop("layout", None) else SHAPES[28][0]
  for k, v in change.items():
    mc[k] = v
  with pytest.raises(UserError, match=message):
    models.build_generator(mc, shape)


def test_discriminator_rejects_flat_images():
  d = models.build_discriminator(_model_config(28))
  with pytest.raises(UserError, match="NHWC"):
    jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((1, 784))))


# ------------------------------------------------------------------ configs and training
@pytest.mark.parametrize("name,shape", [("dcgan_28", (28, 28, 1)), ("dcgan_32", (32, 32, 3))])
def test_experiment_configs(name, shape):
  full = load_config(name, "")
  assert full.data.layout == "nhwc" and full.model.generator == full.model.discriminator == "dcgan"
  assert full.model.g_output == "tanh" and full.data.scale == "symmetric"
  assert full.optimizer.name == "adam" and full.optimizer.g_lr == 2e-4 and full.optimizer.b1 == 0.5
  if name == "dcgan_32":
    assert (full.data.source, full.data.name, full.batch_size) == ("cifar10", "cifar10", 128)
  else:
    assert (full.data.source, full.data.name, full.data.dir) == ("idx", "mnist", "")
  data = configs.synthetic_data(full, 256)
  assert data.example_shape == shape
  g = build.build_gan(full, data)
  shapes = jax.eval_shape(lambda: g.init(0))
  assert dcgan.count_params(shapes.g_params) > 100_000  # the real widths, not the smoke ones


@pytest.fixture(scope="module")
def bf16_run():
  """One training iteration of dcgan_32's smoke variant with bf16 compute (init in the same program)."""
  config = load_config("dcgan_32", "smoke")
  config.parallel.mode = "none"
  config.model.compute_dtype = "bfloat16"
  data = configs.synthetic_data(config, 64)
  g = build.build_gan(config, data)

  @jax.jit
  def run(arrays):
    state = g.init(config.seed)
    return (state,) + g.train_steps(state, arrays, 1)

  return jax.device_get(run(data.arrays))


def test_training_keeps_float32_state(bf16_run):
  state, new_state, metrics = bf16_run
  chex.assert_tree_all_finite(metrics)
  assert int(new_state.step) == 1
  for tree in (new_state.g_params, new_state.d_params, new_state.g_opt_state, new_state.d_opt_state):
    floats = [x for x in jax.tree.leaves(tree) if np.issubdtype(x.dtype, np.floating)]
    assert floats and all(x.dtype == np.float32 for x in floats)
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), state.g_params, new_state.g_params)
  assert all(v > 0 for v in jax.tree.leaves(moved))  # every generator layer trained
