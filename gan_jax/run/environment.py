"""What a run ran on, for its records: package versions and the device."""

import importlib.metadata
import os

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def versions() -> dict:
  """{package: version} of the packages that decide a run's numbers (None if not installed)."""
  out = {}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def device_description() -> str:
  """What ran the computation: e.g. 'cpu (2 cores)' or 'gpu: NVIDIA H100 80GB HBM3'."""
  import jax  # pylint: disable=g-import-not-at-top
  backend = jax.default_backend()
  if backend == "cpu":
    return f"cpu ({os.cpu_count()} cores)"
  return f"{backend}: {jax.devices()[0].device_kind}"
