"""Every command answers --help (its description and flags, exit 0); the public run API and
`python -m gan_jax.sample` on a trained run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_config, subprocess_env

ENTRY_POINTS = ["gan_jax.main", "gan_jax.sample", "gan_jax.evaluate", "gan_jax.sweep", "gan_jax.bench", "gan_jax.bench.vmap", "gan_jax.bench.agenda",
                "gan_jax.bench.stream",
                "gan_jax.data.fetch", "gan_jax.evaluation.parzen", "gan_jax.paper.table1",
                "gan_jax.paper.trajectory", "gan_jax.paper.figures", "gan_jax.paper.figure1"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help(module):
  proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, env=subprocess_env(1),
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  description, _, flags = proc.stdout.partition("flags:")
  assert description.strip() and "--" in flags, proc.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("run"))
  config = load_config("digits", "smoke")
  config.parallel.mode = "none"
  train.train_and_evaluate(config, workdir)
  return workdir


def test_load_run_samples_images_in_unit_range(trained):
  import gan_jax  # pylint: disable=g-import-not-at-top
  run = gan_jax.load_run(trained)
  assert run.step == 40 and run.config.data.source == "digits"
  x = run.sample(5, seed=3)
  assert x.shape == (5, 8, 8, 1) and 0 <= x.min() and x.max() <= 1
  np.testing.assert_array_equal(x, run.sample(5, seed=3))
  assert not np.array_equal(x, run.sample(5, seed=4))
  assert gan_jax.load_run(trained, step=20).step == 20


def test_sample_command_writes_a_grid_and_raw_samples_and_never_overwrites(trained, tmp_path):
  out, npy = str(tmp_path / "grid.png"), str(tmp_path / "s.npy")
  cmd = [sys.executable, "-m", "gan_jax.sample", f"--workdir={trained}", "--num=16", f"--out={out}",
         f"--npy={npy}"]
  proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert np.load(npy).shape == (16, 64) and os.path.getsize(out) > 1000
  before = (open(out, "rb").read(), open(npy, "rb").read())
  again = subprocess.run(cmd, cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=300,
                         check=False)
  assert again.returncode == 2 and again.stderr.strip().startswith("error:") and "--force" in again.stderr
  assert (open(out, "rb").read(), open(npy, "rb").read()) == before  # the files are untouched
  # An --out that cannot be made (a file where its folder should be; a folder at its path): one line,
  # before the run is loaded.
  for bad in (f"--out={npy}/grid.png", f"--out={tmp_path}/dir.png"):
    (tmp_path / "dir.png").mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "gan_jax.sample", f"--workdir={trained}", bad, "--force"],
                          cwd=REPO, env=subprocess_env(1), capture_output=True, text=True, timeout=300, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot be made" in errors[0] or "is a folder" in errors[0], errors
