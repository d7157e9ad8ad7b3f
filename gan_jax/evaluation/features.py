"""Standard sample-quality metrics on feature arrays, whatever network produced the features.

With Inception-v3 pool3 features (`gan_jax.evaluation.inception`) these are the metrics of the
GAN literature; with the project's small classifier (`gan_jax.evaluation.classifier`) they are
the same formulas on other features, comparable only between runs that share the classifier.

* `fid`: Frechet distance of Gaussians fitted to the two sets (Heusel et al. 2017), reusing
  `metrics.frechet_distance_from_stats`; the real side may be cached `metrics.FeatureStats`.
* `inception_score`: exp(E KL(p(y|x) || p(y))) over 10 splits (Salimans et al. 2016), reusing
  `metrics.inception_score`.
* `kid`: kernel Inception distance (Binkowski et al. 2018): the unbiased MMD^2 with the cubic
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, mean and std over random subsets (100 subsets
  of 1000, torch-fidelity's defaults; the subset size is clipped to the smaller set).
* `precision_recall`: improved precision and recall (Kynkaanniemi et al. 2019): a sample is in
  a set's manifold if it lies within the distance from some member to that member's k-th
  nearest neighbour (k = 3), boundary included.
* `density_coverage`: density and coverage (Naeem et al. 2020), k = 5, strict inequality as
  their reference code.
* `feature_metrics` computes any of them at once, sharing the distance computations;
  `with_protocol` records next to the numbers what they were measured on.

Each metric returns a flat dict of floats. Distances are exact Euclidean distances from
`sklearn.metrics.pairwise_distances_chunked` (float64 accumulation, bounded memory): three
passes (real-real, fake-fake, real-fake) serve all four manifold metrics.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import sklearn.metrics
from sklearn.metrics.pairwise import polynomial_kernel

from gan_jax.errors import UserError
from gan_jax.evaluation import metrics

KID_SUBSETS = 100
"""Number of random subsets KID averages over (torch-fidelity's default)."""

KID_SUBSET_SIZE = 1000
"""Samples per KID subset, from each set (Binkowski et al.; torch-fidelity's default)."""

PR_K = 3
"""Neighbourhood size of improved precision/recall (Kynkaanniemi et al. 2019)."""

DC_K = 5
"""Neighbourhood size of density/coverage (Naeem et al. 2020)."""

IS_SPLITS = 10
"""Number of splits of the Inception score (Salimans et al. 2016)."""

NAMES = ("fid", "kid", "precision_recall", "density_coverage", "inception_score")
"""Metric groups `feature_metrics` knows, in the order it reports them."""


def fid(real, fake) -> dict[str, float]:
  """Frechet distance between Gaussians fitted to real and generated features (FID).

  Args:
    real: ``[N, F]`` features, or their `metrics.FeatureStats` (e.g. cached training-set
      statistics).
    fake: ``[M, F]`` features, or their `metrics.FeatureStats`.

  Returns:
    ``{"fid": value}``. Biased upwards at small sizes: compare values at equal sample counts.
  """
  return {"fid": metrics.frechet_distance_from_stats(_stats(real), _stats(fake))}


def inception_score(logits, splits: int = IS_SPLITS) -> dict[str, float]:
  """Inception score of classifier logits over ``splits`` consecutive chunks.

  For numbers comparable with published ones use the Inception network's ``logits_unbiased``
  (see `gan_jax.evaluation.inception.extract`), 50,000 samples and 10 splits.

  Args:
    logits: ``[N, K]`` logits, N >= splits.
    splits: Number of chunks.

  Returns:
    ``{"inception_score": mean, "inception_score_std": std}`` over the chunks.
  """
  mean, std = metrics.inception_score(logits, splits=splits)
  return {"inception_score": mean, "inception_score_std": std}


def mmd2_unbiased(x, y, degree: int = 3, coef0: float = 1.0) -> float:
  """Unbiased MMD^2 between two samples with the kernel ``(x.y / d + coef0) ** degree``.

  ``mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)``; it can
  be slightly negative when the distributions are equal.

  Args:
    x: ``[m, d]`` samples, m >= 2.
    y: ``[n, d]`` samples, n >= 2.
    degree: Polynomial degree (3 for KID).
    coef0: Additive constant (1 for KID).

  Returns:
    The estimate.
  """
  x, y = _pair(x, y, min_size=2, what="mmd2_unbiased")
  gamma = 1.0 / x.shape[1]
  kxx = polynomial_kernel(x, x, degree=degree, gamma=gamma, coef0=coef0)
  kyy = polynomial_kernel(y, y, degree=degree, gamma=gamma, coef0=coef0)
  kxy = polynomial_kernel(x, y, degree=degree, gamma=gamma, coef0=coef0)
  m, n = x.shape[0], y.shape[0]
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
               + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
               - 2.0 * kxy.mean())


