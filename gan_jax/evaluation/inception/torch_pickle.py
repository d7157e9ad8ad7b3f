"""Reading PyTorch's `torch.save` files (a state dict of tensors) without PyTorch.

Both formats: the zip archive of torch >= 1.6 (a pickle plus one raw file per storage) and the older
stream of pickles. A restricted unpickler builds only dicts, lists and tensors (as numpy arrays), so
a hostile file raises an error instead of running code.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any, Iterable, Mapping

import numpy as np

from gan_jax.errors import UserError

# ----------------------------------------------------------------------------------------------
# Reading PyTorch checkpoints without PyTorch.

# Storage classes of torch.save's pickles, as numpy dtypes (little-endian on disk).
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # First pickle of the legacy (pre-1.6) format.
_TORCH_PROTOCOL = 1001


class _Storage:
  """A storage the pickle refers to; its bytes are attached after unpickling."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.data: np.ndarray | None = None


class _StorageView:
  """A legacy-format view into a root storage: ``numel`` elements from ``offset``."""

  def __init__(self, root: _Storage, offset: int, numel: int):
    self.root, self.offset, self.numel = root, offset, numel


class _Tensor:
  """A tensor the pickle describes; materialised once its storage's bytes are read."""

  def __init__(self, storage, offset: int, size: Iterable[int], stride: Iterable[int]):
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

  def to_numpy(self) -> np.ndarray:
    storage, offset = self.storage, self.offset
    if isinstance(storage, _StorageView):
      storage, offset = storage.root, offset + storage.offset
    data = storage.data
    if data is None:
      raise UserError(f"the checkpoint lacks the bytes of storage {storage.key}; the file is "
                      "truncated or corrupt, download it again.")
    if any(s < 0 for s in self.size + self.stride) or offset < 0:
      raise UserError(f"bad tensor layout in the checkpoint (size {self.size}, stride "
                      f"{self.stride}); the file is corrupt, download it again.")
    if 0 in self.size:
      return np.zeros(self.size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if last >= data.size:  # as_strided does not check bounds; a bad file must not read memory.
      raise UserError(f"a tensor of the checkpoint reaches past its storage ({last} >= "
                      f"{data.size} elements); the file is truncated or corrupt, download it "
                      "again.")
    strides = tuple(s * data.itemsize for s in self.stride)
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=self.size, strides=strides)
    return np.array(view, dtype=data.dtype.newbyteorder("="))


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_args):
  """Stands in for ``torch._utils._rebuild_tensor(_v2)``: records the layout."""
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused_args):
  """Stands in for ``torch._utils._rebuild_parameter``: a parameter is its tensor."""
  return data


class _StorageType:
  """Stands in for a ``torch.*Storage`` class in the pickle."""

  def __init__(self, name: str):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Unpickles torch.save's object tree with placeholders for tensors, and nothing else.

  Only an ordered dict, tensors and storages can be built, like ``torch.load(weights_only=True)``;
  any other class in the file raises `UserError` rather than running code from it.
  """

  def __init__(self, file, source: str, legacy: bool):
    super().__init__(file)
    self.source = source
    self.legacy = legacy
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == "torch" and name.endswith("Storage"):
      raise UserError(f"{self.source} holds {name} tensors, which this reader does not support; "
                      "save the state dict in float32.")
    raise UserError(f"{self.source} holds a {module}.{name}, which a state dict of tensors does "
                    "not; pass pytorch-fid's weights file (a state dict), not a pickled model.")

  def persistent_load(self, pid) -> Any:
    if not (isinstance(pid, tuple) and pid and _ascii(pid[0]) == "storage"):
      raise UserError(f"{self.source}: unknown persistent id {str(pid)[:40]!r}; not a "
                      "torch.save state dict.")
    if self.legacy:
      storage_type, key, _, numel, view = pid[1:6]
    else:
      storage_type, key, _, numel = pid[1:5]
      view = None
    if not isinstance(storage_type, _StorageType):
      raise UserError(f"{self.source}: unsupported storage type {storage_type!r}.")
    key = _ascii(key)
    if key not in self.storages:
      self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
    storage = self.storages[key]
    if view is not None:  # Only the legacy format has views (offset and size in elements).
      _, offset, view_numel = view
      return _StorageView(storage, int(offset), int(view_numel))
    return storage


class _PlainUnpickler(pickle.Unpickler):
  """Unpickles plain data only (numbers, strings, lists, dicts): the legacy format's headers."""

  def find_class(self, module: str, name: str) -> Any:
    raise pickle.UnpicklingError(f"unexpected {module}.{name} in a header")


