"""Sample-quality metrics for GAN ablations that need no download, and a registry of them.

Image metrics use the project's own classifier (`gan_jax.evaluation.classifier`) in place of
the Inception network, so their values are comparable only between runs that use the same
cached classifier; they are not comparable with published FID / Inception-score numbers.

* `frechet_distance`: the FID formula (Heusel et al. 2017) on classifier features.
* `inception_score`: exp(E_x KL(p(y|x) || p(y))) on classifier logits (Salimans et al. 2016).
* `class_coverage`: how many classes the samples hit, and how evenly.
* Mode metrics for 2-D mixtures: see `gan_jax.evaluation.modes`.

`evaluate_samples` computes any subset of the registered metrics (`METRICS`) for one batch of
samples, running the classifier once; `get_metric` validates a metric name from a config.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import scipy.linalg
import scipy.special

from gan_jax.errors import UserError
from gan_jax.evaluation import classifier as classifier_lib
from gan_jax.evaluation import modes

logger = logging.getLogger(__name__)

KINDS = ("toy2d", "image")
"""Sample kinds: ``toy2d`` are ``[N, 2]`` points from a Gaussian mixture, ``image`` are images."""


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """Mean and covariance of a feature set: all `frechet_distance` needs from the reference.

  Attributes:
    mean: Float64 ``[F]`` feature mean.
    cov: Float64 ``[F, F]`` feature covariance (unbiased, as ``np.cov``).
    num_samples: Number of feature vectors the statistics came from.
  """

  mean: np.ndarray
  cov: np.ndarray
  num_samples: int


@dataclasses.dataclass(frozen=True)
class MixtureReference:
  """The true 2-D mixture, the reference for the mode metrics.

  Attributes:
    centers: ``[K, 2]`` mode centers, e.g. ``gan_jax.data.toy.ring_centers()``.
    std: Standard deviation of each mode, e.g. ``gan_jax.data.toy.RING_STD``.
    min_count: High-quality samples a mode needs to count as covered (see `modes`).
  """

  centers: Any
  std: float
  min_count: int = 1


def feature_stats(features) -> FeatureStats:
  """Computes the statistics `frechet_distance_from_stats` needs.

  Args:
    features: ``[N, F]`` features, N >= 2.

  Returns:
    Their `FeatureStats`, in float64.
  """
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise UserError(f"features must have shape [N, F] with N >= 2, got {features.shape}; "
                    "pass at least two samples.")
  if not np.all(np.isfinite(features)):
    raise UserError("features contain NaN or inf; check the samples for divergence.")
  return FeatureStats(features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False)),
                      features.shape[0])


def frechet_distance(feat_a, feat_b, eps: float = 1e-6) -> float:
  """Frechet distance between Gaussians fitted to two feature sets (the FID formula).

  ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b))``, in float64.

  Args:
    feat_a: ``[N, F]`` features, N >= 2.
    feat_b: ``[M, F]`` features, M >= 2.
    eps: Diagonal offset used when the covariance product is singular (see
      `frechet_distance_from_stats`).

  Returns:
    The distance, >= 0. It is biased upwards for small N; compare values at equal N.
  """
  return frechet_distance_from_stats(feature_stats(feat_a), feature_stats(feat_b), eps=eps)


def frechet_distance_from_stats(stats_a: FeatureStats, stats_b: FeatureStats,
                                eps: float = 1e-6) -> float:
  """Frechet distance from precomputed statistics (e.g. cached reference statistics).

  Follows the TTUR reference implementation: if ``sqrtm(S_a S_b)`` is not finite (singular
  covariances, e.g. fewer samples than feature dimensions) it is recomputed with ``eps`` added
  to both diagonals; a small imaginary part from numerical error is dropped. Unlike TTUR, a
  large imaginary part triggers the same ``eps`` retry before giving up.

  Args:
    stats_a: Statistics of the first feature set.
    stats_b: Statistics of the second feature set.
    eps: Diagonal offset for singular covariances.

  Returns:
    The distance, clamped at 0 (rounding can make identical sets slightly negative).
  """
  mu1, mu2 = np.asarray(stats_a.mean, np.float64), np.asarray(stats_b.mean, np.float64)
  s1, s2 = np.asarray(stats_a.cov, np.float64), np.asarray(stats_b.cov, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise UserError(f"feature statistics do not match: means {mu1.shape} vs {mu2.shape}, "
                    f"covariances {s1.shape} vs {s2.shape}; use features of one classifier.")
  diff = mu1 - mu2
  covmean = _sqrtm(s1 @ s2)
  if not _usable(covmean):
    logger.info("frechet_distance: singular product of covariances; adding %g to diagonals", eps)
    offset = np.eye(s1.shape[0]) * eps
    covmean = _sqrtm((s1 + offset) @ (s2 + offset))
    if not _usable(covmean):
      raise ValueError("frechet_distance: sqrtm of the covariance product failed even with "
                       f"eps={eps}; the features may be degenerate.")
  fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(np.real(covmean))
  return max(float(fd), 0.0)


def _sqrtm(a: np.ndarray) -> np.ndarray:
  """scipy.linalg.sqrtm without its warnings (callers check the result instead)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return scipy.linalg.sqrtm(a)


