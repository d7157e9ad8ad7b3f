"""One trained classifier per data set, cached on disk and reused by every run that scores it.

An entry is a folder under the cache directory, named after the data set's key:

  params/     the classifier's parameters, an Orbax checkpoint (written to a temporary folder and
              renamed when complete, so a crash never leaves half an entry)
  meta.json   what the parameters were trained on and how: the data set key, the architecture, the
              image shape, the number of classes, the training settings, a fingerprint of the
              training data, the test accuracy and a SHA-256 of the parameters (written last)

An entry is used only if its metadata matches the call and its parameters restore with the expected
shapes and hash; otherwise the classifier is trained again and the entry replaced.
"""

import hashlib
import json
import logging
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.data import scale
from gan_jax.errors import UserError
from gan_jax.evaluation import classifier as classifier_lib
from gan_jax.run import checkpoint, files

logger = logging.getLogger(__name__)


def get_or_train_classifier(cache_dir: str | os.PathLike, dataset_key: str, images, labels, num_classes: int,
                            test_images=None, test_labels=None, steps: int = 1500, batch_size: int = 128,
                            seed: int = 0, learning_rate: float = 1e-3,
                            min_test_accuracy: float | None = None) -> tuple[classifier_lib.ClassifierParams, bool]:
  """Loads the cached classifier for a dataset, or trains and caches one.

  Args:
    cache_dir: Directory for the cache (created if missing).
    dataset_key: Name of the dataset and split, e.g. ``"mnist-train"``; one cache entry per key.
    images: Training images (see `classifier.train_classifier`).
    labels: Training labels.
    num_classes: Number of classes.
    test_images: Optional held-out images for the recorded test accuracy.
    test_labels: Labels of ``test_images``.
    steps: Training steps.
    batch_size: Training batch size.
    seed: Training seed.
    learning_rate: Peak Adam learning rate.
    min_test_accuracy: If set (and a test set is given), raise `UserError` when a freshly trained
      classifier is less accurate than this, since its metrics would be meaningless.

  Returns:
    ``(classifier, from_cache)``; ``from_cache`` is True if it was loaded, False if trained.
  """
  images = scale.as_nhwc(images)
  labels = np.asarray(labels)
  meta = {
      "dataset_key": str(dataset_key),
      "architecture": classifier_lib.ARCHITECTURE,
      "image_shape": list(images.shape[1:]),
      "num_classes": int(num_classes),
      "num_train": int(images.shape[0]),
      "train": {"steps": int(steps), "batch_size": int(batch_size), "seed": int(seed),
                "learning_rate": float(learning_rate)},
      "data_sha256": _fingerprint(images, labels),
  }
  entry = os.path.join(os.path.abspath(os.fspath(cache_dir)), _cache_name(dataset_key))
  cached = _load(entry, meta)
  if cached is not None:
    logger.info("loaded classifier for %r from %s", dataset_key, entry)
    return cached, True

  classifier = classifier_lib.train_classifier(images, labels, num_classes, steps=steps, batch_size=batch_size,
                                               seed=seed, learning_rate=learning_rate, test_images=test_images,
                                               test_labels=test_labels)
  if (min_test_accuracy is not None and classifier.test_accuracy is not None and
      classifier.test_accuracy < min_test_accuracy):
    raise UserError(f"the classifier for {dataset_key!r} reached test accuracy "
                    f"{classifier.test_accuracy:.4f} < {min_test_accuracy}; train it for more "
                    "steps or check the images and labels.")
  if os.path.exists(entry):
    shutil.rmtree(entry)  # a stale or damaged entry for this key
  os.makedirs(entry)
  with checkpoint.orbax_errors_silenced():
    saver = ocp.StandardCheckpointer()
    saver.save(os.path.join(entry, "params"), classifier.params)
    saver.wait_until_finished()
  meta = dict(meta, test_accuracy=classifier.test_accuracy, params_sha256=_params_hash(classifier.params))
  files.atomic_write_text(os.path.join(entry, "meta.json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
  logger.info("saved classifier for %r to %s", dataset_key, entry)
  return classifier, False


def _load(entry: str, expected: dict) -> classifier_lib.ClassifierParams | None:
  """The cached classifier if the entry exists and matches, else None."""
  try:
    with open(os.path.join(entry, "meta.json"), encoding="utf-8") as f:
      meta = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    logger.warning("ignoring unreadable classifier cache %s: %s", entry, e)
    return None
  mismatched = sorted(k for k in expected if meta.get(k) != expected[k])
  if mismatched:
    logger.info("classifier cache %s does not match (%s); retraining", entry, ", ".join(mismatched))
    return None
  image_shape = tuple(expected["image_shape"])
  template = jax.eval_shape(classifier_lib.SmallCNN(expected["num_classes"]).init, jax.random.PRNGKey(0),
                            jax.ShapeDtypeStruct((1,) + image_shape, jnp.float32))
  try:
    with checkpoint.orbax_errors_silenced():
      params = ocp.StandardCheckpointer().restore(os.path.join(entry, "params"), template)
    params = jax.tree.map(np.asarray, params)
  except Exception as e:  # pylint: disable=broad-except  # Orbax and TensorStore raise assorted types
    logger.warning("ignoring unreadable classifier parameters in %s: %s", entry, str(e).splitlines()[0][:200])
    return None
  if meta.get("params_sha256") != _params_hash(params):
    logger.warning("classifier cache %s does not match its parameters; retraining", entry)
    return None
  acc = meta.get("test_accuracy")
  return classifier_lib.ClassifierParams(params, expected["num_classes"], image_shape,
                                         None if acc is None else float(acc))


def _params_hash(params) -> str:
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _cache_name(dataset_key: str) -> str:
  """A file-name-safe, collision-free folder name for a dataset key."""
  if not str(dataset_key):
    raise UserError("dataset_key is empty; pass a name for the dataset, e.g. 'mnist-train'.")
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(dataset_key)).strip("._")[:60] or "dataset"
  digest = hashlib.sha256(str(dataset_key).encode()).hexdigest()[:10]
  return f"classifier-{slug}-{digest}"


def _fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
  """SHA-256 of the training data, so a cache entry is tied to the exact data it was fit on."""
  h = hashlib.sha256()
  for a in (images, labels):
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
  return h.hexdigest()
