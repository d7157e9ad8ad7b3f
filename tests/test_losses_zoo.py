"""The loss and regulariser zoo: each loss's values, the gradient penalties, spectral normalisation,
and their wiring into the GAN update (`loss.penalty`, `loss.penalty_weight`, `model.d_spectral_norm`)."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import load_config
from gan_jax.core import build, losses, penalties, rng
from gan_jax.data import pipeline
from gan_jax.errors import UserError


# ---------------------------------------------------------------------------- losses
def test_every_loss_has_its_textbook_value():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  sp = jax.nn.softplus
  expected_d = {
      "minimax": np.mean(sp(-real)) + np.mean(sp(fake)),
      "non_saturating": np.mean(sp(-real)) + np.mean(sp(fake)),
      "least_squares": 0.5 * np.mean((real - 1) ** 2) + 0.5 * np.mean(fake**2),
      "hinge": np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake)),
      "wasserstein": np.mean(fake) - np.mean(real),
  }
  expected_g = {
      "minimax": -np.mean(sp(fake)),
      "non_saturating": np.mean(sp(-fake)),
      "least_squares": 0.5 * np.mean((fake - 1) ** 2),
      "hinge": -np.mean(fake),
      "wasserstein": -np.mean(fake),
  }
  assert set(losses.LOSSES) == set(expected_d)
  for name in losses.LOSSES:
    loss = losses.get_loss(ml_collections.ConfigDict({"name": name, "d_weight": 0.5}))
    np.testing.assert_allclose(loss.d(real, fake), 0.5 * expected_d[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(loss.g(fake), expected_g[name], rtol=1e-6, err_msg=name)


def test_minimax_saturates_where_non_saturating_does_not():
  """The paper's Section 3 argument: when D confidently rejects G's samples, log(1 - D(G(z))) has a
  vanishing gradient, -log D(G(z)) a strong one."""
  fake = jnp.array([-10.0])
  g_mm = jax.grad(lambda f: losses.LOSSES["minimax"][1](f))(fake)
  g_ns = jax.grad(lambda f: losses.LOSSES["non_saturating"][1](f))(fake)
  assert abs(float(g_mm[0])) < 1e-4 < 0.9 < abs(float(g_ns[0]))


# ---------------------------------------------------------------------------- gradient penalties
_penalty = jax.jit(penalties.gradient_penalty, static_argnums=(0, 1))  # one program, not op by op


def _linear_d(w):
  """D(x) = w.x + 1: its input gradient is w everywhere."""
  return lambda x, keys: x.reshape(len(x), -1) @ w + 1.0


def test_penalties_on_a_linear_discriminator():
  w = jnp.array([1.2, -1.6])  # ||w|| = 2
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  real = jax.random.normal(jax.random.PRNGKey(1), (4, 2))
  fake = jax.random.normal(jax.random.PRNGKey(2), (4, 2))
  d = _linear_d(w)
  np.testing.assert_allclose(_penalty("wgan_gp", d, real, fake, keys), 1.0, rtol=1e-5)
  np.testing.assert_allclose(_penalty("zero_gp", d, real, fake, keys), 4.0, rtol=1e-5)
  np.testing.assert_allclose(_penalty("r1", d, real, fake, keys), 4.0, rtol=1e-5)


def test_penalties_are_per_example_and_see_the_right_points():
  """D(x) = 0.5 ||x||^2 has input gradient x, so each penalty reveals where it was evaluated."""
  d = lambda x, keys: 0.5 * jnp.sum(x.reshape(len(x), -1) ** 2, axis=1)
  keys = jax.random.split(jax.random.PRNGKey(3), 6)
  real = jax.random.normal(jax.random.PRNGKey(4), (6, 3))
  fake = jax.random.normal(jax.random.PRNGKey(5), (6, 3))
  r1 = _penalty("r1", d, real, fake, keys)
  np.testing.assert_allclose(r1, np.mean(np.sum(np.asarray(real) ** 2, 1)), rtol=1e-5)
  # Interpolates: each example's weight e_i from its own key, the same for wgan_gp and zero_gp.
  eps = np.asarray(jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 3), ()))(keys))[:, None]
  x_hat = eps * np.asarray(real) + (1 - eps) * np.asarray(fake)
  norms = np.linalg.norm(x_hat, axis=1)
  np.testing.assert_allclose(_penalty("zero_gp", d, real, fake, keys),
                             np.mean(norms**2), rtol=1e-5)
  np.testing.assert_allclose(_penalty("wgan_gp", d, real, fake, keys),
                             np.mean((norms - 1) ** 2), rtol=1e-5)
  assert len(np.unique(eps)) == 6 and eps.std() > 0.1  # one weight per example, not one shared value
  # The penalty trains D only: no gradient reaches the generated samples.
  g_fake = jax.grad(lambda f: penalties.gradient_penalty("wgan_gp", d, real, f, keys))(fake)
  assert not np.any(np.asarray(g_fake))


def test_unknown_penalty_is_a_user_error():
  with pytest.raises(UserError, match="unknown loss.penalty 'gp'"):
    penalties.check_penalty("gp")


# ---------------------------------------------------------------------------- spectral normalisation
def test_spectral_normalisation_gives_unit_spectral_norm():
  rng = np.random.RandomState(0)
  params = {
      "dense": {"kernel": jnp.asarray(rng.uniform(-0.05, 0.05, (64, 240 * 5)), jnp.float32),
                "bias": jnp.ones(1200)},
      "conv": {"kernel": jnp.asarray(rng.normal(size=(4, 4, 3, 16)), jnp.float32), "bias": jnp.ones(16)},
      "logit": {"kernel": jnp.asarray(rng.normal(size=(16, 1)), jnp.float32), "bias": jnp.ones(1)},
  }
  out = jax.jit(penalties.spectral_normalize)(params)
  for name in params:
    m = np.asarray(out[name]["kernel"]).reshape(-1, params[name]["kernel"].shape[-1])
    sigma = np.linalg.svd(m, compute_uv=False)[0]
    # Power iteration never overestimates sigma, so W / sigma_est has norm >= 1; a random matrix
    # (a small spectral gap, the slowest case) is within 3% after SN_POWER_ITERS iterations.
    assert 1 - 1e-4 < sigma < 1.03, (name, sigma)
    np.testing.assert_array_equal(out[name]["bias"], params[name]["bias"])
  # The gradient flows through sigma: scaling W does not change W / sigma(W), so d/dW is
  # orthogonal to W (Euler's theorem for a degree-0 function).
  w = params["logit"]["kernel"]
  g = jax.jit(jax.grad(lambda w: jnp.sum(penalties.spectral_normalize({"k": {"kernel": w}})["k"]["kernel"] *
                                         jnp.arange(16.0)[:, None])))(w)
  assert abs(float(jnp.vdot(g, w))) < 1e-4 * float(jnp.linalg.norm(g) * jnp.linalg.norm(w))
  assert float(jnp.linalg.norm(g)) > 0.1


# ---------------------------------------------------------------------------- in the GAN update
def _ring(**overrides):
  c = load_config("mog_2d", "smoke")
  c.parallel.mode = "none"
  c.batch_size = 16
  c.model.noise_dim = 4
  c.model.g_hidden = c.model.d_hidden = (8,)
  for key, value in overrides.items():
    c.update_from_flattened_dict({key: value})
  return c


@pytest.fixture(scope="module")
def ring():
  """(config, data, initial state): one state shared by every variant (the losses and penalties do
  not change the parameters' shapes, and init compiled once is much faster than eager init)."""
  c = _ring()
  data = pipeline.build_data(c)
  gan = build.build_gan(c, data)
  return c, data, jax.jit(lambda: gan.init(c.seed))()


def _one_step(gan, data, state):
  return jax.jit(lambda s: gan.train_step(s, data.arrays))(state)


def test_penalty_is_added_to_d_loss_with_the_step_keys(ring):
  """D's objective = its loss + weight * R1 on the step's own real batch, so the penalty is wired in
  with the core's per-example randomness. (For the non-saturating loss D's loss is -V, and the
  `value` metric is V on the same batch.)"""
  c, data, state = ring
  gan = build.build_gan(_ring(**{"loss.penalty": "r1", "loss.penalty_weight": 3.0}), data)
  assert gan.penalty == "r1" and gan.penalty_weight == 3.0 and gan.loss.name == "non_saturating"
  _, pen = _one_step(gan, data, state)

  @jax.jit
  def expected_r1(state):  # on the first D step's real batch, drawn as gan.train_step draws it
    step_key = jax.random.fold_in(jax.random.fold_in(state.key, rng.TRAIN), 0)
    keys = jax.random.split(jax.random.fold_in(step_key, 0), c.batch_size)
    real = jax.vmap(gan.sampler.toy.sample)(keys)
    drop_real = jax.vmap(lambda k: jax.random.fold_in(k, rng.DROP_REAL))(keys)
    return penalties.gradient_penalty("r1", lambda x, k: gan.discriminate(state.d_params, x, k), real,
                                      None, drop_real)

  r1 = expected_r1(state)
  assert float(r1) > 1e-4
  np.testing.assert_allclose(pen["d_loss"] + pen["value"], 3.0 * r1, rtol=1e-4)


def test_wgan_gp_with_spectral_norm_and_k_steps_trains(ring):
  _, data, state = ring
  c = _ring(**{"loss.name": "wasserstein", "loss.penalty": "wgan_gp", "model.d_spectral_norm": True,
               "k_disc_steps": 2})
  gan = build.build_gan(c, data)
  assert gan.d_spectral_norm and gan.penalty == "wgan_gp" and gan.k_disc_steps == 2
  new, metrics = _one_step(gan, data, state)
  for v in metrics.values():
    assert np.isfinite(v)
  assert int(new.d_opt_state[0].count) == 2 and int(new.g_opt_state[0].count) == 1
  # D computes with normalised weights: its logits equal those of the normalised parameters.
  x = np.random.RandomState(0).normal(size=(5, 2)).astype(np.float32)
  plain = dataclasses.replace(gan, d_spectral_norm=False)

  @jax.jit
  def logits(p):
    return gan.discriminate(p, x), plain.discriminate(penalties.spectral_normalize(p), x), plain.discriminate(p, x)

  with_sn, normalised_by_hand, without_sn = logits(new.d_params)
  np.testing.assert_allclose(with_sn, normalised_by_hand, rtol=1e-5)
  assert not np.allclose(with_sn, without_sn)


def test_bad_penalty_in_config_is_a_user_error():
  c = _ring(**{"loss.penalty": "wgan"})
  with pytest.raises(UserError, match="unknown loss.penalty 'wgan'; choose one of"):
    build.build_gan(c, pipeline.build_data(c))
