"""Gaussian Parzen-window log-likelihood: the paper's Table 1 protocol.

An isotropic Gaussian kernel of width sigma is centred on each of M generated samples mu_j, and
a data point x of dimension d is scored by

  log p(x) = logmeanexp_j(-||x - mu_j||^2 / (2 sigma^2)) - d * log(sigma * sqrt(2 pi)).

sigma is chosen from `numpy.logspace(-1, 0, 10)` by the best mean log-likelihood on validation
data, and the mean over the test data is reported with its standard error std / sqrt(N_test),
as in the reference code's parzen_ll.py.

The squared distances are computed as ||x||^2 - 2 x.mu + ||mu||^2 with a full-precision float32
matmul (`Precision.HIGHEST`: TF32 matmuls on GPUs distort the distances), clamped at 0. Each
block of the distance matrix is computed once and reduced for all sigmas at the same time with an
online log-sum-exp, so scoring 10 sigmas costs one matmul instead of ten. Memory stays bounded by
one [batch_size, sample_batch_size] block, whatever M and N are.

Command line (MNIST, the paper's protocol):

  python -m gan_jax.evaluation.parzen --samples=samples.npy    # MNIST from ~/gan_jax_data/mnist

JAX is imported inside the functions that use it, so that the command line rejects bad input in
a fraction of a second instead of after JAX's import (about 2 s).

Caveat: Theis, van den Oord and Bethge (2016) show that Parzen estimates in this regime are
unreliable (blurry "models" such as k-means centroids outscore real data). Report the number
because the paper did, next to better metrics.
"""

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from gan_jax.errors import UserError

DEFAULT_SIGMAS = np.logspace(-1, 0, 10)
# Samples may come from a sigmoid in float32 or be re-saved with small rounding errors.
_RANGE_TOLERANCE = 1e-3
# Block sizes: [250, 1000] float32 distance blocks (1 MB) stay in cache and were the fastest on a
# 2-core CPU (10k x 10k x 784 in about 3-5 s per pass); they are large enough for a GPU too.
BATCH_SIZE = 250
SAMPLE_BATCH_SIZE = 1000
_LOG_EVERY_S = 5.0


@dataclasses.dataclass(frozen=True)
class ParzenResult:
  """The outcome of `evaluate`.

  Attributes:
    sigma: the kernel width selected on the validation data.
    mean: mean test log-likelihood (nats) at that sigma.
    std_err: standard error of the mean, std / sqrt(n_test) with the population std (ddof=0).
    n_test: number of test points.
    per_sigma: mean validation log-likelihood for every candidate sigma.
  """
  sigma: float
  mean: float
  std_err: float
  n_test: int
  per_sigma: dict

  def to_json_dict(self) -> dict:
    """Returns a JSON-serialisable dict (sigma keys become strings)."""
    return {
        "sigma": self.sigma,
        "mean": self.mean,
        "std_err": self.std_err,
        "n_test": self.n_test,
        "per_sigma": {repr(float(s)): float(v) for s, v in self.per_sigma.items()},
    }


def _as_points(array, name: str) -> np.ndarray:
  """Checks a [N, ...] array of finite values and flattens it to float32 [N, d]."""
  array = np.asarray(array)
  if array.ndim < 2 or array.shape[0] == 0:
    raise UserError(f"{name} must be a non-empty array of shape [N, d] (got shape {array.shape}); "
                    "pass one flattened example per row")
  if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
          or array.dtype == np.bool_):
    raise UserError(f"{name} has dtype {array.dtype}; pass a real-valued numeric array")
  array = array.reshape(array.shape[0], -1).astype(np.float32, copy=False)
  if not np.all(np.isfinite(array)):
    raise UserError(f"{name} contains NaN or infinite values; check the model or file that made it")
  return array


def _as_sigmas(sigmas) -> np.ndarray:
  """Checks candidate kernel widths: a non-empty 1-D list of positive finite numbers."""
  sigmas = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
  if sigmas.ndim != 1 or sigmas.size == 0 or not np.all(np.isfinite(sigmas) & (sigmas > 0)):
    raise UserError(f"sigma values must be positive finite numbers (got {sigmas.tolist()})")
  return sigmas


