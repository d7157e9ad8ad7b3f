"""Mode-coverage metrics for 2-D Gaussian-mixture toy problems.

These are the metrics of the mode-collapse literature (Metz et al. 2017, "Unrolled GANs";
Srivastava et al. 2017, "VEEGAN"; Lin et al. 2018, "PacGAN"), computed on generator samples
from a mixture of isotropic Gaussians with known centers and a shared standard deviation:

* each sample is assigned to its nearest center;
* a sample is *high quality* if it lies within ``3 * std`` (Euclidean distance) of that center;
* a mode is *covered* if at least ``min_count`` high-quality samples are assigned to it;
* ``kl_modes`` is KL(p || uniform), where p is the histogram of the high-quality samples over
  the modes (PacGAN's "reverse KL").

Counting rule. The default ``min_count=1`` is the rule of the released PacGAN code (a mode counts
as captured when any high-quality sample lands on it), evaluated there on 2,500 samples, the
sample size VEEGAN and PacGAN report. Coverage counts with ``min_count=1`` grow with N, so report
the number of samples alongside them, use N=2,500 to compare with published tables, and raise
``min_count`` (for example to 20 out of 2,500) for a stricter count that ignores stray samples.

Standard setups (`gan_jax.data.toy.ring_centers` and `grid_centers` reproduce their centers):

* ring: 8 modes on a circle of radius 2, std 0.02 (Unrolled GAN, VEEGAN);
* grid: 25 modes on a 5x5 grid over {-4, -2, 0, 2, 4}^2, std 0.05 (VEEGAN, PacGAN).
"""

from __future__ import annotations

import numpy as np

from gan_jax.errors import UserError

HIGH_QUALITY_STDS = 3.0
"""A sample within this many standard deviations of its nearest center is high quality."""

_CHUNK = 65536  # Samples per block of the distance computation: bounds memory at _CHUNK * K.


def assign_to_modes(samples, centers) -> tuple[np.ndarray, np.ndarray]:
  """Finds the nearest center of every sample.

  Args:
    samples: Array ``[N, D]`` of samples (D = 2 for the standard toy problems).
    centers: Array ``[K, D]`` of mode centers.

  Returns:
    A pair ``(index, distance)``: int64 ``[N]`` index of the nearest center and float64 ``[N]``
    Euclidean distance to it (NaN for a non-finite sample, whose index is meaningless).
  """
  samples, centers = _check_inputs(samples, centers)
  index = np.empty(samples.shape[0], dtype=np.int64)
  sq_dist = np.empty(samples.shape[0], dtype=np.float64)
  center_sq = np.sum(centers**2, axis=1)
  with np.errstate(invalid="ignore", over="ignore"):  # Non-finite samples give NaN distances.
    for start in range(0, samples.shape[0], _CHUNK):
      block = samples[start:start + _CHUNK]
      # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, as an [n, K] matrix.
      d2 = np.sum(block**2, axis=1, keepdims=True) - 2.0 * block @ centers.T + center_sq
      idx = np.argmin(d2, axis=1)
      index[start:start + _CHUNK] = idx
      # Recompute the winning distance directly: the expanded form loses precision near 0.
      sq_dist[start:start + _CHUNK] = np.sum((block - centers[idx])**2, axis=1)
  return index, np.sqrt(sq_dist)


def mode_metrics(samples, centers, std: float, min_count: int = 1) -> dict[str, float]:
  """Mode coverage, sample quality and mode balance of samples from a Gaussian mixture.

  See the module docstring for the definitions and the choice of ``min_count``.

  Args:
    samples: Array ``[N, D]`` of generated samples (N >= 1). Non-finite samples (from a
      diverged generator) count as low quality, so they lower ``high_quality_frac``.
    centers: Array ``[K, D]`` of the true mode centers, e.g. from `ring_centers`.
    std: Standard deviation of each (isotropic) mode; the high-quality radius is ``3 * std``.
    min_count: High-quality samples a mode needs to count as covered (default 1, as PacGAN).

  Returns:
    A dict with
    ``modes_covered`` (int, 0..K): modes with at least ``min_count`` high-quality samples;
    ``high_quality_frac`` (float in [0, 1]): fraction of all samples that are high quality;
    ``kl_modes`` (float in [0, log K]): KL(p || uniform) in nats, p being the distribution of
    the high-quality samples over the K modes; 0 when they are spread evenly, log K when
    they all sit on one mode, and log K (the worst case) when there is no high-quality sample.
  """
  samples, centers = _check_inputs(samples, centers)
  std = float(std)
  if not np.isfinite(std) or std <= 0:
    raise UserError(f"mode_metrics needs a positive std, got {std}; pass the mixture's std.")
  if int(min_count) < 1:
    raise UserError(f"mode_metrics needs min_count >= 1, got {min_count}; pass a positive count.")
  num_modes = centers.shape[0]
  index, dist = assign_to_modes(samples, centers)
  high_quality = dist <= HIGH_QUALITY_STDS * std
  counts = np.bincount(index[high_quality], minlength=num_modes)
  num_hq = int(counts.sum())
  if num_hq == 0:
    kl = float(np.log(num_modes))
  else:
    p = counts / num_hq
    nz = p > 0  # 0 * log 0 = 0.
    kl = float(np.sum(p[nz] * np.log(p[nz] * num_modes)))
  return {
      "modes_covered": int(np.sum(counts >= int(min_count))),
      "high_quality_frac": num_hq / samples.shape[0],
      "kl_modes": max(kl, 0.0),
  }


def _check_inputs(samples, centers) -> tuple[np.ndarray, np.ndarray]:
  """Validates and converts samples and centers to float64 arrays."""
  samples = np.asarray(samples, dtype=np.float64)
  centers = np.asarray(centers, dtype=np.float64)
  if centers.ndim != 2 or centers.shape[0] < 1:
    raise UserError(f"mode centers must have shape [K, D] with K >= 1, got {centers.shape}; "
                    "build them with ring_centers() or grid_centers().")
  if samples.ndim != 2 or samples.shape[1] != centers.shape[1]:
    raise UserError(f"samples must have shape [N, {centers.shape[1]}] to match the centers, got "
                    f"{samples.shape}; pass the generator's 2-D points as one [N, 2] array.")
  if samples.shape[0] == 0:
    raise UserError("mode metrics got 0 samples; generate at least one (2,500 is standard).")
  return samples, centers
