"""Tests for gan_jax.evaluation.{modes, metrics, classifier}: closed forms and a real classifier.

The classifier tests train on scikit-learn's 8x8 digits (real data, shipped with scikit-learn,
no download) for a few hundred steps.
"""

import json
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from gan_jax.errors import UserError
from gan_jax.evaluation import classifier as classifier_lib
from gan_jax.evaluation import classifier_cache
from gan_jax.evaluation import metrics
from gan_jax.data import toy
from gan_jax.evaluation import modes

# ----------------------------------------------------------------------------------------------
# Mode metrics.


def test_ring_and_grid_centers():
  ring = toy.ring_centers(8, 2.0)
  assert ring.shape == (8, 2)
  np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0)
  np.testing.assert_allclose(ring[0], [2.0, 0.0])
  grid = toy.grid_centers(5, 2.0)
  assert grid.shape == (25, 2)
  np.testing.assert_allclose(grid.mean(axis=0), 0.0, atol=1e-12)
  assert sorted(set(grid[:, 0])) == [-4.0, -2.0, 0.0, 2.0, 4.0]
  assert len({tuple(c) for c in grid}) == 25


def test_mode_metrics_samples_on_every_center():
  centers = toy.ring_centers()
  samples = np.repeat(centers, 10, axis=0)
  out = modes.mode_metrics(samples, centers, toy.RING_STD)
  assert out["modes_covered"] == 8
  assert out["high_quality_frac"] == 1.0
  assert out["kl_modes"] == pytest.approx(0.0, abs=1e-12)


def test_mode_metrics_all_on_one_mode():
  centers = toy.ring_centers()
  samples = np.repeat(centers[3:4], 100, axis=0) + 0.01 * toy.RING_STD
  out = modes.mode_metrics(samples, centers, toy.RING_STD)
  assert out["modes_covered"] == 1
  assert out["high_quality_frac"] == 1.0
  assert out["kl_modes"] == pytest.approx(np.log(8))


def test_mode_metrics_far_away_samples_are_low_quality():
  centers = toy.ring_centers()
  samples = np.full((50, 2), 10.0)
  samples[:5] = np.nan  # A diverged generator: low quality, not an error.
  out = modes.mode_metrics(samples, centers, toy.RING_STD)
  assert out["high_quality_frac"] == 0.0
  assert out["modes_covered"] == 0
  assert out["kl_modes"] == pytest.approx(np.log(8))


def test_mode_metrics_on_true_mixture_samples():
  rng = np.random.default_rng(0)
  centers = toy.grid_centers()
  samples = centers[rng.integers(0, 25, 2500)] + toy.GRID_STD * rng.normal(size=(2500, 2))
  out = modes.mode_metrics(samples, centers, toy.GRID_STD)
  assert out["modes_covered"] == 25
  # P(||z|| <= 3) for a 2-D standard normal is 1 - exp(-4.5) = 0.9889.
  assert out["high_quality_frac"] == pytest.approx(1 - np.exp(-4.5), abs=0.01)
  assert out["kl_modes"] < 0.02


def test_mode_metrics_min_count():
  centers = toy.ring_centers()
  samples = np.concatenate([np.repeat(centers[:1], 30, 0), np.repeat(centers[1:2], 5, 0)])
  assert modes.mode_metrics(samples, centers, 0.02)["modes_covered"] == 2
  assert modes.mode_metrics(samples, centers, 0.02, min_count=20)["modes_covered"] == 1


def test_mode_metrics_rejects_bad_input():
  with pytest.raises(UserError, match="shape"):
    modes.mode_metrics(np.zeros((10, 3)), toy.ring_centers(), 0.02)
  with pytest.raises(UserError, match="std"):
    modes.mode_metrics(np.zeros((10, 2)), toy.ring_centers(), 0.0)


# ----------------------------------------------------------------------------------------------
# Frechet distance, Inception score, class coverage.


def _exact_gaussian_samples(rng, n, mean, std):
  """Samples whose sample mean and covariance (np.cov) are exactly `mean` and std^2 I."""
  z = rng.normal(size=(n, len(mean)))
  z -= z.mean(axis=0)
  z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # Whiten exactly.
  return mean + std * z


