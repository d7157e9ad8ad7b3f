"""Tests for gan_jax.evaluation.features: closed forms, brute force and hand-computed cases."""

import itertools

import numpy as np
import pytest

from gan_jax.errors import UserError
from gan_jax.evaluation import features
from gan_jax.evaluation import metrics


def _exact_moments(rng, n, mean, cov):
  """n samples whose sample mean and (unbiased) covariance are exactly ``mean`` and ``cov``."""
  z = rng.standard_normal((n, len(mean)))
  z -= z.mean(axis=0)
  z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample cov = I
  return z @ np.linalg.cholesky(cov).T + mean


def test_fid_matches_closed_form():
  # Covariances sharing eigenvectors Q: Tr sqrt(S1 S2) = sum sqrt(a_i b_i), so the distance is
  # |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
  rng = np.random.default_rng(0)
  d = 6
  q, _ = np.linalg.qr(rng.standard_normal((d, d)))
  a, b = rng.random(d) + 0.5, rng.random(d) * 3 + 0.1
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  real = _exact_moments(rng, 60, mu1, q @ np.diag(a) @ q.T)
  fake = _exact_moments(rng, 40, mu2, q @ np.diag(b) @ q.T)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(features.fid(real, fake)["fid"], want, rtol=1e-9)
  # Cached statistics of the real side give the same number.
  stats = metrics.feature_stats(real)
  np.testing.assert_allclose(features.fid(stats, fake)["fid"], want, rtol=1e-9)
  assert features.fid(real, real)["fid"] == pytest.approx(0.0, abs=1e-9)


def _mmd2_brute(x, y):
  d = x.shape[1]
  k = lambda u, v: (np.dot(u, v) / d + 1.0) ** 3
  m, n = len(x), len(y)
  kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
  kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
  kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return kxx + kyy - 2 * kxy