def _block_log_sum_exp(x, mu_chunks, mu_sq_chunks, inv_two_var):
  """log sum_j exp(-||x_i - mu_j||^2 * c_s) for every data point i and every c_s.

  Args:
    x: [B, d] data points.
    mu_chunks: [C, K, d] samples in C chunks of K (padding rows are ignored via mu_sq = +inf).
    mu_sq_chunks: [C, K] squared norms of the samples; +inf marks padding.
    inv_two_var: [S] values of 1 / (2 sigma^2).

  Returns:
    [S, B] log-sum-exp over all samples, one row per sigma.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  x_sq = jnp.sum(x * x, axis=1)

  def step(carry, chunk):
    d_min, sums = carry  # [B], [S, B]
    mu, mu_sq = chunk
    cross = jnp.dot(x, mu.T, precision=jax.lax.Precision.HIGHEST)
    dist = jnp.maximum(x_sq[:, None] - 2.0 * cross + mu_sq[None, :], 0.0)  # [B, K]; inf = pad
    new_min = jnp.minimum(d_min, jnp.min(dist, axis=1))
    # The largest term of the sum has exponent -d_min * c for every sigma, so one running
    # minimum distance serves as the log-sum-exp shift for all sigmas.
    rescale = jnp.exp(-(d_min - new_min)[None, :] * inv_two_var[:, None])  # [S, B]; inf -> 0
    excess = dist - new_min[:, None]
    chunk_sums = jnp.stack(
        [jnp.sum(jnp.exp(-excess * c), axis=1) for c in jnp.unstack(inv_two_var)])
    return (new_min, sums * rescale + chunk_sums), None

  init = (jnp.full(x.shape[:1], jnp.inf, x.dtype),
          jnp.zeros((inv_two_var.shape[0], x.shape[0]), x.dtype))
  (d_min, sums), _ = jax.lax.scan(step, init, (mu_chunks, mu_sq_chunks))
  return -d_min[None, :] * inv_two_var[:, None] + jnp.log(sums)


@functools.cache
def _jitted_block_log_sum_exp():
  """`_block_log_sum_exp` compiled by jax.jit (created on first use)."""
  import jax  # pylint: disable=import-outside-toplevel

  return jax.jit(_block_log_sum_exp)


def parzen_log_likelihoods(samples, data, sigmas, batch_size: int = BATCH_SIZE,
                           sample_batch_size: int = SAMPLE_BATCH_SIZE,
                           log_fn: Optional[Callable[[str], None]] = None) -> np.ndarray:
  """Parzen log-likelihoods of `data` for several kernel widths, sharing the distance matrix.

  Args:
    samples: [M, d] kernel centres (e.g. generated images); extra trailing axes are flattened.
    data: [N, d] points to score.
    sigmas: [S] kernel widths.
    batch_size: data points per block.
    sample_batch_size: samples per block; a block holds batch_size x sample_batch_size floats.
    log_fn: optional callable given a progress line every few seconds.

  Returns:
    float32 [S, N] log-likelihoods in nats.
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  samples = _as_points(samples, "samples")
  data = _as_points(data, "data")
  sigmas = _as_sigmas(sigmas)
  if samples.shape[1] != data.shape[1]:
    raise UserError(f"samples have dimension {samples.shape[1]} but data have dimension "
                    f"{data.shape[1]}; both must be flattened the same way")
  if batch_size < 1 or sample_batch_size < 1:
    raise UserError("batch_size and sample_batch_size must be positive")
  (m, d), n = samples.shape, data.shape[0]

  # Distances do not change under a shift; centring on the samples' mean keeps the norms small
  # and so reduces cancellation in ||x||^2 - 2 x.mu + ||mu||^2.
  centre = samples.mean(axis=0, dtype=np.float64).astype(np.float32)
  samples = samples - centre
  data = data - centre

  k = min(sample_batch_size, m)
  n_chunks = -(-m // k)
  mu = np.zeros((n_chunks * k, d), np.float32)
  mu[:m] = samples
  mu_sq = np.full((n_chunks * k,), np.inf, np.float32)
  mu_sq[:m] = np.sum(samples.astype(np.float64) ** 2, axis=1)
  mu = jnp.asarray(mu.reshape(n_chunks, k, d))
  mu_sq = jnp.asarray(mu_sq.reshape(n_chunks, k))
  inv_two_var = jnp.asarray(1.0 / (2.0 * sigmas ** 2), jnp.float32)

  kernel = _jitted_block_log_sum_exp()
  b = min(batch_size, n)
  lse = np.empty((sigmas.size, n), np.float64)
  start_time = last_log = time.perf_counter()
  for start in range(0, n, b):
    block = data[start:start + b]
    rows = block.shape[0]
    if rows < b:  # pad the last block so that every call has the same shape (one compilation)
      block = np.concatenate([block, np.zeros((b - rows, d), np.float32)])
    lse[:, start:start + rows] = np.asarray(
        kernel(jnp.asarray(block), mu, mu_sq, inv_two_var))[:, :rows]
    now = time.perf_counter()
    if log_fn is not None and now - last_log > _LOG_EVERY_S and start + rows < n:
      log_fn(f"  {start + rows}/{n} points x {m} samples, {sigmas.size} sigma(s): "
             f"{now - start_time:.1f} s")
      last_log = now
  log_norm = math.log(m) + d * np.log(sigmas * math.sqrt(2.0 * math.pi))
  return (lse - log_norm[:, None]).astype(np.float32)


def parzen_log_likelihood(samples, data, sigma: float, batch_size: int = BATCH_SIZE,
                          sample_batch_size: int = SAMPLE_BATCH_SIZE) -> np.ndarray:
  """Parzen-window log-likelihood of each data point under kernels centred on the samples.

  Args:
    samples: [M, d] kernel centres (e.g. generated images); extra trailing axes are flattened.
    data: [N, d] points to score.
    sigma: kernel width (standard deviation of each isotropic Gaussian).
    batch_size: data points per block.
    sample_batch_size: samples per block; a block holds batch_size x sample_batch_size floats.

  Returns:
    float32 [N] log-likelihoods in nats.
  """
  if np.ndim(sigma) != 0:
    raise UserError("sigma must be one number; use select_sigma or evaluate for several")
  return parzen_log_likelihoods(samples, data, [sigma], batch_size, sample_batch_size)[0]


def select_sigma(samples, validation, sigmas: Sequence[float] = DEFAULT_SIGMAS,
                 batch_size: int = BATCH_SIZE, sample_batch_size: int = SAMPLE_BATCH_SIZE,
                 log_fn: Optional[Callable[[str], None]] = None) -> tuple[float, dict]:
  """Picks the kernel width with the best mean validation log-likelihood.

  Args:
    samples: [M, d] kernel centres.
    validation: [N, d] validation points.
    sigmas: candidate widths (the paper: numpy.logspace(-1, 0, 10)).
    batch_size: data points per block.
    sample_batch_size: samples per block.
    log_fn: optional callable given progress lines.

  Returns:
    (best_sigma, {sigma: mean validation log-likelihood}) with float keys in the given order.
  """
  sigmas = _as_sigmas(sigmas)
  lls = parzen_log_likelihoods(samples, validation, sigmas, batch_size, sample_batch_size, log_fn)
  means = lls.astype(np.float64).mean(axis=1)
  per_sigma = {float(s): float(v) for s, v in zip(sigmas, means)}
  # NaN cannot occur for finite inputs; nanargmax would hide a bug, so use argmax.
  return float(sigmas[int(np.argmax(means))]), per_sigma


def evaluate(samples, validation, test, sigmas: Sequence[float] = DEFAULT_SIGMAS,
             batch_size: int = BATCH_SIZE, sample_batch_size: int = SAMPLE_BATCH_SIZE,
             log_fn: Optional[Callable[[str], None]] = None) -> ParzenResult:
  """The full protocol: select sigma on validation data, then score the test data.

  Args:
    samples: [M, d] kernel centres (the paper: 10,000 generated images).
    validation: [N_val, d] validation points (the paper: 1000 MNIST images from train[50000:]).
    test: [N_test, d] test points (the paper: the 10,000 MNIST test images).
    sigmas: candidate widths.
    batch_size: data points per block.
    sample_batch_size: samples per block.
    log_fn: optional callable given progress lines (e.g. `print`).

  Returns:
    A `ParzenResult`.
  """
  log = log_fn or (lambda _: None)
  samples = _as_points(samples, "samples")  # convert once; both passes reuse it
  t0 = time.perf_counter()
  sigma, per_sigma = select_sigma(samples, validation, sigmas, batch_size, sample_batch_size,
                                  log_fn)
  log(f"validation: {len(per_sigma)} sigmas in {time.perf_counter() - t0:.1f} s")
  for s, v in per_sigma.items():
    log(f"  sigma={s:.4f}: mean validation log-likelihood {v:.2f}"
        + ("  <- best" if s == sigma else ""))
  t0 = time.perf_counter()
  lls = parzen_log_likelihoods(samples, test, [sigma], batch_size, sample_batch_size,
                               log_fn)[0].astype(np.float64)
  log(f"test: {lls.size} points in {time.perf_counter() - t0:.1f} s")
  return ParzenResult(sigma=sigma, mean=float(lls.mean()),
                      std_err=float(lls.std() / math.sqrt(lls.size)), n_test=int(lls.size),
                      per_sigma=per_sigma)


# ---------------------------------------------------------------------------------------------
# Command line: score an .npy of samples against MNIST.
# ---------------------------------------------------------------------------------------------

_VALIDATION_POOL = 10000  # train[num_train : num_train + 10000] is the validation pool


def load_samples(path: str) -> np.ndarray:
  """Loads N x 784 samples in [0, 1] from an .npy file, with clear errors for bad files.

  Args:
    path: path to a .npy file holding [N, 784] (or [N, 28, 28], [N, 28, 28, 1], ...) values.

  Returns:
    float32 [N, 784].
  """
  if not path.endswith(".npy"):
    raise UserError(f"--samples={path} is not a .npy file; save the samples with numpy.save")
  if not os.path.isfile(path):
    raise UserError(f"--samples={path} does not exist; check the path")
  try:
    array = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise UserError(f"--samples={path} could not be read as .npy ({e}); "
                    "save the samples with numpy.save") from None
  if not isinstance(array, np.ndarray) or array.ndim < 2 or array.shape[0] == 0 or (
      math.prod(array.shape[1:]) != 784):
    raise UserError(f"--samples={path} has shape {getattr(array, 'shape', None)}; "
                    "expected N x 784 (or N x 28 x 28) MNIST-sized samples")
  samples = _as_points(array, f"--samples={path}")
  lo, hi = float(samples.min()), float(samples.max())
  if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
    raise UserError(f"--samples={path} has values in [{lo:.4g}, {hi:.4g}]; pixels must be in "
                    "[0, 1] (divide 0..255 data by 255, map [-1, 1] outputs with (x + 1) / 2)")
  return samples


def load_mnist_splits(dataset_dir: str, num_train: int, num_validation: int,
                      num_test: int) -> tuple[np.ndarray, np.ndarray]:
  """The paper's validation and test sets, flattened to float32 [N, 784] in [0, 1].

  Args:
    dataset_dir: directory holding the four MNIST IDX files.
    num_train: size of the training split; validation is taken from train[num_train:].
    num_validation: validation images, the first of train[num_train : num_train + 10000].
    num_test: test images, the first of the test split.

  Returns:
    (validation, test).
  """
  from gan_jax.data.idx import load_idx_split  # pylint: disable=import-outside-toplevel

  if num_train < 0 or num_validation < 1 or num_test < 1:
    raise UserError("--num_train must be >= 0 and --num_validation, --num_test >= 1")
  if not os.path.isdir(dataset_dir):
    raise UserError(f"--dataset_dir={dataset_dir} is not a folder; pass the folder holding the "
                    "MNIST IDX files (train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz, ...)")
  train_images, _ = load_idx_split(dataset_dir, "train")
  test_images, _ = load_idx_split(dataset_dir, "test")
  pool = train_images[num_train:num_train + _VALIDATION_POOL]
  if num_validation > len(pool):
    raise UserError(f"--num_validation={num_validation} but only {len(pool)} images follow "
                    f"--num_train={num_train} in the {len(train_images)} training images; "
                    "lower one of them")
  if num_test > len(test_images):
    raise UserError(f"--num_test={num_test} but the test split has {len(test_images)} images")

  from gan_jax.data import scale  # pylint: disable=import-outside-toplevel

  def flat(images):
    return scale.from_uint8(images.reshape(images.shape[0], -1), "unit")

  return flat(pool[:num_validation]), flat(test_images[:num_test])


def _define_flags():
  """Defines the command-line flags (only when run as a program, to keep imports flag-free)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string("samples", None, "Path to an .npy file of N x 784 samples in [0, 1].")
  flags.DEFINE_string("dataset_dir", "", "Directory with the MNIST IDX files (default: "
                      "$GAN_JAX_DATA/mnist or ~/gan_jax_data/mnist, where `python -m gan_jax.data.fetch "
                      "mnist` puts them).")
  flags.DEFINE_integer("num_train", 50000, "Training images before the validation pool.")
  flags.DEFINE_integer("num_validation", 1000, "Validation images used to select sigma.")
  flags.DEFINE_integer("num_test", 10000, "Test images scored at the selected sigma.")
  flags.DEFINE_integer("batch_size", BATCH_SIZE, "Data points per block.")
  flags.DEFINE_string("json_out", None, "Optional path to write the result as JSON.")


def _run(flag_values) -> ParzenResult:
  """Runs the protocol for the parsed flags and prints the result."""
  if not flag_values.samples:
    raise UserError("--samples is required: pass --samples=PATH.npy with N x 784 values in [0, 1]")
  json_dir = os.path.dirname(os.path.abspath(flag_values.json_out or "."))
  if flag_values.json_out and not os.path.isdir(json_dir):
    raise UserError(f"--json_out={flag_values.json_out}: folder {json_dir} does not exist; "
                    "create it or pass another path")
  samples = load_samples(flag_values.samples)
  from gan_jax.data import paths  # pylint: disable=import-outside-toplevel
  dataset_dir = flag_values.dataset_dir or paths.default_dir("mnist")
  validation, test = load_mnist_splits(dataset_dir, flag_values.num_train,
                                       flag_values.num_validation, flag_values.num_test)

  import jax  # pylint: disable=import-outside-toplevel

  def log(line):
    print(line, flush=True)

  log(f"{samples.shape[0]} samples from {flag_values.samples}; {validation.shape[0]} validation "
      f"and {test.shape[0]} test images from {dataset_dir} "
      f"(backend: {jax.default_backend()})")
  t0 = time.perf_counter()
  result = evaluate(samples, validation, test, batch_size=flag_values.batch_size, log_fn=log)
  log(f"total: {time.perf_counter() - t0:.1f} s")
  if flag_values.json_out:
    record = result.to_json_dict()
    record.update(samples=flag_values.samples, n_samples=int(samples.shape[0]),
                  n_validation=int(validation.shape[0]))
    try:
      with open(flag_values.json_out, "w") as f:
        json.dump(record, f, indent=2)
    except OSError as e:
      raise UserError(f"could not write --json_out={flag_values.json_out} ({e.strerror}); "
                      "check the directory exists and is writable") from None
  print(f"Parzen log-likelihood: {result.mean:.2f} ± {result.std_err:.2f} "
        f"(sigma={result.sigma:.3f}, {result.n_test} test images)", flush=True)
  return result


def main(argv):
  """Entry point: `gan_jax.cli.run` turns a UserError into one `error:` line and exit code 2."""
  del argv  # cli.run refuses stray arguments
  from absl import flags  # pylint: disable=import-outside-toplevel
  _run(flags.FLAGS)


if __name__ == "__main__":
  from gan_jax import cli  # pylint: disable=import-outside-toplevel

  _define_flags()
  sys.exit(cli.run(main))
