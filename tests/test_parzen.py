"""Tests for gan_jax.evaluation.parzen: against a naive float64 estimator, and the command line."""

import gzip
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import logsumexp

from gan_jax.errors import UserError
from gan_jax.evaluation import parzen

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def naive_parzen(samples, data, sigma):
  """Direct float64 estimator: every pair's distance by broadcasting, scipy's logsumexp."""
  samples = np.asarray(samples, np.float64)
  data = np.asarray(data, np.float64)
  sq = np.sum((data[:, None, :] - samples[None, :, :]) ** 2, axis=-1)  # [N, M]
  d = data.shape[1]
  return (logsumexp(-sq / (2 * sigma ** 2), axis=1) - np.log(samples.shape[0])
          - d * np.log(sigma * np.sqrt(2 * np.pi)))


@pytest.fixture(name="small")
def fixture_small():
  rng = np.random.default_rng(0)
  return rng.random((50, 20)), rng.random((30, 20))


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.3, 1.0, 3.0])
def test_matches_naive(small, sigma):
  samples, data = small
  got = parzen.parzen_log_likelihood(samples, data, sigma)
  assert got.dtype == np.float32 and got.shape == (30,)
  np.testing.assert_allclose(got, naive_parzen(samples, data, sigma), rtol=1e-4)


def test_several_sigmas_match_single_sigma_calls(small):
  samples, data = small
  sigmas = [0.1, 0.2, 0.5]
  many = parzen.parzen_log_likelihoods(samples, data, sigmas, batch_size=7, sample_batch_size=9)
  assert many.shape == (3, 30)
  for row, sigma in zip(many, sigmas):
    np.testing.assert_allclose(row, parzen.parzen_log_likelihood(samples, data, sigma), rtol=1e-5)


# N = 30 and M = 50 are not multiples of the block sizes; 1000 is larger than N; 1 gives 50 steps
# of the online log-sum-exp.
@pytest.mark.parametrize("batch_size,sample_batch_size", [(7, 13), (1000, 1), (29, 50)])
def test_batching_does_not_change_the_result(small, batch_size, sample_batch_size):
  samples, data = small
  got = parzen.parzen_log_likelihood(samples, data, 0.2, batch_size=batch_size,
                                     sample_batch_size=sample_batch_size)
  np.testing.assert_allclose(got, naive_parzen(samples, data, 0.2), rtol=1e-5)


def test_single_point_and_single_sample():
  rng = np.random.default_rng(1)
  samples, data = rng.random((1, 5)), rng.random((1, 5))
  got = parzen.parzen_log_likelihood(samples, data, 0.3)
  np.testing.assert_allclose(got, naive_parzen(samples, data, 0.3), rtol=1e-5)


def test_stable_far_from_all_samples(small):
  """Points hundreds of sigmas away: exp underflows, the log-sum-exp must not."""
  samples, data = small
  got = parzen.parzen_log_likelihood(samples, data + 30.0, 0.1)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, naive_parzen(samples, data + 30.0, 0.1), rtol=1e-4)


def test_shift_invariant(small):
  samples, data = small
  base = parzen.parzen_log_likelihood(samples, data, 0.2)
  # Centring keeps this accurate; a plain ||x||^2 - 2 x.mu + ||mu||^2 in float32 would be ~0.1 off.
  shifted = parzen.parzen_log_likelihood(samples + 100.0, data + 100.0, 0.2)
  np.testing.assert_allclose(shifted, base, atol=1e-3)


def test_image_shaped_inputs_are_flattened(small):
  samples, data = small
  got = parzen.parzen_log_likelihood(samples.reshape(50, 4, 5, 1), data.reshape(30, 2, 10), 0.3)
  np.testing.assert_allclose(got, naive_parzen(samples, data, 0.3), rtol=1e-5)


def test_select_sigma_matches_naive_search(small):
  samples, data = small
  sigmas = np.logspace(-1, 0, 10)
  best, per_sigma = parzen.select_sigma(samples, data, sigmas)
  naive_means = [naive_parzen(samples, data, s).mean() for s in sigmas]
  assert best == sigmas[int(np.argmax(naive_means))]
  assert list(per_sigma) == [float(s) for s in sigmas]
  np.testing.assert_allclose(list(per_sigma.values()), naive_means, rtol=1e-4)


