"""Tests for gan_jax.theory: Proposition 1 and Theorem 1 of the paper, checked by quadrature."""

import functools
import math

import numpy as np
import pytest

from gan_jax.paper import theory
from gan_jax.errors import UserError

LOG_4 = math.log(4.0)


def _normal(mean):
  return functools.partial(theory.gaussian_log_pdf, mean=mean, std=1.0)


def _criterion(mu, **kwargs):
  return theory.virtual_training_criterion(_normal(0.0), _normal(mu), -12.0, mu + 12.0, **kwargs)


@pytest.mark.parametrize("mu,expected", [(0.0, -1.386294), (0.5, -1.325672), (1.0, -1.163451)])
def test_criterion_matches_paper_values(mu, expected):
  assert abs(_criterion(mu) - expected) < 1e-5


@pytest.mark.parametrize("mu", [0.0, 0.3, 1.0, 2.5, 6.0])
def test_theorem_1_criterion_is_minus_log_4_plus_twice_jsd(mu):
  jsd = theory.jensen_shannon(_normal(0.0), _normal(mu), -12.0, mu + 12.0)
  assert 0.0 <= jsd <= math.log(2.0) + 1e-12
  assert abs(_criterion(mu) - (-LOG_4 + 2.0 * jsd)) < 1e-9


def test_minimum_is_minus_log_4_at_equality():
  assert abs(_criterion(0.0) + LOG_4) < 1e-9
  assert theory.jensen_shannon(_normal(0.0), _normal(0.0), -12.0, 12.0) == pytest.approx(0.0,
                                                                                        abs=1e-12)
  # Any other generator does worse.
  assert all(_criterion(mu) > -LOG_4 for mu in (0.01, 0.1, 1.0))


def test_large_shift_is_finite_and_reaches_the_maximum():
  c = _criterion(40.0)
  assert math.isfinite(c)
  assert abs(c - (-LOG_4 + 2.0 * math.log(2.0))) < 1e-9  # disjoint supports: JSD = log 2, C = 0
  jsd = theory.jensen_shannon(_normal(0.0), _normal(40.0), -12.0, 52.0)
  assert abs(jsd - math.log(2.0)) < 1e-9


def test_optimal_discriminator_is_half_when_p_g_equals_p_data():
  x = np.linspace(-5, 5, 101)
  p = np.exp(theory.gaussian_log_pdf(x))
  np.testing.assert_array_equal(theory.optimal_discriminator(p, p), 0.5)


def test_optimal_discriminator_values_and_zero_density():
  d = theory.optimal_discriminator([0.0, 1.0, 3.0, 0.0], [0.0, 1.0, 1.0, 2.0])
  np.testing.assert_allclose(d, [0.5, 0.5, 0.75, 0.0])
  with pytest.raises(UserError, match="non-negative"):
    theory.optimal_discriminator([-1.0], [1.0])


def test_log_optimal_discriminator_agrees_and_is_stable():
  x = np.linspace(-6, 6, 61)
  lp, lq = theory.gaussian_log_pdf(x, 0.0, 1.0), theory.gaussian_log_pdf(x, 1.0, 2.0)
  log_d, log_1md = theory.log_optimal_discriminator(lp, lq)
  d = theory.optimal_discriminator(np.exp(lp), np.exp(lq))
  np.testing.assert_allclose(np.exp(log_d), d, rtol=1e-12)
  np.testing.assert_allclose(np.exp(log_1md), 1.0 - d, rtol=1e-10)
  # Densities far below float64's range: the ratio is still exact in log space.
  log_d, log_1md = theory.log_optimal_discriminator([-5000.0, -np.inf], [-5000.0 - math.log(3.0),
                                                                          -np.inf])
  np.testing.assert_allclose(np.exp(log_d), [0.75, 0.5])
  np.testing.assert_allclose(np.exp(log_1md), [0.25, 0.5])


def test_gaussian_log_pdf_matches_formula():
  x = np.array([-1.0, 0.0, 2.5])
  expected = -0.5 * ((x - 1.0) / 2.0) ** 2 - math.log(2.0 * math.sqrt(2.0 * math.pi))
  np.testing.assert_allclose(theory.gaussian_log_pdf(x, 1.0, 2.0), expected, rtol=1e-14)
  with pytest.raises(UserError):
    theory.gaussian_log_pdf(x, 0.0, 0.0)


def test_bad_grid_raises():
  with pytest.raises(UserError, match="lo < hi"):
    theory.virtual_training_criterion(_normal(0.0), _normal(0.0), 1.0, -1.0)
  with pytest.raises(UserError, match="3 grid points"):
    theory.jensen_shannon(_normal(0.0), _normal(0.0), -1.0, 1.0, n=2)
