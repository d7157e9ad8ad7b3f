"""Fixed short runs whose final parameters are pinned by `params_sha256`.

These hashes are what a change that should not change behaviour (moving code, renaming, sharing a
helper) must leave alone: the same config trains the same numbers, bit for bit. They hold for the
package versions in `constraints.txt` under the test suite's XLA flags (tests/conftest.py); a new
lock file may change them, and then they are recomputed and the change says so.
"""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

from conftest import REPO, load_config, subprocess_env

PINNED = {
    "toy_1d": "7449a8337c73d342e35d7090f7751e2956244801b0b6f305be865b81c0cb1992",
    "mog_2d": "5687befabb23b542da5b9917fe625d36a89df6138128ca6e82527b5f2b79d0a3",
    "digits": "f634f73676908acd1132466b142cd95fe0069b54e2ea1005fa10b6b40fbd97ec",
    "mnist_paper_20": "49ebfc68565d9adaa0d3a59bcb4f5672e41215e5efc71391c5f1fb8ce6a436b6",
    "dcgan_28": "b51c33c4d31e6bbae620f67c1aef815933814e50df29a27ec958e96c3cf835e4",
    "sweep_group": ",".join([
        "07d2532638c1a33ea9a31c51e50de5e72383145298c97501b111b0420cc09fd0",
        "1d26fb7ab5d48244efc1aeece79573a853c90565f9ac6f2720ebf81c4ac5136c",
        "9a73dec63264781d89ab422f47fa998142f6f8b4281a6ee5144806ff477b13eb",
        "a5504be5b6e78bdfd2008aa04020510c6f1a4893fd34e8f9d98090f59b0fc328",
    ]),
}


def _idx(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
  return header + array.astype(np.uint8).tobytes()


def _fake_mnist(directory, n_train=300, n_test=50):
  """MNIST-format IDX files of seeded random digits (the real ones need not be present)."""
  rng = np.random.RandomState(2014)
  os.makedirs(directory, exist_ok=True)
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=n).astype(np.uint8)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
      with open(os.path.join(directory, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(_idx(arr)))
  return str(directory)


def _train(config, workdir):
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  return train.train_and_evaluate(config, str(workdir))["params_sha256"]


def _configs(tmp_path):
  mnist = _fake_mnist(tmp_path / "mnist")
  paper = load_config("mnist_paper", "smoke")
  paper.data.dir, paper.data.num_train = mnist, 250
  dcgan = load_config("dcgan_28", "smoke")
  dcgan.data.dir, dcgan.data.num_train = mnist, 250
  configs = {
      "toy_1d": load_config("toy_1d"),
      "mog_2d": load_config("mog_2d"),
      "digits": load_config("digits"),
      "mnist_paper_20": paper,
      "dcgan_28": dcgan,
  }
  for config in configs.values():
    config.parallel.mode = "none"  # one device: the pins do not depend on the fake device count
  return configs


def _hashes(tmp_path) -> dict:
  out = {}
  for name, config in _configs(tmp_path).items():
    out[name] = _train(config, tmp_path / name)
  sweep_dir = tmp_path / "sweep"
  proc = subprocess.run(
      [sys.executable, "-m", "gan_jax.sweep", "--sweep=experiments/ablations/ring_losses.py:smoke",
       f"--workdir={sweep_dir}"], cwd=REPO, env=subprocess_env(1), capture_output=True, text=True,
      timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  group = []
  for root, _, files in sorted(os.walk(sweep_dir / "runs")):
    if "result.json" in files:
      with open(os.path.join(root, "result.json"), encoding="utf-8") as f:
        group.append(json.load(f)["params_sha256"])
  out["sweep_group"] = ",".join(sorted(group))
  return out


def test_short_runs_train_the_pinned_parameters(tmp_path):
  got = _hashes(tmp_path)
  assert got == PINNED, json.dumps(got, indent=1)


def test_a_checkpoint_written_by_gan_jax_0_1_still_restores(tmp_path):
  """tests/data/checkpoint_v0_1: `mog_2d.py:smoke` at step 40 (parallel.mode=none), saved by the
  first released layout; it restores into today's state with the same parameters."""
  from gan_jax.core import build  # pylint: disable=g-import-not-at-top
  from gan_jax.core import gan as gan_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.run import checkpoint  # pylint: disable=g-import-not-at-top
  directory = tmp_path / "checkpoints"
  shutil.copytree(os.path.join(REPO, "tests", "data", "checkpoint_v0_1"), directory)
  config = load_config("mog_2d")
  config.parallel.mode = "none"
  ckpt = checkpoint.Checkpointer(str(directory))
  state = ckpt.restore(build.setup(config)[2], config)
  ckpt.close()
  assert int(state.step) == 40
  assert gan_lib.params_sha256(state) == "c0879641e81eb9ff202420cb3d63b9db3bdab7a2cda22a3f2bf66fd450f7cf8b"