def test_frechet_distance_matches_closed_form_for_isotropic_gaussians():
  rng = np.random.default_rng(0)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a = _exact_gaussian_samples(rng, 500, mu1, 0.5)
  b = _exact_gaussian_samples(rng, 700, mu2, 2.0)
  expected = np.sum((mu1 - mu2)**2) + d * (0.5 - 2.0)**2
  assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
  assert metrics.frechet_distance(b, a) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_general_covariances():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
  b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 1.0
  # Reference: Tr sqrtm(S1 S2) = Tr sqrtm(S1^1/2 S2 S1^1/2), a symmetric PSD matrix.
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(s1)
  r1 = v @ np.diag(np.sqrt(w)) @ v.T
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)))
  expected = (np.sum((a.mean(0) - b.mean(0))**2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
  fd_ab, fd_ba = metrics.frechet_distance(a, b), metrics.frechet_distance(b, a)
  assert fd_ab == pytest.approx(expected, rel=1e-6)
  assert fd_ab == pytest.approx(fd_ba, rel=1e-8)
  assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_singular_covariances():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 0.1  # N < F: rank-deficient.
  fd = metrics.frechet_distance(a, b)
  assert np.isfinite(fd) and fd > 0
  assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-3)


def test_frechet_distance_rejects_mismatched_features():
  with pytest.raises(UserError):
    metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(UserError):
    metrics.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def _confident_logits(labels, k):
  logits = np.full((len(labels), k), -30.0)
  logits[np.arange(len(labels)), labels] = 30.0
  return logits


def test_inception_score_extremes():
  k = 10
  uniform = _confident_logits(np.arange(1000) % k, k)
  mean, std = metrics.inception_score(uniform, splits=10)
  assert mean == pytest.approx(k, rel=1e-6)
  assert std == pytest.approx(0.0, abs=1e-6)
  collapsed = _confident_logits(np.full(1000, 3), k)
  assert metrics.inception_score(collapsed)[0] == pytest.approx(1.0, abs=1e-6)
  unsure = np.zeros((1000, k))  # p(y|x) = p(y): no information.
  assert metrics.inception_score(unsure)[0] == pytest.approx(1.0, abs=1e-9)
  half = _confident_logits(np.arange(1000) % 5, k)  # 5 of 10 classes.
  assert metrics.inception_score(half)[0] == pytest.approx(5.0, rel=1e-6)


def test_class_coverage():
  k = 10
  uniform = metrics.class_coverage(_confident_logits(np.arange(1000) % k, k), k)
  assert uniform == pytest.approx({"class_coverage": 1.0, "class_entropy": 1.0})
  collapsed = metrics.class_coverage(_confident_logits(np.full(1000, 2), k))
  assert collapsed == pytest.approx({"class_coverage": 0.1, "class_entropy": 0.0})
  # Class 9 gets 5 of 1000 samples: 5% of its uniform share of 100, below the 10% threshold.
  labels = np.concatenate([np.arange(995) % 9, np.full(5, 9)])
  assert metrics.class_coverage(_confident_logits(labels, k), k)["class_coverage"] == 0.9
  assert metrics.class_coverage(_confident_logits(labels, k), k, 0.05)["class_coverage"] == 1.0


def test_get_metric_and_registry():
  assert set(metrics.METRICS) >= {"frechet_distance", "inception_score", "class_coverage",
                                  "modes_covered", "high_quality_frac", "kl_modes"}
  assert metrics.get_metric("frechet_distance").higher_is_better is False
  with pytest.raises(UserError, match="valid names: .*frechet_distance.*modes_covered"):
    metrics.get_metric("fid")
  with pytest.raises(UserError, match="kind"):
    metrics.evaluate_samples(np.zeros((3, 2)), "points")
  with pytest.raises(UserError, match="applies to 'image'"):
    metrics.evaluate_samples(np.zeros((3, 2)), "toy2d", metrics=["inception_score"])


def test_evaluate_samples_toy2d():
  centers = toy.ring_centers()
  samples = np.repeat(centers[:4], 25, axis=0)
  ref = metrics.MixtureReference(centers, toy.RING_STD)
  out = metrics.evaluate_samples(samples, "toy2d", reference=ref)
  assert out == pytest.approx({"modes_covered": 4, "high_quality_frac": 1.0,
                               "kl_modes": np.log(2.0)})
  assert metrics.evaluate_samples(samples, "toy2d", ref, metrics=["modes_covered"]) == {
      "modes_covered": 4}
  with pytest.raises(UserError, match="MixtureReference"):
    metrics.evaluate_samples(samples, "toy2d")


# ----------------------------------------------------------------------------------------------
# The classifier, on real 8x8 digits.

STEPS, BATCH = 400, 64


@pytest.fixture(scope="module")
def digits():
  data = load_digits()
  images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # [N, 8, 8, 1]
  labels = data.target.astype(np.int64)
  order = np.random.default_rng(0).permutation(len(labels))
  train, test = order[:1400], order[1400:]
  return images[train], labels[train], images[test], labels[test]


@pytest.fixture(scope="module")
def trained(digits):
  x_train, y_train, x_test, y_test = digits
  return classifier_lib.train_classifier(x_train, y_train, 10, steps=STEPS, batch_size=BATCH,
                                         seed=0, test_images=x_test, test_labels=y_test)


def test_classifier_accuracy_and_outputs(digits, trained):
  x_train, _, x_test, y_test = digits
  assert trained.test_accuracy >= 0.9
  assert classifier_lib.accuracy(trained, x_test, y_test) == trained.test_accuracy
  # Float input in [0, 1] and [N, H, W] input give the same result as uint8 [N, H, W, 1].
  feats = classifier_lib.features(trained, x_test)
  assert feats.shape == (len(x_test), classifier_lib.FEATURE_DIM)
  np.testing.assert_allclose(classifier_lib.features(trained, x_test[..., 0] / 255.0), feats,
                             rtol=1e-4, atol=1e-4)
  out = classifier_lib.logits(trained, x_test[:7], batch_size=3)  # Padded last batch.
  np.testing.assert_allclose(out, classifier_lib.logits(trained, x_test[:7]), rtol=1e-4,
                             atol=1e-4)
  assert out.shape == (7, 10)
  with pytest.raises(UserError, match=r"\(x \+ 1\) / 2"):
    classifier_lib.features(trained, x_test / 127.5 - 1.0)
  with pytest.raises(UserError, match="trained on"):
    classifier_lib.features(trained, np.zeros((2, 28, 28, 1), np.uint8))


def test_classifier_metrics_separate_real_from_noise(digits, trained):
  x_train, _, x_test, _ = digits
  real_test = classifier_lib.features(trained, x_test)
  real_train = classifier_lib.features(trained, x_train)
  noise = np.random.default_rng(0).uniform(size=x_test.shape).astype(np.float32)
  fd_real = metrics.frechet_distance(real_test, real_train)
  fd_noise = metrics.frechet_distance(real_test, classifier_lib.features(trained, noise))
  assert fd_noise > 10 * fd_real

  ref = metrics.reference_stats(trained, x_train)
  real = metrics.evaluate_samples(x_test, "image", reference=ref, classifier=trained)
  assert set(real) == {"frechet_distance", "inception_score", "inception_score_std",
                       "class_coverage", "class_entropy"}
  assert real["frechet_distance"] == pytest.approx(fd_real, rel=1e-6)
  assert real["inception_score"] > 7.0
  assert real["class_coverage"] == 1.0 and real["class_entropy"] > 0.95
  fake = metrics.evaluate_samples(noise, "image", reference=ref, classifier=trained)
  assert fake["frechet_distance"] > 10 * real["frechet_distance"]
  assert fake["inception_score"] < real["inception_score"]
  # Without a reference the Frechet distance is left out; NaN images give NaN, not an error.
  assert "frechet_distance" not in metrics.evaluate_samples(x_test, "image", classifier=trained)
  bad = np.full((20, 8, 8, 1), np.nan, np.float32)
  out = metrics.evaluate_samples(bad, "image", reference=ref, classifier=trained)
  assert all(np.isnan(v) for v in out.values())


def test_get_or_train_classifier_caches(digits, tmp_path, monkeypatch):
  x_train, y_train, x_test, y_test = digits
  kwargs = dict(num_classes=10, test_images=x_test, test_labels=y_test, steps=20,
                batch_size=BATCH, seed=0)
  first, from_cache = classifier_cache.get_or_train_classifier(tmp_path, "digits-train", x_train,
                                                               y_train, **kwargs)
  assert not from_cache
  (entry,) = os.listdir(tmp_path)
  assert sorted(os.listdir(tmp_path / entry)) == ["meta.json", "params"]
  meta = json.loads((tmp_path / entry / "meta.json").read_text())
  assert meta["dataset_key"] == "digits-train"
  assert meta["image_shape"] == [8, 8, 1]
  assert meta["test_accuracy"] == pytest.approx(first.test_accuracy)

  calls = []
  real_train = classifier_lib.train_classifier

  def counting_train(*args, **kw):
    calls.append(1)
    return real_train(*args, **kw)

  monkeypatch.setattr(classifier_lib, "train_classifier", counting_train)
  second, from_cache = classifier_cache.get_or_train_classifier(tmp_path, "digits-train", x_train,
                                                                y_train, **kwargs)
  assert from_cache and not calls
  assert second.test_accuracy == pytest.approx(first.test_accuracy)
  np.testing.assert_array_equal(classifier_lib.logits(second, x_test),
                                classifier_lib.logits(first, x_test))

  # Parameters that do not match their metadata are ignored, not trusted.
  meta["params_sha256"] = "0" * 64
  (tmp_path / entry / "meta.json").write_text(json.dumps(meta))
  _, from_cache = classifier_cache.get_or_train_classifier(tmp_path, "digits-train", x_train,
                                                           y_train, **kwargs)
  assert not from_cache and len(calls) == 1
  # Other data under the same key, or other training settings: retrain and replace.
  _, from_cache = classifier_cache.get_or_train_classifier(tmp_path, "digits-train", x_train[:-1],
                                                           y_train[:-1], **kwargs)
  assert not from_cache and len(calls) == 2
  _, from_cache = classifier_cache.get_or_train_classifier(tmp_path, "digits-train", x_train[:-1],
                                                           y_train[:-1], **dict(kwargs, seed=1))
  assert not from_cache and len(calls) == 3
  assert os.listdir(tmp_path) == [entry]
  # Another key gets its own entry.
  _, from_cache = classifier_cache.get_or_train_classifier(tmp_path, "digits/other split", x_train,
                                                           y_train, **kwargs)
  assert not from_cache and len(calls) == 4
  assert len(os.listdir(tmp_path)) == 2
