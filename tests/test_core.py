"""Core: losses against closed forms, models, the update's determinism and semantics, D -> D*."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from gan_jax import models, parallel, train
from gan_jax.core import build, gan as gan_lib, losses, optim, rng
from gan_jax.run import logs
from gan_jax.errors import UserError


# ----------------------------------------------------------------------------- losses
def _sig(x):
  return 1 / (1 + np.exp(-x))


def test_losses_match_closed_forms():
  r = np.array([-3.0, 0.0, 2.0, 30.0], np.float32)
  f = np.array([-40.0, -1.0, 0.5, 4.0], np.float32)
  v = np.mean(np.log(_sig(r.astype(np.float64)))) + np.mean(np.log1p(-_sig(f.astype(np.float64))))
  np.testing.assert_allclose(losses.value(r, f), v, rtol=1e-6)
  np.testing.assert_allclose(losses.d_standard(r, f), -v, rtol=1e-6)
  np.testing.assert_allclose(losses.g_minimax(f), np.mean(np.log1p(-_sig(f.astype(np.float64)))), rtol=1e-6)
  np.testing.assert_allclose(losses.g_non_saturating(f), -np.mean(np.log(_sig(f.astype(np.float64)))),
                             rtol=1e-6)


def test_losses_are_stable_for_saturated_logits():
  big = jnp.array([1e4, -1e4])
  for fn in (losses.g_minimax, losses.g_non_saturating, lambda x: losses.d_standard(x, x)):
    val, grad = jax.value_and_grad(fn)(big)
    assert np.isfinite(val) and np.all(np.isfinite(grad))


def test_value_at_equilibrium_is_minus_log4():
  zeros = jnp.zeros(8)  # D = 1/2 everywhere
  np.testing.assert_allclose(losses.value(zeros, zeros), -np.log(4.0), rtol=1e-6)


def test_d_weight_scales_discriminator_loss_only():
  cfg = ml_collections.ConfigDict({"name": "non_saturating", "d_weight": 0.5})
  loss = losses.get_loss(cfg)
  r, f = jnp.array([0.3, -1.0]), jnp.array([0.2, 2.0])
  np.testing.assert_allclose(loss.d(r, f), 0.5 * losses.d_standard(r, f), rtol=1e-6)
  np.testing.assert_allclose(loss.g(f), losses.g_non_saturating(f), rtol=1e-6)
  with pytest.raises(UserError, match="unknown loss.name"):
    losses.get_loss(ml_collections.ConfigDict({"name": "nope"}))


# ----------------------------------------------------------------------------- optimizers
def test_paper_schedules():
  lr = optim.paper_lr_schedule(0.1, 1.000004, 1e-6)
  np.testing.assert_allclose(lr(jnp.int32(0)), 0.1)
  np.testing.assert_allclose(lr(jnp.int32(100_000)), 0.1 / 1.000004**100_000, rtol=1e-5)
  assert float(lr(jnp.int32(2_000_000_000))) == pytest.approx(1e-6)
  m = optim.paper_momentum_schedule(0.5, 0.7, 250, updates_per_epoch=500)
  assert float(m(jnp.int32(0))) == pytest.approx(0.5)
  assert float(m(jnp.int32(499))) == pytest.approx(0.5)
  assert float(m(jnp.int32(500 * 249))) == pytest.approx(0.7)
  assert float(m(jnp.int32(500 * 124))) == pytest.approx(0.5 + 0.2 * 124 / 249, rel=1e-5)


def test_paper_sgd_is_pylearn2_momentum():
  """v <- m v - lr g; p <- p + v, with the learning rate inside the velocity."""
  cfg = ml_collections.ConfigDict(dict(name="paper_sgd", decay_factor=2.0, min_lr=1e-6, momentum_start=0.5,
                                       momentum_end=0.5, momentum_saturate_epoch=250))
  tx = optim.build_optimizer(cfg, 1.0, updates_per_epoch=10)
  p = jnp.zeros(1)
  state = tx.init(p)
  v, ref = 0.0, 0.0
  for t in range(3):
    u, state = tx.update(jnp.ones(1), state, p)
    p = p + u
    v = 0.5 * v - (1.0 / 2.0**t) * 1.0
    ref += v
  np.testing.assert_allclose(p, [ref], rtol=1e-6)


# ----------------------------------------------------------------------------- models
def test_paper_models_shapes_and_init():
  cfg = load_config("mnist_paper")
  g = models.build_generator(cfg.model, (784,))
  d = models.build_discriminator(cfg.model)
  gp = g.init(jax.random.PRNGKey(0), jnp.zeros((1, 100)))["params"]
  dp = d.init(jax.random.PRNGKey(1), jnp.zeros((1, 784)))["params"]
  assert gp["hidden_0"]["kernel"].shape == (100, 1200)
  assert gp["output"]["kernel"].shape == (1200, 784)
  assert dp["maxout_0"]["kernel"].shape == (784, 1200)  # 240 units x 5 pieces
  assert dp["maxout_1"]["kernel"].shape == (240, 1200)
  assert dp["logit"]["kernel"].shape == (240, 1)
  assert float(jnp.abs(gp["hidden_0"]["kernel"]).max()) <= 0.05
  assert float(jnp.abs(dp["maxout_0"]["kernel"]).max()) <= 0.005
  assert float(jnp.abs(gp["hidden_0"]["kernel"]).max()) > 0.045  # really U(-0.05, 0.05)
  x = g.apply({"params": gp}, jnp.zeros((3, 100)))
  assert x.shape == (3, 784) and float(x.min()) >= 0 and float(x.max()) <= 1
  assert d.apply({"params": dp}, x).shape == (3,)
  # Training mode draws dropout masks: two keys, two different outputs.
  a = d.apply({"params": dp}, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  b = d.apply({"params": dp}, x, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  assert not np.allclose(a, b)


def test_generator_output_bias_starts_at_data_mean():
  cfg = load_config("digits", "smoke")
  cfg.parallel.mode = "none"
  data, gan, state = build.setup(cfg)
  x = gan.generate(state.g_params, jnp.zeros((1, gan.noise_dim)))[0]
  # With z = 0 the hidden layers give relu(0 * W + 0) = 0, so G(0) = sigmoid(bias) = the data mean.
  np.testing.assert_allclose(x, data.mean_example, atol=1e-5)


def test_bad_model_names_are_user_errors():
  cfg = load_config("digits", "smoke")
  for key, value in (("generator", "nope"), ("discriminator", "nope"), ("compute_dtype", "int8")):
    c = cfg.copy_and_resolve_references()
    c.model[key] = value
    with pytest.raises(UserError, match=key):
      models.build_discriminator(c.model) if key != "generator" else models.build_generator(c.model, (64,))
      models.build_generator(c.model, (64,))


# ----------------------------------------------------------------------------- the update
def _tiny(update_mode="alternating", k=1, seed=0):
  cfg = load_config("mog_2d", "smoke")
  cfg.parallel.mode = "none"
  cfg.model.g_hidden, cfg.model.d_hidden = (16,), (16,)
  cfg.batch_size = 32
  cfg.update_mode, cfg.k_disc_steps, cfg.seed = update_mode, k, seed
  return cfg


@functools.lru_cache(maxsize=None)
def _run(update_mode="alternating", k=1, seed=0, steps=5):
  _, gan, state = build.setup(_tiny(update_mode, k, seed))
  runner = parallel.Runner(gan, "none")
  state, metrics = runner.run(runner.put(state), {}, steps)
  return runner.get(state), jax.device_get(metrics)


def test_same_seed_same_params_different_seed_different():
  a, _ = _run()
  b, _ = _run.__wrapped__()
  c, _ = _run(seed=1)
  assert gan_lib.params_sha256(a) == gan_lib.params_sha256(b)
  assert gan_lib.params_sha256(a) != gan_lib.params_sha256(c)


def test_simultaneous_differs_from_alternating():
  """Alternating: G's step sees the freshly updated D. Simultaneous: both gradients at the old point.

  D's first update is the same in both (same batch, same noise: phase 0); G's differs, since
  alternating G follows the updated D and draws fresh noise."""
  def cfg(mode):  # plain SGD: the update is linear in the gradient, so the check below is exact
    c = _tiny(mode)
    c.optimizer.name, c.optimizer.g_lr, c.optimizer.d_lr = "sgd", 0.1, 0.1
    return c

  _, gan, s0 = build.setup(cfg("alternating"))
  alt, _ = gan.train_step(s0, {})
  sim, _ = build.setup(cfg("simultaneous"))[1].train_step(s0, {})
  np.testing.assert_allclose(jax.tree.leaves(alt.d_params)[0], jax.tree.leaves(sim.d_params)[0], rtol=1e-6)
  assert not np.allclose(jax.tree.leaves(alt.g_params)[0], jax.tree.leaves(sim.g_params)[0])

  # Simultaneous G gradient = gradient of G's loss against the *old* D on phase-0 noise.
  step_key = jax.random.fold_in(jax.random.fold_in(s0.key, rng.TRAIN), 0)  # step 0
  keys = jax.random.split(jax.random.fold_in(step_key, 0), gan.batch_size)  # phase 0
  z = jax.vmap(lambda k: gan.sample_noise(jax.random.fold_in(k, rng.NOISE)))(keys)
  g_grad = jax.grad(lambda gp: gan.loss.g(gan.discriminate(s0.d_params, gan.generate(gp, z))))(s0.g_params)
  updates, _ = gan.g_tx.update(g_grad, s0.g_opt_state, s0.g_params)
  expected = jax.tree.map(lambda p, u: p + u, s0.g_params, updates)
  for a, b in zip(jax.tree.leaves(sim.g_params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_k_disc_steps_consume_k_batches_and_metrics_are_sane():
  s1, m1 = _run(k=1)
  s3, m3 = _run(k=3)
  assert int(s1.step) == int(s3.step) == 5
  assert gan_lib.params_sha256(s1) != gan_lib.params_sha256(s3)
  for m in (m1, m3):
    assert m["d_loss"].shape == (5,)
    for key in ("d_real", "d_fake", "d_acc_real", "d_acc_fake"):
      assert np.all((m[key] >= 0) & (m[key] <= 1))
    np.testing.assert_allclose(m["value"], -m["d_loss"], rtol=1e-5)  # d_weight 1: D's loss is -V


def test_last_iteration_grad_norms_match_every_iteration_ones():
  """The trainer measures the gradient norms at a dispatch's last iteration only; the training is
  the same as with norms at every iteration, and so are the last iteration's norms."""
  _, gan, s0 = build.setup(_tiny("alternating"))
  run = lambda mode: jax.jit(functools.partial(gan.train_steps, num_steps=4, grad_norms=mode))(s0, {})
  (every_state, every), (last_state, last) = run("every"), run("last")
  assert gan_lib.params_sha256(every_state) == gan_lib.params_sha256(last_state)
  for name in gan_lib.GRAD_NORM_METRICS:
    assert every[name].shape == (4,) and last[name].shape == (1,)
    assert float(last[name][0]) > 0
    np.testing.assert_allclose(last[name][0], every[name][-1], rtol=1e-6)
  np.testing.assert_array_equal(every["d_loss"], last["d_loss"])
  with pytest.raises(ValueError, match="grad_norms"):
    gan.train_steps(s0, {}, 2, grad_norms="some")


