"""Test setup: 8 fake CPU devices (so parallel code runs in CI) and fast XLA compilation.

Both flags must be set before JAX is imported. `--xla_backend_optimization_level=0` roughly halves
compile times on CPU, which dominate this suite; comparisons in tests are always between runs compiled
the same way. A persistent compilation cache, shared by the test processes and the commands they
start, compiles each distinct program once per machine (many tests train the same smoke configs);
a cached program is the same executable, so no result depends on it.
"""

import os
import sys
import tempfile

FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8", FAST_COMPILE]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "gan_jax_tests_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "experiments", "configs")


def subprocess_env(devices: int = 1) -> dict:
  """Environment for a child Python process: the repo importable, `devices` fake CPU devices."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  return env


def load_config(name: str, arg: str = "smoke"):
  """`experiments/configs/NAME.py`'s `get_config(arg)`."""
  from gan_jax import config as config_lib  # pylint: disable=g-import-not-at-top  (after XLA_FLAGS)
  return config_lib.from_file(os.path.join(CONFIGS, f"{name}.py") + (f":{arg}" if arg else ""))


# Training processes a test started (`test_reliability._start`); `no_leftover_runs` kills those still
# running when the test ends, so a failing test leaves none behind.
RUNNING = []


@pytest.fixture(autouse=True)
def no_leftover_runs():
  yield
  while RUNNING:
    proc = RUNNING.pop()
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory):
  """A persistent XLA cache shared by the training commands one test module starts."""
  return str(tmp_path_factory.mktemp("xla_cache"))


@pytest.fixture
def python():
  return sys.executable
