"""The FID Inception-v3's weights: pytorch-fid's state dict <-> Flax variables, and loading the file."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.errors import UserError
from gan_jax.evaluation.inception.network import _MIN_SIZE, FIDInceptionV3  # pylint: disable=protected-access
from gan_jax.evaluation.inception.torch_pickle import read_state_dict

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
"""File name of pytorch-fid's converted weights (torch hub convention: name-sha256prefix.ext)."""

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + FID_WEIGHTS_FILE)
"""Where pytorch-fid publishes `FID_WEIGHTS_FILE`."""

WEIGHTS_ENV = "GAN_JAX_INCEPTION_WEIGHTS"
"""Environment variable naming the weights file (or a folder holding it) for `load_params`."""

# Torch hub's convention: the hex digits after the last "-" of the name start the file's sha256.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.[A-Za-z0-9]+$")

# ----------------------------------------------------------------------------------------------
# Parameters.


def variables_template() -> dict[str, Any]:
  """Shapes and dtypes of the network's variables, without computing anything.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` of `jax.ShapeDtypeStruct` leaves.
  """
  model = FIDInceptionV3(resize_input=False)
  x = jax.ShapeDtypeStruct((1, _MIN_SIZE, _MIN_SIZE, 3), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), x)


def init_variables(seed: int = 0) -> dict[str, Any]:
  """Random variables for tests and timing (not meaningful features).

  Convolution kernels are He-normal, the dense layer LeCun-normal, batch-norm scales 1 and
  shifts 0, running means 0 and variances 1. Drawn in numpy leaf by leaf, which avoids compiling
  the network just to initialise it.

  Args:
    seed: Seed of the numpy generator.

  Returns:
    Float32 ``{"params": ..., "batch_stats": ...}`` numpy pytree.
  """
  rng = np.random.default_rng(seed)

  def leaf(path, spec):
    name = path[-1].key
    shape = spec.shape
    if name == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      gain = 2.0 if len(shape) == 4 else 1.0  # ReLU follows every convolution, not the logits.
      return (rng.standard_normal(shape) * np.sqrt(gain / fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return np.ones(shape, np.float32)
    return np.zeros(shape, np.float32)  # bias, mean

  return jax.tree_util.tree_map_with_path(leaf, variables_template())


def params_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Maps a PyTorch ``fid_inception_v3`` state dict to Flax variables.

  ``*.conv.weight`` (OIHW) becomes ``conv/kernel`` (HWIO); ``*.bn.{weight, bias, running_mean,
  running_var}`` become ``bn/{scale, bias}`` in ``params`` and ``bn/{mean, var}`` in
  ``batch_stats``; ``fc.weight`` is transposed to ``fc/kernel``. ``num_batches_tracked``
  counters are ignored. Every variable of the network must be present with its shape.

  Args:
    state_dict: Names to arrays (numpy arrays or anything ``np.asarray`` accepts).

  Returns:
    Float32 ``{"params": ..., "batch_stats": ...}`` numpy pytree for `FIDInceptionV3`.
  """
  template = variables_template()
  want = {_torch_name(path): (path, spec.shape)
          for path, spec in jax.tree_util.tree_flatten_with_path(template)[0]}
  have = {k for k in state_dict if not k.endswith("num_batches_tracked")}
  missing, extra = sorted(set(want) - have), sorted(have - set(want))
  if missing or extra:
    raise UserError(f"not a pytorch-fid Inception state dict: {len(missing)} missing entries "
                    f"({', '.join(missing[:3]) or '-'}), {len(extra)} unexpected "
                    f"({', '.join(extra[:3]) or '-'}); use {FID_WEIGHTS_FILE} from "
                    f"{FID_WEIGHTS_URL}.")
  values = {}
  for name, (path, shape) in want.items():
    value = np.asarray(state_dict[name], dtype=np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif value.ndim == 2:
      value = value.T  # [out, in] -> [in, out]
    if value.shape != tuple(shape):
      raise UserError(f"state dict entry {name} has shape {np.shape(state_dict[name])}, which "
                      f"does not fit the network's {tuple(shape)}; use {FID_WEIGHTS_FILE} from "
                      f"{FID_WEIGHTS_URL}.")
    values[jax.tree_util.keystr(path)] = value
  return jax.tree_util.tree_map_with_path(lambda p, _: values[jax.tree_util.keystr(p)], template)


def state_dict_from_params(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of `params_from_state_dict`: Flax variables to PyTorch names and layouts.

  Args:
    variables: ``{"params": ..., "batch_stats": ...}`` of `FIDInceptionV3`.

  Returns:
    ``{torch_name: float32 array}``, without ``num_batches_tracked``; e.g. for `np.savez`.
  """
  out = {}
  for path, value in jax.tree_util.tree_flatten_with_path(variables)[0]:
    value = np.asarray(value, dtype=np.float32)
    if value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    elif value.ndim == 2:
      value = value.T
    out[_torch_name(path)] = np.ascontiguousarray(value)
  return out


def _torch_name(path) -> str:
  """PyTorch state-dict name of a Flax variable path (the module names are PyTorch's)."""
  keys = [k.key for k in path]
  collection, modules, leaf = keys[0], keys[1:-1], keys[-1]
  if modules[-1] == "fc":
    torch_leaf = {"kernel": "weight", "bias": "bias"}[leaf]
  elif modules[-1] == "conv":
    torch_leaf = "weight"
  elif collection == "batch_stats":
    torch_leaf = {"mean": "running_mean", "var": "running_var"}[leaf]
  else:
    torch_leaf = {"scale": "weight", "bias": "bias"}[leaf]
  return ".".join(modules + [torch_leaf])


def default_weights_path() -> str:
  """Where `load_params` looks when given no path.

  ``$GAN_JAX_INCEPTION_WEIGHTS`` if set; otherwise where pytorch-fid's own download puts the
  file: ``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME`` defaulting to
  ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``), so a machine that has run pytorch-fid
  needs no setup.

  Returns:
    A path (which may not exist).
  """
  if os.environ.get(WEIGHTS_ENV):
    return os.environ[WEIGHTS_ENV]
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  torch_home = os.environ.get("TORCH_HOME") or os.path.join(cache, "torch")
  return os.path.join(torch_home, "hub", "checkpoints", FID_WEIGHTS_FILE)


def weights_file(path=None) -> str:
  """The weights file `load_params(path)` reads (a folder: its `FID_WEIGHTS_FILE`); one `UserError`
  line when it is missing, so callers can check before long work."""
  path = os.fspath(path) if path is not None else default_weights_path()
  if os.path.isdir(path):
    path = os.path.join(path, FID_WEIGHTS_FILE)
  if not os.path.isfile(path):
    raise UserError(f"Inception weights not found at {path}; download {FID_WEIGHTS_URL} and pass "
                    f"its path (or set {WEIGHTS_ENV}).")
  return path


def load_params(path: str | os.PathLike | None = None, check_hash: bool = True
                ) -> dict[str, Any]:
  """Loads the FID Inception weights as Flax variables, without PyTorch.

  Reads pytorch-fid's ``.pth`` (`read_state_dict`) or an ``.npz`` of the same state dict, and
  maps it with `params_from_state_dict`. If the file name carries a hash prefix as torch hub's
  do (``name-<hex>.ext``, as `FID_WEIGHTS_FILE`), the file's sha256 must start with it;
  pytorch-fid's file is checked so against its name's ``6726825d``.

  Args:
    path: The weights file, or a folder holding `FID_WEIGHTS_FILE`. Default:
      `default_weights_path`.
    check_hash: Verify the name's hash prefix (under a second for the 96 MB file).

  Returns:
    Float32 ``{"params": ..., "batch_stats": ...}`` numpy pytree for `FIDInceptionV3`.
  """
  path = weights_file(path)
  if check_hash:
    match = _HASH_IN_NAME.search(os.path.basename(path))
    if match:
      digest = _sha256(path)
      if not digest.startswith(match.group(1)):
        raise UserError(f"{path} is corrupt or not the named file: its sha256 starts with "
                        f"{digest[:len(match.group(1))]}, its name says {match.group(1)}; "
                        f"download it again from {FID_WEIGHTS_URL}.")
  return params_from_state_dict(read_state_dict(path))


def _sha256(path: str) -> str:
  """Hex sha256 of a file, read in 1 MiB chunks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()
