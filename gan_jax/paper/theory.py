"""Numerical checks of the paper's theory (Section 4), by quadrature in float64 numpy.

- Proposition 1: for a fixed generator the optimal discriminator is
  D*(x) = p_data(x) / (p_data(x) + p_g(x)).
- Theorem 1: the virtual training criterion C(G) = max_D V(G, D)
  = E_pdata[log D*(x)] + E_pg[log(1 - D*(x))] equals -log 4 + 2 JSD(p_data || p_g), so its minimum
  -log 4 is reached exactly when p_g = p_data.

Densities are passed as log-density functions and everything is computed in log space
(log D* = log p_data - logaddexp(log p_data, log p_g)), so that widely separated densities, whose
values underflow to 0 where the other one lives, still give finite, accurate results.

Example: for p_data = N(0, 1) and p_g = N(1, 1),

  virtual_training_criterion(lambda x: gaussian_log_pdf(x, 0, 1),
                             lambda x: gaussian_log_pdf(x, 1, 1), -12, 13)  # -1.163451
"""

import math
from typing import Callable

import numpy as np

from gan_jax.errors import UserError

LogDensity = Callable[[np.ndarray], np.ndarray]

LOG_4 = math.log(4.0)


def gaussian_log_pdf(x, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
  """Log-density of a 1-D normal distribution N(mean, std^2).

  Args:
    x: points (any shape).
    mean: the mean.
    std: the standard deviation (positive).

  Returns:
    float64 array of log N(x; mean, std^2), the shape of x.
  """
  if not std > 0:
    raise UserError(f"std must be positive (got {std})")
  z = (np.asarray(x, np.float64) - mean) / std
  return -0.5 * z * z - math.log(std) - 0.5 * math.log(2.0 * math.pi)


def optimal_discriminator(p_data, p_g) -> np.ndarray:
  """Proposition 1: D*(x) = p_data(x) / (p_data(x) + p_g(x)).

  Args:
    p_data: data density values (non-negative, any shape).
    p_g: generator density values, broadcastable with p_data.

  Returns:
    float64 array of D*; 1/2 where both densities are 0 (the limit when p_g = p_data, and a value
    that does not matter for the criterion, since such points have no mass).
  """
  p_data = np.asarray(p_data, np.float64)
  p_g = np.asarray(p_g, np.float64)
  if np.any(p_data < 0) or np.any(p_g < 0):
    raise UserError("densities must be non-negative; pass density values, not log-densities")
  total = p_data + p_g
  safe = np.where(total > 0, total, 1.0)
  return np.where(total > 0, p_data / safe, 0.5)


def log_optimal_discriminator(log_p_data, log_p_g) -> tuple[np.ndarray, np.ndarray]:
  """log D* and log(1 - D*) from log-densities, stable for any separation.

  Args:
    log_p_data: log p_data(x) (may be -inf).
    log_p_g: log p_g(x), broadcastable with log_p_data.

  Returns:
    (log D*(x), log(1 - D*(x))) as float64 arrays; log(1/2) for both where both densities are 0.
  """
  log_p_data = np.asarray(log_p_data, np.float64)
  log_p_g = np.asarray(log_p_g, np.float64)
  log_total = np.logaddexp(log_p_data, log_p_g)
  both_zero = np.isneginf(log_total)
  safe_total = np.where(both_zero, 0.0, log_total)
  half = math.log(0.5)
  return (np.where(both_zero, half, log_p_data - safe_total),
          np.where(both_zero, half, log_p_g - safe_total))


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
  """An evenly spaced quadrature grid, with checks."""
  if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
    raise UserError(f"the integration interval must be finite with lo < hi (got [{lo}, {hi}])")
  if n < 3:
    raise UserError(f"need at least 3 grid points for quadrature (got n={n})")
  return np.linspace(lo, hi, int(n), dtype=np.float64)


def _expectation(log_p: np.ndarray, values: np.ndarray, x: np.ndarray) -> float:
  """Integral of p(x) * values(x) by the trapezoid rule; terms with p = 0 contribute 0."""
  p = np.exp(log_p)
  integrand = p * np.where(p > 0, values, 0.0)
  return float(np.trapezoid(integrand, x))


def virtual_training_criterion(log_p_data_fn: LogDensity, log_p_g_fn: LogDensity, lo: float,
                               hi: float, n: int = 200001) -> float:
  """C(G) = E_pdata[log D*(x)] + E_pg[log(1 - D*(x))] for 1-D densities, by quadrature.

  Args:
    log_p_data_fn: vectorised log p_data.
    log_p_g_fn: vectorised log p_g.
    lo: lower end of the integration interval (should hold almost all of both masses).
    hi: upper end.
    n: number of grid points (trapezoid rule).

  Returns:
    C(G) in nats; -log 4 when p_g = p_data, up to 0 (= -log 4 + 2 log 2) for disjoint supports.
  """
  x = _grid(lo, hi, n)
  log_p_data = np.asarray(log_p_data_fn(x), np.float64)
  log_p_g = np.asarray(log_p_g_fn(x), np.float64)
  log_d, log_one_minus_d = log_optimal_discriminator(log_p_data, log_p_g)
  return _expectation(log_p_data, log_d, x) + _expectation(log_p_g, log_one_minus_d, x)


def jensen_shannon(log_p: LogDensity, log_q: LogDensity, lo: float, hi: float,
                   n: int = 200001) -> float:
  """Jensen-Shannon divergence JSD(p || q) in nats for 1-D densities, by quadrature.

  Args:
    log_p: vectorised log-density of p.
    log_q: vectorised log-density of q.
    lo: lower end of the integration interval.
    hi: upper end.
    n: number of grid points (trapezoid rule).

  Returns:
    JSD = KL(p || m) / 2 + KL(q || m) / 2 with m = (p + q) / 2; in [0, log 2].
  """
  x = _grid(lo, hi, n)
  lp = np.asarray(log_p(x), np.float64)
  lq = np.asarray(log_q(x), np.float64)
  log_m = np.logaddexp(lp, lq) - math.log(2.0)
  # Where p > 0, m > 0 too, so the differences below are finite wherever they are used.
  safe_m = np.where(np.isneginf(log_m), 0.0, log_m)
  return 0.5 * (_expectation(lp, lp - safe_m, x) + _expectation(lq, lq - safe_m, x))
