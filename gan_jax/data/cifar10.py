"""Reads CIFAR-10 from its original python archive (`cifar-10-python.tar.gz`) or the extracted folder.

The archive (https://www.cs.toronto.edu/~kriz/cifar.html; `python -m gan_jax.data.fetch cifar10`
downloads and checks it) holds `cifar-10-batches-py/`: five training batches `data_batch_1` ..
`data_batch_5` and `test_batch`, each a pickled dict with b'data' (uint8 [10000, 3072], each row the
1024 red, then green, then blue values of a 32x32 image, row-major) and b'labels' (10000 ints 0..9).

The GAN paper's reference code reads it through pylearn2's `CIFAR10(which_set='train', start=0,
stop=40000)`: the 50,000 training images in batch order, of which the first 40,000 (data_batch_1 to
4) train and the rest (data_batch_5) validate; `test_batch` is the test set. `read_train` and
`read_test` give those arrays in that order, so `config.data.num_train = 40000` reproduces the split.

The batches are pickles, and unpickling can run code: only numpy arrays, dtypes, lists, dicts,
strings and numbers are accepted, so a corrupt or hostile file is an error, never executed. Every
problem (missing, truncated or corrupt archive, a batch of the wrong shape) is one `UserError` line.
"""

import codecs
import gzip
import io
import os
import pickle
import posixpath
import tarfile
import zlib

import numpy as np

from gan_jax.data import paths
from gan_jax.errors import UserError

ARCHIVE = 'cifar-10-python.tar.gz'
FOLDER = 'cifar-10-batches-py'
TRAIN_BATCHES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_BATCH = 'test_batch'
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
REFERENCE_NUM_TRAIN = 40_000  # the reference code's train split: data_batch_1 .. data_batch_4
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')


def _numpy_global(name: str):
  """numpy's array-reconstruction helpers, wherever this numpy version keeps them."""
  for module in ('_core', 'core'):  # numpy >= 2 moved numpy.core to numpy._core
    holder = getattr(np, module, None)
    for sub in ('multiarray', 'numeric'):
      obj = getattr(getattr(holder, sub, None), name, None)
      if obj is not None:
        return obj
  raise pickle.UnpicklingError(f'numpy has no {name}')


class _BatchUnpickler(pickle.Unpickler):
  """Unpickles CIFAR-10 batches, refusing every global but numpy's array reconstruction."""

  _NUMPY_HELPERS = {'_reconstruct', 'scalar', '_frombuffer'}
  _NUMPY_MODULES = {'numpy.core.multiarray', 'numpy._core.multiarray', 'numpy.core.numeric',
                    'numpy._core.numeric'}

  def find_class(self, module, name):
    if module == 'numpy' and name in ('ndarray', 'dtype'):
      return getattr(np, name)
    if (module, name) == ('_codecs', 'encode'):  # how Python 3 writes bytes at protocol 2
      return codecs.encode
    if module in self._NUMPY_MODULES and name in self._NUMPY_HELPERS:
      return _numpy_global(name)
    raise pickle.UnpicklingError(f'unexpected object {module}.{name}')


def _fetch_hint(directory: str) -> str:
  return f'`{paths.fetch_command("cifar10", directory)}` downloads it'


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  """One pickled batch -> (images uint8 [N, 32, 32, 3], labels int32 [N])."""
  try:
    batch = _BatchUnpickler(io.BytesIO(raw), encoding='bytes').load()
  except Exception as e:  # pylint: disable=broad-except  # a corrupt pickle fails in many ways
    raise UserError(f'{where} is not a CIFAR-10 batch ({type(e).__name__}: {" ".join(str(e).split())}); '
                    'download the archive again') from None
  if not isinstance(batch, dict):
    raise UserError(f'{where} holds a {type(batch).__name__}, not a CIFAR-10 batch dict; download the '
                    'archive again')
  data = batch.get(b'data', batch.get('data'))
  labels = batch.get(b'labels', batch.get('labels'))
  if data is None or labels is None:
    keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
    raise UserError(f'{where} has no data or labels (keys: {keys}); expected a CIFAR-10 python batch')
  data = np.asarray(data)
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
    raise UserError(f'{where} holds {data.dtype} data of shape {data.shape}; expected uint8 [N, 3072] '
                    '(32x32 RGB images)')
  labels = np.asarray(labels)
  if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
    raise UserError(f'{where} has labels of shape {labels.shape} ({labels.dtype}) for {data.shape[0]} '
                    'images; expected one integer label per image')
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise UserError(f'{where} has labels outside 0..{NUM_CLASSES - 1}; expected CIFAR-10 (not CIFAR-100)')
  # Rows are channel-major (1024 R, 1024 G, 1024 B); NHWC is what the models and plots use.
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)