def _usable(covmean: np.ndarray) -> bool:
  """Whether a matrix square root is finite and (up to rounding) real on its diagonal."""
  if not np.all(np.isfinite(covmean)):
    return False
  return not np.iscomplexobj(covmean) or np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
  """Inception score exp(E_x KL(p(y|x) || p(y))) of classifier logits, as Salimans et al.

  The samples are cut into ``splits`` consecutive chunks (as ``np.array_split``); p(y) is the
  mean prediction within a chunk. The score ranges from 1 (every sample predicted alike) to the
  number of classes K (confident predictions, evenly spread over the classes).

  Args:
    logits: ``[N, K]`` classifier logits (unnormalised log-probabilities), N >= splits.
    splits: Number of chunks.

  Returns:
    ``(mean, std)`` of the score over the chunks.
  """
  logits = np.asarray(logits, dtype=np.float64)
  if logits.ndim != 2 or logits.shape[1] < 2:
    raise UserError(f"logits must have shape [N, K] with K >= 2, got {logits.shape}; pass the "
                    "classifier's logits.")
  if not 1 <= splits <= logits.shape[0]:
    raise UserError(f"inception_score needs 1 <= splits <= N, got splits={splits} with "
                    f"N={logits.shape[0]}; use more samples or fewer splits.")
  log_p = scipy.special.log_softmax(logits, axis=1)
  scores = []
  for chunk in np.array_split(log_p, splits):
    log_py = scipy.special.logsumexp(chunk, axis=0) - np.log(chunk.shape[0])  # log mean p(y|x)
    kl = np.sum(np.exp(chunk) * (chunk - log_py), axis=1)
    scores.append(np.exp(np.mean(kl)))
  return float(np.mean(scores)), float(np.std(scores))


def class_coverage(logits, num_classes: int | None = None, threshold: float = 0.1
                  ) -> dict[str, float]:
  """Which classes the samples are predicted as, and how evenly.

  A class is covered if at least ``threshold * N / K`` samples are predicted as it, i.e. at
  least ``threshold`` times its share under a uniform class distribution (0.1: a tenth of it).

  Args:
    logits: ``[N, K]`` classifier logits (or probabilities), N >= 1.
    num_classes: K; defaults to ``logits.shape[1]`` and must equal it when given.
    threshold: Fraction of the uniform share a class needs to count as covered (> 0).

  Returns:
    A dict with ``class_coverage``: fraction of the K classes covered, and ``class_entropy``:
    entropy of the predicted-class histogram divided by log K (1 = uniform, 0 = one class).
  """
  logits = np.asarray(logits)
  if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 2:
    raise UserError(f"logits must have shape [N, K] with N >= 1 and K >= 2, got {logits.shape}; "
                    "pass the classifier's logits.")
  k = logits.shape[1] if num_classes is None else int(num_classes)
  if k != logits.shape[1]:
    raise UserError(f"num_classes={num_classes} but the logits have {logits.shape[1]} columns; "
                    "pass logits of a classifier with that many classes.")
  if not threshold > 0:
    raise UserError(f"class_coverage needs threshold > 0, got {threshold}; e.g. use 0.1.")
  counts = np.bincount(np.argmax(logits, axis=1), minlength=k)
  n = logits.shape[0]
  p = counts / n
  nz = p > 0
  entropy = -np.sum(p[nz] * np.log(p[nz]))
  return {
      "class_coverage": float(np.mean(counts >= threshold * n / k)),
      "class_entropy": float(entropy / np.log(k)),
  }