def kid(real, fake, num_subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> dict[str, float]:
  """Kernel Inception distance: `mmd2_unbiased` averaged over random subsets.

  Each subset draws ``subset_size`` real and as many generated samples without replacement
  (torch-fidelity's procedure); the size is clipped to the smaller set.

  Args:
    real: ``[N, F]`` features, N >= 2.
    fake: ``[M, F]`` features, M >= 2.
    num_subsets: Number of subsets.
    subset_size: Samples per subset from each set.
    seed: Seed of the subset draws.

  Returns:
    ``{"kid": mean, "kid_std": std, "kid_subset_size": size used}``; std is over subsets
    (numpy's, ddof 0), not a standard error.
  """
  real, fake = _pair(real, fake, min_size=2, what="kid")
  if num_subsets < 1 or subset_size < 2:
    raise UserError(f"kid needs num_subsets >= 1 and subset_size >= 2, got {num_subsets} and "
                    f"{subset_size}; use the defaults (100, 1000).")
  size = min(int(subset_size), real.shape[0], fake.shape[0])
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    r = real[rng.choice(real.shape[0], size, replace=False)]
    f = fake[rng.choice(fake.shape[0], size, replace=False)]
    values.append(mmd2_unbiased(r, f))
  return {"kid": float(np.mean(values)), "kid_std": float(np.std(values)),
          "kid_subset_size": float(size)}


def precision_recall(real, fake, k: int = PR_K) -> dict[str, float]:
  """Improved precision and recall (Kynkaanniemi et al. 2019).

  Precision: fraction of generated samples within ``r_k(x)`` of some real sample x, where
  ``r_k(x)`` is the distance from x to its k-th nearest real neighbour. Recall: the same with
  the roles swapped.

  Args:
    real: ``[N, F]`` features, N > k.
    fake: ``[M, F]`` features, M > k.
    k: Neighbourhood size.

  Returns:
    ``{"precision": p, "recall": r}``, each in [0, 1].
  """
  return _manifold_metrics(real, fake, pr_k=k, dc_k=None)


def density_coverage(real, fake, k: int = DC_K) -> dict[str, float]:
  """Density and coverage (Naeem et al. 2020).

  With ``r_k(x)`` the distance from a real sample x to its k-th nearest real neighbour:
  density is the mean over generated samples of the number of real balls ``B(x, r_k(x))``
  containing them, divided by k (about 1 when the distributions match; it can exceed 1);
  coverage is the fraction of real samples whose ball contains a generated sample.

  Args:
    real: ``[N, F]`` features, N > k.
    fake: ``[M, F]`` features, M >= 1.
    k: Neighbourhood size.

  Returns:
    ``{"density": d, "coverage": c}``.
  """
  return _manifold_metrics(real, fake, pr_k=None, dc_k=k)


def feature_metrics(real, fake, fake_logits=None, names: Sequence[str] | None = None,
                    kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
                    seed: int = 0) -> dict[str, float]:
  """Several metrics at once, sharing their distance computations.

  Args:
    real: ``[N, F]`` real features (`metrics.FeatureStats` is enough for ``fid`` alone).
    fake: ``[M, F]`` generated features.
    fake_logits: ``[M, K]`` logits of the generated samples, for ``inception_score``.
    names: Groups from `NAMES`. Default: all of them, without ``inception_score`` when
      ``fake_logits`` is None.
    kid_subsets: See `kid`.
    kid_subset_size: See `kid`.
    seed: Seed of KID's subsets.

  Returns:
    The union of the groups' dicts.
  """
  if names is None:
    names = [n for n in NAMES if n != "inception_score" or fake_logits is not None]
  names = [names] if isinstance(names, str) else list(names)
  unknown = [n for n in names if n not in NAMES]
  if unknown:
    raise UserError(f"unknown feature metrics {unknown}; valid names: {', '.join(NAMES)}.")
  out: dict[str, float] = {}
  if "fid" in names:
    out.update(fid(real, fake))
  if "kid" in names:
    out.update(kid(real, fake, kid_subsets, kid_subset_size, seed))
  if "precision_recall" in names or "density_coverage" in names:
    out.update(_manifold_metrics(real, fake,
                                 pr_k=PR_K if "precision_recall" in names else None,
                                 dc_k=DC_K if "density_coverage" in names else None))
  if "inception_score" in names:
    if fake_logits is None:
      raise UserError("inception_score needs fake_logits; pass the generated samples' logits "
                      "(inception.extract(...)['logits_unbiased']).")
    out.update(inception_score(fake_logits))
  return out


def with_protocol(results: Mapping[str, float], *, n_real: int, n_fake: int, split: str,
                  extractor: str) -> dict[str, Any]:
  """The numbers together with what they were measured on, for logs and result files.

  Metric values depend on all four (FID and KID on the sample counts, every metric on the
  feature network and the reference split), so a number without them cannot be compared.

  Args:
    results: Metric values, e.g. from `feature_metrics`.
    n_real: Number of real samples (or the count behind cached statistics).
    n_fake: Number of generated samples.
    split: The real data's split, e.g. ``"train"`` (the usual FID reference) or ``"test"``.
    extractor: The feature network, e.g. ``"inception-v3-fid"`` or ``"small-cnn"``.

  Returns:
    A new dict: ``results`` plus ``n_real``, ``n_fake``, ``split`` and ``extractor``.
  """
  if n_real < 1 or n_fake < 1:
    raise UserError(f"with_protocol needs positive sample counts, got n_real={n_real}, "
                    f"n_fake={n_fake}; pass the numbers of samples the metrics used.")
  return {**results, "n_real": int(n_real), "n_fake": int(n_fake), "split": str(split),
          "extractor": str(extractor)}


# ----------------------------------------------------------------------------------------------
# Internals.


def _stats(x) -> metrics.FeatureStats:
  """`metrics.FeatureStats` of features, or the statistics themselves."""
  return x if isinstance(x, metrics.FeatureStats) else metrics.feature_stats(x)


def _features(x, what: str, min_size: int) -> np.ndarray:
  """Checks one ``[N, F]`` feature array and returns it as float32 or float64 numpy."""
  if isinstance(x, metrics.FeatureStats):
    raise UserError(f"{what} needs feature arrays, not FeatureStats; keep the real features "
                    "(statistics are enough for fid only).")
  x = np.asarray(x)
  if x.dtype != np.float32:
    x = x.astype(np.float64)
  if x.ndim != 2 or x.shape[0] < min_size or x.shape[1] < 1:
    raise UserError(f"{what} needs [N, F] features with N >= {min_size}, got shape {x.shape}; "
                    "pass more samples.")
  if not np.all(np.isfinite(x)):
    raise UserError(f"{what}: features contain NaN or inf; check the samples for divergence.")
  return x


def _pair(real, fake, min_size: int, what: str, fake_min: int | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
  """Checks two feature arrays of one width."""
  real = _features(real, f"{what} (real)", min_size)
  fake = _features(fake, f"{what} (fake)", min_size if fake_min is None else fake_min)
  if real.shape[1] != fake.shape[1]:
    raise UserError(f"{what}: real features have width {real.shape[1]}, generated ones "
                    f"{fake.shape[1]}; use one feature extractor for both.")
  return real, fake


def _chunks(x: np.ndarray, y: np.ndarray | None, reduce_func) -> Iterable:
  """`sklearn.metrics.pairwise_distances_chunked` over rows of x, exact Euclidean distances."""
  return sklearn.metrics.pairwise_distances_chunked(x, y, reduce_func=reduce_func,
                                                    metric="euclidean")


def _knn_radii(x: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
  """Distance from each row of x to its k-th nearest other row, for each k in ks."""
  ks = sorted(set(ks))

  def reduce(d, start):
    del start
    # Column k of the partition is the (k+1)-th smallest distance: the k-th neighbour, as the
    # row's distance to itself (0) is the smallest.
    part = np.partition(d, ks, axis=1)
    return part[:, ks]

  radii = np.concatenate(list(_chunks(x, None, reduce)))
  return {k: radii[:, i] for i, k in enumerate(ks)}


def _manifold_metrics(real, fake, pr_k: int | None, dc_k: int | None) -> dict[str, float]:
  """Precision/recall (k = pr_k) and/or density/coverage (k = dc_k) in one real-fake pass."""
  k_max = max(k for k in (pr_k, dc_k) if k is not None)
  for k in (pr_k, dc_k):
    if k is not None and k < 1:
      raise UserError(f"the neighbourhood size k must be >= 1, got {k}.")
  real, fake = _pair(real, fake, min_size=k_max + 1, what="precision/recall and density/coverage",
                     fake_min=(pr_k + 1) if pr_k is not None else 1)
  r_real = _knn_radii(real, [k for k in (pr_k, dc_k) if k is not None])
  r_fake_pr = _knn_radii(fake, [pr_k])[pr_k] if pr_k is not None else None
  n_fake = fake.shape[0]
  fake_in_real = np.zeros(n_fake, bool)  # precision: generated sample inside the real manifold
  fake_ball_count = np.zeros(n_fake, np.int64)  # density: real balls containing it
  real_in_fake, real_covered = [], []

  def reduce(d, start):
    rows = slice(start, start + d.shape[0])
    if pr_k is not None:
      fake_in_real[:] |= (d <= r_real[pr_k][rows, None]).any(axis=0)
      real_in_fake.append((d <= r_fake_pr[None, :]).any(axis=1))
    if dc_k is not None:
      fake_ball_count[:] += (d < r_real[dc_k][rows, None]).sum(axis=0)
      real_covered.append(d.min(axis=1) < r_real[dc_k][rows])
    return np.zeros(d.shape[0])  # The results are accumulated above.

  for _ in _chunks(real, fake, reduce):
    pass
  out = {}
  if pr_k is not None:
    out["precision"] = float(fake_in_real.mean())
    out["recall"] = float(np.concatenate(real_in_fake).mean())
  if dc_k is not None:
    out["density"] = float(fake_ball_count.sum() / (dc_k * n_fake))
    out["coverage"] = float(np.concatenate(real_covered).mean())
  return out