def locate(path: str | os.PathLike) -> tuple[str, str]:
  """Where the batches are: ('archive', FILE) or ('folder', DIR).

  Args:
    path: the archive itself, the extracted `cifar-10-batches-py` folder, or a folder holding either
      (the extracted folder is preferred: it is faster to read).

  Raises:
    UserError: nothing CIFAR-10-like at `path`; the message says how to fetch it.
  """
  path = os.fspath(path)
  if os.path.isfile(path):
    return 'archive', path
  if not os.path.isdir(path):
    raise UserError(f'CIFAR-10 data {path} does not exist; {_fetch_hint(path)}, or pass '
                    f'--config.data.dir=FOLDER holding {ARCHIVE}')
  if any(os.path.isfile(os.path.join(path, name)) for name in TRAIN_BATCHES + (TEST_BATCH,)):
    return 'folder', path
  if os.path.isdir(os.path.join(path, FOLDER)):
    return 'folder', os.path.join(path, FOLDER)
  if os.path.isfile(os.path.join(path, ARCHIVE)):
    return 'archive', os.path.join(path, ARCHIVE)
  raise UserError(f'CIFAR-10 folder {path} holds neither {ARCHIVE} nor {FOLDER}/; {_fetch_hint(path)}, or '
                  'pass --config.data.dir=FOLDER holding it')


def _read_from_folder(folder: str, names) -> dict:
  out = {}
  for name in names:
    path = os.path.join(folder, name)
    try:
      with open(path, 'rb') as f:
        raw = f.read()
    except FileNotFoundError:
      raise UserError(f'CIFAR-10 folder {folder} has no {name}; it should hold '
                      f'{", ".join(TRAIN_BATCHES)} and {TEST_BATCH} (extract {ARCHIVE} again)') from None
    except OSError as e:
      raise UserError(f'cannot read {path}: {e.strerror or e}; check the file and its permissions') \
          from None
    out[name] = _parse_batch(raw, path)
  return out


def _read_from_archive(archive: str, names) -> dict:
  wanted, raws = set(names), {}
  try:
    # Stream the members in order: a .tar.gz cannot seek back, and each batch is read once.
    with tarfile.open(archive, 'r:*') as tar:
      for member in tar:
        base = posixpath.basename(member.name)
        if base in wanted and member.isfile():
          raws[base] = tar.extractfile(member).read()
          if len(raws) == len(wanted):
            break
  except FileNotFoundError:
    raise UserError(f'CIFAR-10 archive {archive} does not exist; '
                    f'{_fetch_hint(os.path.dirname(archive))}') from None
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
    reason = ' '.join(str(e).split()) or type(e).__name__
    raise UserError(f'{archive} is a corrupt or truncated archive ({reason}); download it again: '
                    f'{_fetch_hint(os.path.dirname(archive))} and checks it') from None
  missing = [n for n in names if n not in raws]
  if missing:
    raise UserError(f'{archive} has no {", ".join(missing)}; expected the CIFAR-10 python archive '
                    f'{ARCHIVE} (not the binary or MATLAB version, nor CIFAR-100)')
  return {name: _parse_batch(raws[name], f'{archive}:{name}') for name in names}


def read_batches(path: str | os.PathLike, names) -> dict:
  """Reads the named batches ('data_batch_1', ..., 'test_batch') from `path` (see `locate`).

  Returns:
    name -> (images uint8 [N, 32, 32, 3], labels int32 [N]).
  """
  kind, where = locate(path)
  names = list(names)
  return _read_from_archive(where, names) if kind == 'archive' else _read_from_folder(where, names)


def read_train(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """The 50,000 training images and labels: data_batch_1 .. data_batch_5 in order (NHWC uint8)."""
  batches = read_batches(path, TRAIN_BATCHES)
  images = np.concatenate([batches[n][0] for n in TRAIN_BATCHES])
  labels = np.concatenate([batches[n][1] for n in TRAIN_BATCHES])
  return images, labels


def read_test(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """The 10,000 test images and labels of `test_batch` (NHWC uint8)."""
  return read_batches(path, [TEST_BATCH])[TEST_BATCH]