class _Context:
  """The inputs of one `evaluate_samples` call, with the expensive parts computed once."""

  def __init__(self, samples, kind: str, reference, classifier):
    self.samples = samples
    self.kind = kind
    self.reference = reference
    self.classifier = classifier

  @functools.cached_property
  def mode_result(self) -> dict[str, float]:
    """All mode metrics at once (they share the nearest-center assignment)."""
    ref = self.reference
    if not isinstance(ref, MixtureReference):
      raise UserError("mode metrics need reference=MixtureReference(centers, std); build it with "
                      "gan_jax.data.toy.ring_centers() or grid_centers() and the mixture's std.")
    return modes.mode_metrics(self.samples, ref.centers, ref.std, min_count=ref.min_count)

  @functools.cached_property
  def diverged(self) -> bool:
    """Whether the image samples contain NaN or inf (every image metric is then NaN)."""
    bad = not np.all(np.isfinite(np.asarray(self.samples, dtype=np.float32)))
    if bad:
      logger.warning("image samples contain NaN or inf; reporting NaN for the image metrics")
    return bad

  def _need_classifier(self) -> classifier_lib.ClassifierParams:
    if self.classifier is None:
      raise UserError("image metrics need a classifier; pass classifier=classifier_cache.get_or_train_classifier"
                      "(...)[0] from gan_jax.evaluation.classifier_cache.")
    return self.classifier

  @functools.cached_property
  def logits(self) -> np.ndarray:
    """Classifier logits of the samples."""
    return classifier_lib.logits(self._need_classifier(), self.samples)

  @functools.cached_property
  def features(self) -> np.ndarray:
    """Classifier features of the samples."""
    return classifier_lib.features(self._need_classifier(), self.samples)

  @functools.cached_property
  def reference_stats(self) -> FeatureStats:
    """Feature statistics of the reference, computed from images if needed."""
    ref = self.reference
    if isinstance(ref, FeatureStats):
      return ref
    if ref is None or isinstance(ref, MixtureReference):
      raise UserError("frechet_distance needs reference=FeatureStats (see reference_stats()) or "
                      "an array of real images.")
    return reference_stats(self._need_classifier(), ref)


def _frechet(ctx: _Context) -> dict[str, float]:
  if ctx.diverged:
    return {"frechet_distance": float("nan")}
  return {"frechet_distance": frechet_distance_from_stats(feature_stats(ctx.features),
                                                          ctx.reference_stats)}


def _inception(ctx: _Context) -> dict[str, float]:
  if ctx.diverged:
    return {"inception_score": float("nan"), "inception_score_std": float("nan")}
  mean, std = inception_score(ctx.logits, splits=min(10, ctx.logits.shape[0]))
  return {"inception_score": mean, "inception_score_std": std}


def _coverage(ctx: _Context) -> dict[str, float]:
  if ctx.diverged:
    return {"class_coverage": float("nan"), "class_entropy": float("nan")}
  return class_coverage(ctx.logits)


def _mode_value(key: str) -> Callable[[_Context], dict[str, float]]:
  return lambda ctx: {key: ctx.mode_result[key]}


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """A registered metric.

  Attributes:
    name: Registry name, as used in configs.
    kind: The sample kind it applies to (one of `KINDS`).
    higher_is_better: Direction of improvement of its main value (the one named ``name``).
    needs_reference: Whether it compares against a reference set.
    description: One line for logs and docs.
    compute: ``compute(ctx) -> {key: value}``; internal, use `evaluate_samples`.
  """

  name: str
  kind: str
  higher_is_better: bool
  needs_reference: bool
  description: str
  compute: Callable[[_Context], dict[str, float]] = dataclasses.field(repr=False)


