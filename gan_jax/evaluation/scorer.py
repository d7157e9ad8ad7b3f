"""Scoring generators with the standard metrics, during training (`eval_every`) and after it.

A `Scorer` turns images into features with one extractor and compares them with the real data's:

  extractors   'inception': the FID Inception-v3 (gan_jax.evaluation.inception), pool3 features
               and logits, the network every published FID uses; needs its weights file.
               'classifier': the project's small CNN trained on the data's labelled training split
               (gan_jax.evaluation.classifier), for MNIST-like data without the weights; its
               numbers are comparable only between runs that use the same cached classifier.
               'auto': Inception when its weights file is found, else the classifier.
  metrics      'fid', 'kid', 'pr' (precision/recall), 'dc' (density/coverage), 'is' (Inception
               score), computed by gan_jax.evaluation.features.

The real side's features are computed once per (data set, split, n, extractor, weights) and cached
as .npz in `cache_dir`. Every result records n_real, n_fake, the split and the extractor. The common
protocol is 50,000 generated samples against the training split's statistics; fewer are faster and
biased (FID falls as n grows), so compare numbers only at equal n.
"""

import hashlib
import json
import os

import jax
import numpy as np

from gan_jax.core import gan as gan_lib, rng
from gan_jax.data import scale, sources
from gan_jax.errors import UserError
from gan_jax.evaluation import classifier as classifier_lib, classifier_cache, features, inception
from gan_jax.run import files

# Short names (config and command line) -> gan_jax.evaluation.features groups.
METRICS = {"fid": "fid", "kid": "kid", "pr": "precision_recall", "dc": "density_coverage",
           "is": "inception_score"}
EXTRACTORS = ("auto", "inception", "classifier")
# Lower is better for these result keys; higher for the rest (IS, precision, recall, ...).
LOWER_IS_BETTER = ("fid", "kid", "kid_std")
# Result keys that say how a number was measured, not what it is.
PROTOCOL_KEYS = ("n_real", "n_fake", "split", "extractor", "kid_subset_size")


def values_of(result: dict) -> dict:
  """The metric values of a result, without its protocol keys."""
  return {k: float(v) for k, v in result.items() if k not in PROTOCOL_KEYS and isinstance(v, (int, float))}


def parse_metrics(text: str) -> list[str]:
  """'fid,kid,pr' -> ['fid', 'kid', 'pr']; a UserError naming the valid names for anything else."""
  names = [n.strip() for n in str(text).split(",") if n.strip()]
  bad = [n for n in names if n not in METRICS]
  if not names or bad:
    raise UserError(f"unknown metric(s) {bad or text!r}; choose from {', '.join(METRICS)} (comma-separated)")
  return names


def higher_is_better(key: str) -> bool:
  return key not in LOWER_IS_BETTER


class Extractor:
  """Images [N, H, W, C] in [0, 1] -> (features [N, F], logits [N, K])."""

  def __init__(self, name: str, weights_id: str, fn):
    self.name, self.weights_id, self._fn = name, weights_id, fn

  def __call__(self, images):
    return self._fn(images)


def inception_extractor(weights: str = "") -> Extractor:
  params = inception.load_params(weights or None)
  path = weights or inception.default_weights_path()

  def fn(images):
    out = inception.extract(params, images)
    return out["pool3"], out["logits_unbiased"]

  return Extractor("inception-v3-fid", os.path.basename(path), fn)


def classifier_extractor(data_config, cache_dir: str) -> Extractor:
  """The project's classifier for `data_config`'s data, trained once and cached in `cache_dir`."""
  train = sources.load_images(data_config, "train")
  if train.labels is None:
    raise UserError(f"the classifier extractor needs labelled data and {train.name} has none; "
                    "pass the Inception weights (eval.weights) to score it with Inception")
  val = sources.load_images(data_config, "validation")
  clf, _ = classifier_cache.get_or_train_classifier(
      os.path.join(cache_dir, "classifier"), f"{train.name}-train{len(train.images)}", train.images,
      train.labels, int(train.labels.max()) + 1, test_images=val.images, test_labels=val.labels,
      min_test_accuracy=0.9)

  def fn(images):
    return classifier_lib.features(clf, images), classifier_lib.logits(clf, images)

  digest = hashlib.sha256(json.dumps(jax.tree.map(lambda a: float(np.sum(a)), clf.params),
                                     sort_keys=True).encode()).hexdigest()[:12]
  return Extractor(f"classifier-{classifier_lib.ARCHITECTURE}", digest, fn)