def _plain_load(f) -> Any:
  return _PlainUnpickler(f).load()


def _ascii(value) -> str:
  return value.decode("ascii") if isinstance(value, bytes) else str(value)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a state dict saved by ``torch.save`` (either format), or an ``.npz``, without torch.

  ``torch.save`` writes a zip archive since PyTorch 1.6: ``<name>/data.pkl`` holds the pickled
  dict, whose tensors refer to storages ``<name>/data/<key>`` of raw little-endian bytes. Older
  versions wrote the legacy format: a magic number, version and system-info pickles, the dict's
  pickle, the list of storage keys, then each storage as an int64 element count and its bytes.
  Both are read with `zipfile` and a restricted `pickle.Unpickler`.

  Args:
    path: A ``.pth`` / ``.pt`` file, or an ``.npz`` holding the same names.

  Returns:
    ``{name: numpy array}``.
  """
  path = os.fspath(path)
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if any(n.endswith(".npy") for n in names) and not any(
            n.endswith("data.pkl") for n in names):
          with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
        return _read_torch_zip(zf, path)
    with open(path, "rb") as f:
      return _read_torch_legacy(f, path)
  except (OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
          KeyError, IndexError, TypeError) as e:
    raise UserError(f"cannot read {path} as a PyTorch state dict or .npz ({type(e).__name__}: "
                    f"{str(e)[:80]}); if it is pytorch-fid's weights, download them again "
                    "(docs/EVALUATION.md has the URL).") from None


def _read_torch_zip(zf: zipfile.ZipFile, path: str) -> dict[str, np.ndarray]:
  """Reads the zip format of torch.save (PyTorch >= 1.6)."""
  pkl = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
  if len(pkl) != 1:
    raise UserError(f"{path} is a zip archive but not a torch.save checkpoint (no single "
                    "data.pkl); pass a .pth saved with torch.save or an .npz.")
  prefix = pkl[0][:-len("data.pkl")]
  byteorder = "little"
  if prefix + "byteorder" in zf.namelist():
    byteorder = zf.read(prefix + "byteorder").decode("ascii")
  with zf.open(pkl[0]) as f:
    unpickler = _Unpickler(f, path, legacy=False)
    obj = unpickler.load()
  for key, storage in unpickler.storages.items():
    raw = zf.read(f"{prefix}data/{key}")
    dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
    storage.data = np.frombuffer(raw, dtype=dtype)
  return _materialise(obj, path)


def _read_torch_legacy(f, path: str) -> dict[str, np.ndarray]:
  """Reads the legacy (pre-1.6) torch.save format."""
  try:
    magic = _plain_load(f)
  except Exception:  # pylint: disable=broad-except  (any garbage: not a checkpoint)
    magic = None
  if magic != _TORCH_MAGIC:
    raise UserError(f"{path} is neither a torch.save checkpoint nor an .npz; pass pytorch-fid's "
                    "weights (docs/EVALUATION.md has the URL).")
  if _plain_load(f) != _TORCH_PROTOCOL:
    raise UserError(f"{path}: unsupported legacy torch.save protocol version.")
  sys_info = _plain_load(f)
  if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
    raise UserError(f"{path} was saved on a big-endian machine; re-save it on a little-endian one.")
  unpickler = _Unpickler(f, path, legacy=True)
  obj = unpickler.load()
  keys = _plain_load(f)
  for key in keys:
    storage = unpickler.storages[_ascii(key)]
    numel = int.from_bytes(f.read(8), "little", signed=True)
    nbytes = numel * storage.dtype.itemsize
    raw = f.read(nbytes)
    if numel < 0 or len(raw) != nbytes:
      raise UserError(f"{path} is truncated; download it again.")
    storage.data = np.frombuffer(raw, dtype=storage.dtype)
  return _materialise(obj, path)


def _materialise(obj, path: str) -> dict[str, np.ndarray]:
  """Turns the unpickled dict's tensor placeholders into numpy arrays."""
  if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
    obj = obj["state_dict"]  # A training checkpoint wrapping the state dict.
  if not isinstance(obj, Mapping):
    raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict; pass a file saved "
                    "with torch.save(model.state_dict(), ...).")
  out = {}
  for name, value in obj.items():
    if isinstance(value, _Tensor):
      out[str(name)] = value.to_numpy()
  return out
