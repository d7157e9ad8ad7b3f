"""Scoring trained generators for sweeps and evaluation: which metric applies to which data, and the
`Evaluator` that draws samples and computes them.

Toy 2-D mixtures are scored by mode metrics on 2,500 samples; images by the project's classifier
(trained once per data set and cached) and by the paper's Parzen log-likelihood.
"""

import json
import math
import os

import jax
import numpy as np

from gan_jax import config as config_lib
from gan_jax.core import gan as gan_lib, rng
from gan_jax.data import pipeline, scale, sources
from gan_jax.errors import UserError
from gan_jax.evaluation import classifier_cache, metrics as metrics_lib, parzen

# The registry of gan_jax.evaluation.metrics, plus the paper's Parzen log-likelihood.
PARZEN = "parzen_ll"
NUM_SAMPLES_TOY = 2500  # the sample size of VEEGAN's and PacGAN's mode counts
MAX_SAMPLES_IMAGES = 10000  # the paper's Parzen sample count; fewer if the training split is smaller


def metric_kind(name: str) -> str:
  """'toy2d' or 'image'; a UserError for a name that is not a metric."""
  if name == PARZEN:
    return "image"
  if name not in metrics_lib.METRICS:
    valid = ", ".join(sorted([*metrics_lib.METRICS, PARZEN]))
    raise UserError(f"unknown metric {name!r} in the sweep's metrics; valid names: {valid}")
  return metrics_lib.METRICS[name].kind


def higher_is_better(name: str) -> bool:
  return True if name == PARZEN else metrics_lib.METRICS[name].higher_is_better


def check_applicable(name: str, config) -> None:
  """Raises a UserError if metric `name` cannot score runs on `config`'s data."""
  kind, dc = metric_kind(name), config.data
  if kind == "toy2d" and not (dc.source == "toy" and dc.name in ("ring_2d", "grid_2d")):
    raise UserError(f"metric {name!r} needs a 2-D mixture (data.source='toy', data.name 'ring_2d' or "
                    f"'grid_2d'), not {dc.source}/{dc.name}; image data takes "
                    f"{', '.join([*metrics_lib.metric_names('image'), PARZEN])}")
  if kind == "image" and dc.source == "toy":
    raise UserError(f"metric {name!r} needs image data, not toy/{dc.name}; 2-D mixtures take "
                    f"{', '.join(metrics_lib.metric_names('toy2d'))}")


class Evaluator:
  """Scores trained generators. The classifier (cached in WORKDIR/classifier, trained once per data
  set) and the reference statistics are built on first use and shared by every run."""

  def __init__(self, workdir: str, names):
    self.workdir, self.names = workdir, list(names)
    self._refs = {}

  def _image_reference(self, config) -> dict:
    dc = config.data
    key = json.dumps({k: v for k, v in config_lib.flatten(config).items() if k.startswith("data.")},
                     sort_keys=True)
    if key not in self._refs:
      train, val = sources.load_images(dc, "train"), sources.load_images(dc, "validation")
      if train.labels is None:
        raise UserError(f"the classifier metrics need labelled data; {train.name} has no labels")
      num_classes = int(train.labels.max()) + 1
      clf, cached = classifier_cache.get_or_train_classifier(
          os.path.join(self.workdir, "classifier"), f"{train.name}-train{len(train.images)}",
          train.images, train.labels, num_classes, test_images=val.images, test_labels=val.labels,
          min_test_accuracy=0.9)
      print(f"  classifier for {train.name}: test accuracy {clf.test_accuracy:.3f}"
            f"{' (cached)' if cached else ''}", flush=True)
      n = min(len(train.images), MAX_SAMPLES_IMAGES)
      ref = {"classifier": clf, "n": n, "stats": metrics_lib.reference_stats(clf, train.images[:n])}
      if PARZEN in self.names:  # the paper: sigma on 1,000 validation examples, scored on test
        flat = lambda x: x.reshape(len(x), -1)
        ref["validation"] = flat(pipeline.load_split(dc, "validation"))[:1000]
        ref["test"] = flat(pipeline.load_split(dc, "test"))
      self._refs[key] = ref
    return self._refs[key]

  def __call__(self, config, data: pipeline.Data, gan, g_params):
    """({metric: value}, preview samples) of one trained generator."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), rng.EVAL)
    if data.image_shape is None:
      x = gan_lib.generate_samples(gan, g_params, key, NUM_SAMPLES_TOY)
      values = {}
      if self.names:
        toy = data.sampler.toy
        ref = metrics_lib.MixtureReference(np.asarray(toy.centers), toy.std)
        values = metrics_lib.evaluate_samples(x, "toy2d", ref, metrics=self.names)
      return values, x[:1000]
    ref = self._image_reference(config) if self.names else None
    x = gan_lib.generate_samples(gan, g_params, key, ref["n"] if ref else 36)
    images = scale.to_unit(x, data.image_shape, data.display_scale)
    values = {}
    registered = [n for n in self.names if n != PARZEN]
    if registered:
      values = metrics_lib.evaluate_samples(images, "image", ref["stats"], ref["classifier"], registered)
    if PARZEN in self.names:
      if np.all(np.isfinite(x)):
        result = parzen.evaluate(x.reshape(len(x), -1), ref["validation"], ref["test"])
        values.update({PARZEN: result.mean, "parzen_std_err": result.std_err, "parzen_sigma": result.sigma})
      else:
        values[PARZEN] = math.nan
    return values, images[:36]