METRICS: dict[str, MetricSpec] = {
    spec.name: spec for spec in [
        MetricSpec("frechet_distance", "image", False, True,
                   "Frechet distance of classifier features to the reference set (FID formula).",
                   _frechet),
        MetricSpec("inception_score", "image", True, False,
                   "exp(E KL(p(y|x) || p(y))) with the project's classifier; also reports _std.",
                   _inception),
        MetricSpec("class_coverage", "image", True, False,
                   "Fraction of classes predicted for >= 10% of their uniform share; also "
                   "reports class_entropy.", _coverage),
        MetricSpec("modes_covered", "toy2d", True, True,
                   "Mixture modes with >= min_count high-quality samples.",
                   _mode_value("modes_covered")),
        MetricSpec("high_quality_frac", "toy2d", True, True,
                   "Fraction of samples within 3 std of their nearest mode.",
                   _mode_value("high_quality_frac")),
        MetricSpec("kl_modes", "toy2d", False, True,
                   "KL(high-quality samples' mode histogram || uniform), in nats.",
                   _mode_value("kl_modes")),
    ]
}
"""All metrics by name. Each produces a value under its own name (some add related values)."""


def get_metric(name: str) -> MetricSpec:
  """Looks up a registered metric.

  Args:
    name: A key of `METRICS`.

  Returns:
    Its `MetricSpec`.
  """
  try:
    return METRICS[name]
  except (KeyError, TypeError):
    raise UserError(f"unknown metric {name!r}; valid names: {', '.join(sorted(METRICS))}."
                   ) from None


def metric_names(kind: str) -> list[str]:
  """Names of the metrics that apply to one sample kind.

  Args:
    kind: One of `KINDS`.

  Returns:
    The metric names, in registry order.
  """
  _check_kind(kind)
  return [name for name, spec in METRICS.items() if spec.kind == kind]


def reference_stats(classifier: classifier_lib.ClassifierParams, images) -> FeatureStats:
  """Feature statistics of real images, to cache and reuse as the Frechet-distance reference.

  Args:
    classifier: The classifier whose features define the distance.
    images: Real images (uint8 or float in [0, 1]), at least 2; use as many as the samples
      you will compare (e.g. 10,000), since the distance is biased at small sizes.

  Returns:
    Their `FeatureStats`.
  """
  return feature_stats(classifier_lib.features(classifier, images))


def evaluate_samples(samples,
                     kind: str,
                     reference=None,
                     classifier: classifier_lib.ClassifierParams | None = None,
                     metrics: Sequence[str] | None = None) -> dict[str, float]:
  """Computes metrics for one batch of generated samples.

  The classifier runs at most once per call, however many image metrics are asked for.
  Image samples containing NaN or inf (a diverged generator) give NaN image metrics rather
  than an error, so a sweep records the failure and continues.

  Args:
    samples: ``[N, 2]`` points for ``kind="toy2d"``; ``[N, H, W, C]`` images (uint8, or float
      in [0, 1]) for ``kind="image"``.
    kind: One of `KINDS`.
    reference: For ``toy2d``, a `MixtureReference`. For ``image``, the real data for
      ``frechet_distance``: `FeatureStats` from `reference_stats` (cache these), or real images.
    classifier: The trained classifier, required for image metrics.
    metrics: Names from `METRICS` (all of them must have this kind). Default: every metric of
      the kind, leaving out ``frechet_distance`` when ``reference`` is None.

  Returns:
    A flat ``{name: value}`` dict: each metric's value under its own name, plus the extras
    ``inception_score_std`` and ``class_entropy`` when those metrics run.
  """
  _check_kind(kind)
  if metrics is None:
    names = [n for n in metric_names(kind)
             if not (kind == "image" and METRICS[n].needs_reference and reference is None)]
  else:
    if isinstance(metrics, str):
      metrics = [metrics]
    names = list(dict.fromkeys(metrics))
    for name in names:
      spec = get_metric(name)
      if spec.kind != kind:
        raise UserError(f"metric {name!r} applies to {spec.kind!r} samples, not {kind!r}; valid "
                        f"names for {kind!r}: {', '.join(metric_names(kind))}.")
  ctx = _Context(samples, kind, reference, classifier)
  out: dict[str, float] = {}
  for name in names:
    out.update(METRICS[name].compute(ctx))
  return out


def _check_kind(kind: str) -> None:
  """Raises `UserError` unless ``kind`` is one of `KINDS`."""
  if kind not in KINDS:
    raise UserError(f"unknown sample kind {kind!r}; valid kinds: {', '.join(KINDS)}.")