def test_mmd2_and_kid_match_brute_force():
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((9, 4)), rng.standard_normal((7, 4)) + 0.5
  np.testing.assert_allclose(features.mmd2_unbiased(x, y), _mmd2_brute(x, y), rtol=1e-10)

  # Subsets as large as the sets: every subset is the whole set, so KID is the full MMD^2.
  x2 = rng.standard_normal((12, 4)) * 2
  out = features.kid(x[:7], y, num_subsets=3)  # subset size clipped from 1000 to 7
  assert out["kid_subset_size"] == 7
  np.testing.assert_allclose(out["kid"], _mmd2_brute(x[:7], y), rtol=1e-10)
  assert out["kid_std"] < 1e-12

  # Random subsets: the same draws (subset of real, then of fake, per subset), brute force.
  out = features.kid(x2, y, num_subsets=4, subset_size=5, seed=3)
  draw = np.random.default_rng(3)
  vals = []
  for _ in range(4):
    r = x2[draw.choice(12, 5, replace=False)]
    f = y[draw.choice(7, 5, replace=False)]
    vals.append(_mmd2_brute(r, f))
  np.testing.assert_allclose([out["kid"], out["kid_std"]], [np.mean(vals), np.std(vals)],
                             rtol=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_apart():
  rng = np.random.default_rng(2)
  a, b = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
  same = features.kid(a, b, num_subsets=5, subset_size=200)
  apart = features.kid(a, b + 1.0, num_subsets=5, subset_size=200)
  assert abs(same["kid"]) < 3 * same["kid_std"]  # zero within its spread over subsets
  assert apart["kid"] > 100 * abs(same["kid"])


def test_manifold_metrics_identical_and_disjoint():
  rng = np.random.default_rng(3)
  real = rng.standard_normal((50, 16)).astype(np.float32)
  out = features.feature_metrics(real, real.copy(), names=["precision_recall",
                                                           "density_coverage"])
  assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["coverage"] == 1.0
  assert out["density"] > 0.5
  far = features.feature_metrics(real, real + 1000.0, names=["precision_recall",
                                                             "density_coverage"])
  assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_manifold_metrics_hand_computed():
  # Reals at 0, 1, ..., 9 on a line: with k = 1 every real ball has radius 1. Fakes at 0.5 and
  # 20: each fake's own 1-NN radius is 19.5.
  real = np.arange(10.0)[:, None]
  fake = np.array([[0.5], [20.0]])
  pr = features.precision_recall(real, fake, k=1)
  assert pr == {"precision": 0.5, "recall": 1.0}  # 20 is outside; 0.5's ball holds all reals
  dc = features.density_coverage(real, fake, k=1)
  # 0.5 lies in the balls of reals 0 and 1; reals 0 and 1 of 10 have a fake within radius.
  assert dc == {"density": (2 + 0) / (1 * 2), "coverage": 0.2}
  # The radius itself counts for precision (<=) but not for coverage (<), as in the papers' code.
  edge = np.array([[10.0], [30.0]])
  assert features.precision_recall(real, edge, k=1)["precision"] == 0.5
  assert features.density_coverage(real, edge, k=1)["coverage"] == 0.0


def test_manifold_metrics_agree_alone_and_together():
  rng = np.random.default_rng(4)
  real, fake = rng.standard_normal((80, 5)), rng.standard_normal((60, 5)) * 1.3
  both = features.feature_metrics(real, fake, names=["precision_recall", "density_coverage"])
  assert both == {**features.precision_recall(real, fake), **features.density_coverage(real, fake)}
  assert 0 < both["precision"] < 1 and 0 < both["recall"] < 1 and 0 < both["coverage"] < 1


def test_inception_score_known_distributions():
  c, splits = 7, 10
  onehot = 50.0 * np.eye(c)[np.arange(splits * c) % c]  # each split holds every class once
  out = features.inception_score(onehot, splits=splits)
  np.testing.assert_allclose(out["inception_score"], c, rtol=1e-6)
  assert out["inception_score_std"] < 1e-6
  same = np.tile(np.random.default_rng(5).standard_normal(c), (40, 1))
  np.testing.assert_allclose(features.inception_score(same)["inception_score"], 1.0, rtol=1e-9)


def test_feature_metrics_and_protocol():
  rng = np.random.default_rng(6)
  real, fake = rng.standard_normal((30, 4)), rng.standard_normal((20, 4))
  logits = rng.standard_normal((20, 3))
  out = features.feature_metrics(real, fake, fake_logits=logits)
  assert list(out) == ["fid", "kid", "kid_std", "kid_subset_size", "precision", "recall",
                       "density", "coverage", "inception_score", "inception_score_std"]
  assert "inception_score" not in features.feature_metrics(real, fake, names=None)
  record = features.with_protocol(out, n_real=30, n_fake=20, split="train",
                                  extractor="inception-v3-fid")
  assert record == {**out, "n_real": 30, "n_fake": 20, "split": "train",
                    "extractor": "inception-v3-fid"}


def test_mistakes_are_user_errors():
  rng = np.random.default_rng(7)
  a = rng.standard_normal((10, 3))
  with pytest.raises(UserError, match="width 3, generated ones 4"):
    features.kid(a, rng.standard_normal((10, 4)))
  with pytest.raises(UserError, match="N >= 4"):
    features.precision_recall(a[:3], a)
  with pytest.raises(UserError, match="unknown feature metrics"):
    features.feature_metrics(a, a, names=["fidd"])
  with pytest.raises(UserError, match="needs fake_logits"):
    features.feature_metrics(a, a, names=["inception_score"])
  with pytest.raises(UserError, match="not FeatureStats"):
    features.kid(metrics.feature_stats(a), a)
  with pytest.raises(UserError, match="NaN"):
    features.density_coverage(a, np.full((3, 3), np.nan))
  with pytest.raises(UserError, match="positive sample counts"):
    features.with_protocol({}, n_real=0, n_fake=1, split="train", extractor="x")