def test_evaluate_protocol_and_std_err():
  rng = np.random.default_rng(5)
  samples, validation, test = rng.random((60, 8)), rng.random((25, 8)), rng.random((33, 8))
  result = parzen.evaluate(samples, validation, test, sigmas=[0.1, 0.2, 0.4])
  best_naive = max([0.1, 0.2, 0.4], key=lambda s: naive_parzen(samples, validation, s).mean())
  assert result.sigma == best_naive
  lls = naive_parzen(samples, test, result.sigma)
  assert result.n_test == 33
  np.testing.assert_allclose(result.mean, lls.mean(), rtol=1e-5)
  np.testing.assert_allclose(result.std_err, lls.std(ddof=0) / np.sqrt(33), rtol=1e-4)
  assert json.loads(json.dumps(result.to_json_dict()))["n_test"] == 33


@pytest.mark.parametrize("samples,data,sigma,match", [
    (np.zeros((5, 3)), np.zeros((4, 2)), 0.1, "dimension"),
    (np.full((5, 3), np.nan), np.zeros((4, 3)), 0.1, "NaN"),
    (np.zeros((5, 3)), np.zeros((0, 3)), 0.1, "non-empty"),
    (np.zeros((5, 3)), np.zeros((4, 3)), 0.0, "positive"),
    (np.zeros((5, 3)), np.zeros((4, 3)), [0.1, 0.2], "one number"),
])
def test_bad_inputs_raise_user_error(samples, data, sigma, match):
  with pytest.raises(UserError, match=match):
    parzen.parzen_log_likelihood(samples, data, sigma)


# ------------------------------------------------------------------------------------------------
# Command line on tiny synthetic MNIST-format files.
# ------------------------------------------------------------------------------------------------


def _write_idx(path, array):
  """Writes a gzipped uint8 IDX file (magic 0x0000 0x08 ndim, big-endian dims, data)."""
  header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture(name="mnist_dir", scope="module")
def fixture_mnist_dir(tmp_path_factory):
  """60 train and 20 test random 28x28 images in the four standard gzipped IDX files."""
  directory = tmp_path_factory.mktemp("mnist")
  rng = np.random.default_rng(6)
  train = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8)
  test = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
  _write_idx(directory / "train-images-idx3-ubyte.gz", train)
  _write_idx(directory / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 60, dtype=np.uint8))
  _write_idx(directory / "t10k-images-idx3-ubyte.gz", test)
  _write_idx(directory / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 20, dtype=np.uint8))
  return directory, train, test


def _cli_env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
  return env


# name -> (flags, expected text on stderr; None for the successful run).
_CLI_CASES = {
    "good": (["--samples={tmp}/samples.npy", "--dataset_dir={mnist}", "--num_train=40",
              "--num_validation=10", "--num_test=20", "--json_out={tmp}/result.json"], None),
    "missing": (["--samples={tmp}/missing.npy"], "does not exist"),
    "nan": (["--samples={tmp}/nan.npy"], "NaN"),
    "no data": (["--samples={tmp}/samples.npy", "--dataset_dir={tmp}/nope"], "is not a folder"),
    "range": (["--samples={tmp}/range.npy"], "must be in [0, 1]"),
    "json dir": (["--samples={tmp}/samples.npy", "--json_out={tmp}/nope/r.json"], "does not exist"),
    "no samples": ([], "--samples is required"),
}


