"""Toy densities sampled on device: 1-D Gaussians and mixtures, 2-D rings and grids of Gaussians.

Each toy is an equal-weight mixture of isotropic Gaussians, so its exact log density is available for
theory checks (D* = p_data / (p_data + p_g)) and mode-coverage metrics.

  gaussian_1d  N(mean, std^2): the setting of the paper's Figure 1.
  mixture_1d   equal mixture of N(m, std^2) over `means`.
  ring_2d      `num_modes` Gaussians on a circle of `radius` (the mode-collapse benchmark).
  grid_2d      a `grid_side` x `grid_side` grid of Gaussians, `spacing` apart.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from gan_jax.errors import UserError

TOY_NAMES = ("gaussian_1d", "mixture_1d", "ring_2d", "grid_2d")
RING_STD = 0.02
"""Standard deviation of each mode in the standard 8-mode ring (Metz et al. 2017)."""

GRID_STD = 0.05
"""Standard deviation of each mode in the standard 5x5 grid (VEEGAN, PacGAN)."""


def ring_centers(num_modes: int = 8, radius: float = 2.0) -> np.ndarray:
  """Centers of modes evenly spaced on a circle around the origin.

  The first center is at angle 0, i.e. at ``(radius, 0)``.

  Args:
    num_modes: Number of modes K (at least 1).
    radius: Radius of the circle.

  Returns:
    A float64 array of shape ``[num_modes, 2]``.
  """
  if num_modes < 1:
    raise UserError(f"ring_centers needs num_modes >= 1, got {num_modes}; pass a positive count.")
  angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
  return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centers(side: int = 5, spacing: float = 2.0) -> np.ndarray:
  """Centers of modes on a square ``side x side`` grid centered at the origin.

  With the defaults the coordinates are {-4, -2, 0, 2, 4}. Centers are ordered row-major
  (the first coordinate varies slowest).

  Args:
    side: Number of modes along each axis (at least 1).
    spacing: Distance between neighbouring modes.

  Returns:
    A float64 array of shape ``[side * side, 2]``.
  """
  if side < 1:
    raise UserError(f"grid_centers needs side >= 1, got {side}; pass a positive count.")
  coords = (np.arange(side) - (side - 1) / 2.0) * spacing
  xx, yy = np.meshgrid(coords, coords, indexing="ij")
  return np.stack([xx.ravel(), yy.ravel()], axis=1)


@dataclasses.dataclass(frozen=True)
class ToyDistribution:
  """An equal-weight mixture of isotropic Gaussians with `centers` [K, dim] and common `std`."""

  name: str
  centers: tuple
  std: float

  @property
  def dim(self) -> int:
    return len(self.centers[0])

  def sample(self, key):
    """One example [dim] from one key (vmap over keys for a batch)."""
    c = jnp.asarray(self.centers, jnp.float32)
    k_mode, k_noise = jax.random.split(key)
    mode = jax.random.randint(k_mode, (), 0, c.shape[0])
    return c[mode] + self.std * jax.random.normal(k_noise, (self.dim,))

  def log_prob(self, x):
    """Exact log density of x [N, dim]."""
    c = jnp.asarray(self.centers, jnp.float32)
    x = jnp.asarray(x, jnp.float32).reshape(-1, self.dim)
    sq = jnp.sum((x[:, None, :] - c[None]) ** 2, axis=-1)
    log_norm = -0.5 * self.dim * jnp.log(2 * jnp.pi * self.std**2)
    return logsumexp(-sq / (2 * self.std**2), axis=1) - jnp.log(c.shape[0]) + log_norm


def build_toy(data_config) -> ToyDistribution:
  """The toy distribution named by `data_config.name`."""
  name = data_config.name
  if name == "gaussian_1d":
    centers = [[float(data_config.mean)]]
  elif name == "mixture_1d":
    centers = [[float(m)] for m in data_config.means]
  elif name == "ring_2d":
    centers = np.asarray(ring_centers(data_config.num_modes, data_config.radius)).tolist()
  elif name == "grid_2d":
    centers = np.asarray(grid_centers(data_config.grid_side, data_config.spacing)).tolist()
  else:
    raise UserError(f"unknown toy data.name {name!r}; choose one of {list(TOY_NAMES)}")
  return ToyDistribution(name=name, centers=tuple(tuple(c) for c in centers), std=float(data_config.std))
