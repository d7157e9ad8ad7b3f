"""A sweep run's stored result (`runs/CELL/seed_S/result.json`): its presence means "finished".

A result records the run's config; a rerun of the sweep skips a run whose result records the same
config (all keys but those that only drive the loop) and trains it again otherwise.
"""

import json
import os

from absl import logging

from gan_jax import config as config_lib
from gan_jax.run import files
from gan_jax.sweep.spec import Run

RESULT_FILE = "result.json"


def comparable(config) -> dict:
  """The config keys that decide what a run trains (all but the loop's drivers), flat."""
  return {k: v for k, v in config_lib.flatten(config).items() if not config_lib.is_driver_key(k)}


def load_result(workdir: str, run: Run):
  """The run's stored result if it finished with the same config, else None."""
  path = os.path.join(workdir, run.dirname, RESULT_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
  except (OSError, ValueError):
    return None  # cut short by a kill: train it again
  if result.get("config") != comparable(run.config):
    logging.warning("%s was trained with another config; training it again", path)
    return None
  return result


def write_result(workdir: str, run: Run, result: dict) -> str:
  """Stores `result` for `run`, all or nothing: a killed sweep never leaves half a result."""
  return files.atomic_write_json(os.path.join(workdir, run.dirname, RESULT_FILE), result)


def collect(workdir: str, runs: list) -> list:
  """[(run, result)] of the finished runs among `runs`."""
  return [(r, res) for r in runs if (res := load_result(workdir, r)) is not None]