class _CliRuns:
  """Command-line runs started together in the background; `result` waits for one."""

  def __init__(self, tmp, mnist):
    self.tmp = tmp
    self.samples = np.random.default_rng(7).random((30, 784)).astype(np.float32)
    np.save(tmp / "samples.npy", self.samples)
    nan = self.samples.copy()
    nan[0, 0] = np.nan
    np.save(tmp / "nan.npy", nan)
    np.save(tmp / "range.npy", self.samples * 255)
    self._procs = {}
    for name, (flags, _) in _CLI_CASES.items():
      flags = [f.format(tmp=tmp, mnist=mnist) for f in flags]
      self._procs[name] = subprocess.Popen(
          [sys.executable, "-m", "gan_jax.evaluation.parzen", *flags], cwd=REPO_ROOT,
          env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    self._results = {}

  def result(self, name):
    """Returns (returncode, stdout, stderr) of one run."""
    if name not in self._results:
      out, err = self._procs[name].communicate(timeout=120)
      self._results[name] = (self._procs[name].returncode, out, err)
    return self._results[name]

  def close(self):
    """Kills runs that are still going (after a failed test)."""
    for proc in self._procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(name="cli", scope="module", autouse=True)
def fixture_cli(mnist_dir, tmp_path_factory):
  """Starts the command-line runs when the module starts, so they overlap the other tests."""
  runs = _CliRuns(tmp_path_factory.mktemp("cli"), mnist_dir[0])
  yield runs
  runs.close()


def test_cli_scores_samples(mnist_dir, cli):
  _, train, test = mnist_dir
  returncode, out, err = cli.result("good")
  assert returncode == 0, err
  last = out.strip().splitlines()[-1]
  assert re.fullmatch(r"Parzen log-likelihood: -?\d+\.\d\d ± \d+\.\d\d "
                      r"\(sigma=\d\.\d{3}, 20 test images\)", last), last

  # Validation is train[num_train:][:num_validation], test the first num_test test images.
  expected = parzen.evaluate(cli.samples, train[40:50].reshape(10, 784) / 255.0,
                             test.reshape(20, 784) / 255.0)
  record = json.loads((cli.tmp / "result.json").read_text())
  assert record["sigma"] == expected.sigma
  assert record["n_test"] == 20
  np.testing.assert_allclose(record["mean"], expected.mean, rtol=1e-6)
  np.testing.assert_allclose(record["std_err"], expected.std_err, rtol=1e-6)
  assert f"{expected.mean:.2f}" in last


@pytest.mark.parametrize("name", [n for n, (_, text) in _CLI_CASES.items() if text])
def test_cli_bad_input_exits_2_with_one_line(cli, name):
  returncode, _, err = cli.result(name)
  assert returncode == 2, err
  assert "Traceback" not in err, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  assert _CLI_CASES[name][1] in lines[0], err


@pytest.mark.parametrize("name,content,match", [
    ("samples.txt", None, "not a .npy file"),
    ("not_npy.npy", "text", "could not be read"),
    ("wrong_shape.npy", np.zeros((5, 100)), "expected N x 784"),
    ("one_image.npy", np.zeros(784), "expected N x 784"),
    ("out_of_range.npy", np.full((5, 784), 255.0), "must be in [0, 1]"),
    ("negative.npy", np.full((5, 784), -1.0), "must be in [0, 1]"),
    ("strings.npy", np.full((5, 784), "a"), "numeric"),
])
def test_load_samples_rejects_bad_files(tmp_path, name, content, match):
  path = tmp_path / name
  if isinstance(content, str):
    path.write_text(content)
  elif content is not None:
    np.save(path, content)
  with pytest.raises(UserError, match=re.escape(match)):
    parzen.load_samples(str(path))


def test_load_mnist_splits_rejects_too_few_images(mnist_dir):
  directory, _, _ = mnist_dir
  with pytest.raises(UserError, match="--num_validation=1000"):
    parzen.load_mnist_splits(str(directory), 50000, 1000, 20)
  with pytest.raises(UserError, match="--num_test=30"):
    parzen.load_mnist_splits(str(directory), 40, 10, 30)


def test_load_samples_accepts_image_shapes_and_tiny_overshoot(tmp_path):
  images = np.random.default_rng(9).random((4, 28, 28, 1)).astype(np.float32)
  images[0, 0, 0, 0] = 1.0 + 1e-6
  np.save(tmp_path / "images.npy", images)
  loaded = parzen.load_samples(str(tmp_path / "images.npy"))
  assert loaded.shape == (4, 784) and loaded.dtype == np.float32
