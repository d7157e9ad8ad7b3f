"""Reference scores that show what the Parzen metric is worth (Theis, van den Oord and Bethge 2016).

Two "models" that no one would call generative are scored with the same protocol as a GAN:

  training images   the first 10,000 training images used as the "samples": real data.
  k-means centroids 1,000 centroids of the training set (scikit-learn's MiniBatchKMeans, seeded):
                    blurry averages, which the Parzen estimate rewards, often above real data.

The scores depend only on the data, so they are cached in a JSON file keyed by everything they
depend on; `table1` and `trajectory` reuse them.
"""

import json
import os
import time

import numpy as np

from gan_jax.evaluation import parzen
from gan_jax.run import files

TRAINING_IMAGES = "training_images"
KMEANS = "kmeans_centroids"


def kmeans_centroids(train: np.ndarray, k: int, seed: int = 0, log=print) -> np.ndarray:
  """`k` centroids of the flattened training set, clipped to its value range."""
  from sklearn.cluster import MiniBatchKMeans  # pylint: disable=import-outside-toplevel  (slow import)

  x = np.asarray(train, np.float32).reshape(len(train), -1)
  k = min(k, len(x))
  t0 = time.perf_counter()
  log(f"k-means: {k} centroids of {len(x)} training examples (MiniBatchKMeans, seed {seed}) ...")
  km = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=1, max_iter=30, random_state=seed,
                       init_size=min(len(x), 3 * k))
  km.fit(x)
  log(f"k-means: done in {time.perf_counter() - t0:.1f} s ({km.n_steps_} minibatch steps)")
  return np.clip(km.cluster_centers_.astype(np.float32), x.min(), x.max())


def score(train, validation, test, cache_path: str, key: dict, num_images: int = 10000,
          num_centroids: int = 1000, seed: int = 0, log=print) -> dict:
  """Parzen results of the two baselines, from `cache_path` when it was computed for `key`.

  Args:
    train: [N, ...] training examples.
    validation: [N_val, d] points that select sigma.
    test: [N_test, d] points scored.
    cache_path: JSON file holding earlier scores.
    key: what the scores depend on (data identity, split sizes); a different key recomputes.
    num_images: training images used as samples.
    num_centroids: k-means clusters.
    seed: k-means seed.
    log: progress printer.

  Returns:
    {name: ParzenResult.to_json_dict() plus 'n_samples'} for TRAINING_IMAGES and KMEANS.
  """
  key = dict(key, num_images=num_images, num_centroids=num_centroids, seed=seed)
  cached = {}
  if os.path.exists(cache_path):
    try:
      with open(cache_path, encoding="utf-8") as f:
        cached = json.load(f)
    except (OSError, ValueError):  # a damaged cache is recomputed (and rewritten below)
      log(f"baselines: {cache_path} cannot be read; computing the baselines again")
    if isinstance(cached, dict) and cached.get("key") == key:
      log(f"baselines: reusing {cache_path}")
      return cached["results"]
  flat = np.asarray(train, np.float32).reshape(len(train), -1)
  results = {}
  for name, samples in ((TRAINING_IMAGES, lambda: flat[:num_images]),
                        (KMEANS, lambda: kmeans_centroids(flat, num_centroids, seed, log))):
    s = samples()
    log(f"baseline {name}: Parzen with {len(s)} samples")
    r = parzen.evaluate(s, validation, test, log_fn=log)
    results[name] = dict(r.to_json_dict(), n_samples=int(len(s)))
  files.atomic_write_json(cache_path, {"key": key, "results": results}, indent=2)
  return results