def make_extractor(kind: str, data_config, cache_dir: str, weights: str = "") -> Extractor:
  if kind not in EXTRACTORS:
    raise UserError(f"unknown extractor {kind!r}; choose one of {', '.join(EXTRACTORS)}")
  if kind == "auto":
    path = weights or inception.default_weights_path()
    kind = "inception" if os.path.exists(path) else "classifier"
  if kind == "inception":
    return inception_extractor(weights)
  return classifier_extractor(data_config, cache_dir)


class Scorer:
  """Scores generated images against one reference split with one extractor (see the module doc)."""

  def __init__(self, names, data_config, cache_dir: str, extractor: str = "auto", num_fake: int = 5000,
               num_real: int = 0, split: str = "train", weights: str = ""):
    self.names = parse_metrics(names) if isinstance(names, str) else list(names)
    # Checked now, not at the first evaluation (which may come after hours of training).
    if extractor not in EXTRACTORS:
      raise UserError(f"unknown extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    if split not in sources.SPLITS:
      raise UserError(f"unknown reference split {split!r}; choose one of {', '.join(sources.SPLITS)}")
    if extractor == "inception":
      inception.weights_file(weights or None)
    self.data_config, self.cache_dir, self.split = data_config, cache_dir, split
    self.num_fake, self.num_real = int(num_fake), int(num_real)
    self._kind, self._weights = extractor, weights
    self._extractor, self._real = None, None

  @property
  def extractor(self) -> Extractor:
    if self._extractor is None:
      self._extractor = make_extractor(self._kind, self.data_config, self.cache_dir, self._weights)
    return self._extractor

  def real_features(self) -> np.ndarray:
    """The reference split's features, from the cache when it has them."""
    if self._real is not None:
      return self._real
    loaded = sources.load_images(self.data_config, self.split)
    n = min(self.num_real or len(loaded.images), len(loaded.images))
    key = {"data": loaded.name, "source": self.data_config.get("source"), "dir": self.data_config.get("dir", ""),
           "num_train": self.data_config.get("num_train"), "split": self.split, "n": n,
           "extractor": self.extractor.name, "weights": self.extractor.weights_id}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(self.cache_dir, f"reference-{loaded.name}-{self.split}-{n}-{digest}.npz")
    if os.path.exists(path):
      with np.load(path) as cached:
        self._real = cached["features"]
      return self._real
    self._real, _ = self.extractor(scale.as_nhwc(loaded.images[:n]))
    buffer = _npz_bytes(features=self._real, key=json.dumps(key))
    files.atomic_write_bytes(path, buffer)
    return self._real

  def score_images(self, images) -> dict:
    """Metrics of `images` ([N, H, W, C] in [0, 1] or uint8), with the protocol recorded beside them."""
    images = scale.as_nhwc(images)
    fake, logits = self.extractor(images)
    real = self.real_features()
    values = features.feature_metrics(real, fake, fake_logits=logits, names=[METRICS[n] for n in self.names])
    return features.with_protocol(values, n_real=len(real), n_fake=len(fake), split=self.split,
                                  extractor=self.extractor.name)

  def score_generator(self, gan, state, seed: int, image_shape, display_scale) -> dict:
    """Metrics of `num_fake` samples of the generator in `state` (its moving average when on)."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), rng.EVAL)
    x = gan_lib.generate_samples(gan, state, key, self.num_fake)
    return self.score_images(scale.to_unit(x, image_shape, display_scale))


def _npz_bytes(**arrays) -> bytes:
  import io  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()
