"""The nearest training example of each query, by squared L2 distance over the whole training set.

Figure 2 of the paper puts, beside some samples, the training image closest to them in pixel space,
to show that the generator has not memorised the data. The search runs on the device: the training
set is scanned in chunks, each chunk's distances come from one full-precision matmul
(||q||^2 - 2 q.x + ||x||^2; TF32 would distort them on GPUs), and a running minimum is kept, so
memory stays at one [queries, chunk] block. The winners' distances are then recomputed exactly on
the host in float64.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@functools.partial(jax.jit, static_argnames=("chunk",))
def _search(queries, train, chunk: int):
  n, d = train.shape
  pad = -n % chunk
  train = jnp.concatenate([train, jnp.zeros((pad, d), train.dtype)])
  valid = jnp.arange(n + pad) < n
  train_sq = jnp.where(valid, jnp.sum(train * train, axis=1), jnp.inf)
  q_sq = jnp.sum(queries * queries, axis=1)

  def step(carry, i):
    best_d, best_i = carry
    x = lax.dynamic_slice_in_dim(train, i * chunk, chunk)
    x_sq = lax.dynamic_slice_in_dim(train_sq, i * chunk, chunk)
    cross = jnp.dot(queries, x.T, precision=lax.Precision.HIGHEST)
    dist = q_sq[:, None] - 2.0 * cross + x_sq[None, :]
    j = jnp.argmin(dist, axis=1)
    d_j = jnp.take_along_axis(dist, j[:, None], axis=1)[:, 0]
    better = d_j < best_d
    return (jnp.where(better, d_j, best_d), jnp.where(better, i * chunk + j, best_i)), None

  init = (jnp.full(queries.shape[:1], jnp.inf), jnp.zeros(queries.shape[:1], jnp.int32))
  (_, best_i), _ = lax.scan(step, init, jnp.arange((n + pad) // chunk))
  return best_i


def nearest_neighbours(queries, train, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  """Index and squared L2 distance of the nearest training example of each query.

  Args:
    queries: [Q, ...] examples (e.g. generated samples); trailing axes are flattened.
    train: [N, ...] training examples in the same space and shape.
    chunk: training examples per matmul block.

  Returns:
    (indices int64 [Q], squared distances float64 [Q]).
  """
  q = np.asarray(queries, np.float32).reshape(len(queries), -1)
  x = np.asarray(train, np.float32).reshape(len(train), -1)
  # Distances do not change under a shift; centring keeps the norms small (less cancellation).
  centre = x.mean(axis=0)
  idx = np.asarray(_search(jnp.asarray(q - centre), jnp.asarray(x - centre), min(chunk, len(x))))
  idx = idx.astype(np.int64)
  dist = np.sum((x[idx].astype(np.float64) - q.astype(np.float64)) ** 2, axis=1)
  return idx, dist