def test_trainer_logs_the_gradient_norms_of_the_logged_step(tmp_path):
  """One iteration per dispatch, a log every 3: the dispatches in between leave the norms out, and
  the logged ones are exactly the norms of the logged iteration."""
  cfg = _tiny()
  cfg.num_steps, cfg.steps_per_dispatch, cfg.log_every = 6, 1, 3
  cfg.sample_every = cfg.checkpoint_every = 6
  train.train_and_evaluate(cfg, str(tmp_path))
  records = logs.read_metrics(str(tmp_path))
  _, gan, s0 = build.setup(cfg)
  _, every = jax.jit(functools.partial(gan.train_steps, num_steps=6, grad_norms="every"))(s0, {})
  assert [r["step"] for r in records] == [3, 6]
  for r in records:
    for name in gan_lib.GRAD_NORM_METRICS:
      np.testing.assert_allclose(r[name], every[name][r["step"] - 1], rtol=1e-5)


def test_data_order_is_a_permutation_per_epoch():
  cfg = load_config("digits", "smoke")
  data, gan, state = build.setup(cfg)
  n, b = data.sampler.num_examples, 100
  seen = []
  keys = jax.random.split(jax.random.PRNGKey(0), b)
  ds = state.data
  sampler = dataclasses.replace(data.sampler, scale=None)  # "examples" = their own indices
  nxt = jax.jit(lambda ds: sampler.next({"train": jnp.arange(n)[:, None]}, ds, jax.random.PRNGKey(5), keys, 0, b))
  for _ in range(2 * (n // b)):
    x, ds = nxt(ds)
    seen.append(np.asarray(x[:, 0]).astype(int))
  epoch0 = np.concatenate(seen[: n // b])
  epoch1 = np.concatenate(seen[n // b:])
  assert len(set(epoch0)) == len(epoch0) == (n // b) * b  # no repeats inside an epoch
  assert len(set(epoch1)) == len(epoch1)
  assert not np.array_equal(epoch0, epoch1)  # a new order each epoch
  assert int(ds.epoch) == 1


# ----------------------------------------------------------------------------- D -> D*
def test_discriminator_approaches_optimal_d_star():
  """Against a fixed G (p_g = N(1, 1)) and p_data = N(0, 1), D approaches p_data / (p_data + p_g)."""
  cfg = load_config("toy_1d", "smoke")
  cfg.parallel.mode = "none"
  cfg.data.mean, cfg.data.std = 0.0, 1.0
  cfg.model.noise, cfg.model.g_hidden = "gaussian", ()  # G(z) = w z + b: a Gaussian
  cfg.model.d_hidden, cfg.model.d_activation = (32, 32), "tanh"
  cfg.optimizer.g_lr, cfg.optimizer.d_lr = 0.0, 3e-3
  cfg.batch_size = 512
  _, gan, state = build.setup(cfg)
  g_params = {"output": {"kernel": jnp.ones((1, 1)), "bias": jnp.ones((1,))}}
  state = state.replace(g_params=g_params, g_opt_state=gan.g_tx.init(g_params))
  runner = parallel.Runner(gan, "none")
  state, _ = runner.run(runner.put(state), {}, 1500)
  state = runner.get(state)
  np.testing.assert_allclose(state.g_params["output"]["kernel"], 1.0)  # G stayed fixed
  x = np.linspace(-2, 3, 41, dtype=np.float32)[:, None]
  d = jax.nn.sigmoid(gan.discriminate(state.d_params, x))
  log_pd, log_pg = -0.5 * x[:, 0] ** 2, -0.5 * (x[:, 0] - 1) ** 2
  d_star = 1 / (1 + np.exp(log_pg - log_pd))
  np.testing.assert_allclose(d, d_star, atol=0.06)
