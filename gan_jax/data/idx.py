"""Readers for MNIST-format IDX files (plain or gzipped), on the host in numpy.

The IDX format (http://yann.lecun.com/exdb/mnist/) is a 4-byte magic number (two zero bytes, a
dtype code, the number of dimensions), then one big-endian uint32 per dimension, then the data
in big-endian C order. MNIST, Fashion-MNIST, KMNIST and EMNIST ship in this format.

Every problem with the user's files (missing, not IDX, truncated, corrupt gzip, mismatched image
and label counts) raises `gan_jax.errors.UserError` with a one-line message.
"""

import gzip
import os
import re
import zlib

import numpy as np

from gan_jax.data import paths
from gan_jax.errors import UserError

# IDX dtype code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}

_GZIP_MAGIC = b'\x1f\x8b'

# Split name -> file-name prefixes used for it, in order of preference.
_SPLIT_PREFIXES = {
    'train': ('train',),
    'test': ('t10k', 'test'),
}


def _read_bytes(path: str) -> bytes:
  """Returns the (decompressed) bytes of `path`; gzip is detected from its magic bytes."""
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except FileNotFoundError:
    raise UserError(f'IDX file {path} does not exist; check the path') from None
  except IsADirectoryError:
    raise UserError(f'{path} is a folder, not an IDX file; pass the path of an IDX file') from None
  except OSError as e:
    raise UserError(
        f'cannot read IDX file {path}: {e.strerror or e}; check the file and its permissions'
    ) from None
  if raw[:2] != _GZIP_MAGIC:
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    message = str(e).replace('\n', ' ')
    raise UserError(
        f'{path} is a corrupt or truncated gzip file ({message}); download it again and check its checksum'
    ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (plain or gzipped) into a numpy array.

  Gzip compression is detected from the file's first two bytes (0x1f 0x8b), whatever its name.

  Args:
    path: path of the IDX file.

  Returns:
    The array, with the shape from the file's header and the dtype from its dtype code
    (uint8, int8, int16, int32, float32 or float64), in native byte order and writable.

  Raises:
    UserError: if the file is missing, is not an IDX file (bad magic number), is a corrupt gzip
      file, or its data length does not match its header (truncated or trailing bytes).
  """
  path = os.fspath(path)
  data = _read_bytes(path)
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    magic = data[:4].hex() if data else 'empty file'
    raise UserError(
        f'{path} is not an IDX file (bad magic number: {magic}); expected an MNIST-format file such as '
        'train-images-idx3-ubyte[.gz]'
    )
  dtype = _IDX_DTYPES[data[2]]
  ndim = data[3]
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise UserError(
        f'IDX file {path} is truncated: its header needs {header_size} bytes but the file has {len(data)}; '
        'download it again'
    )
  shape = tuple(int(d) for d in np.frombuffer(data, dtype='>u4', count=ndim, offset=4))
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  actual = len(data) - header_size
  if actual != expected:
    what = 'truncated' if actual < expected else 'has trailing bytes'
    raise UserError(
        f'IDX file {path} {what}: its header {shape} needs {expected} data bytes but it has {actual}; '
        'download it again'
    )
  array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
  # astype copies, which also makes the result writable (np.frombuffer over bytes is read-only).
  return array.astype(dtype.newbyteorder('='))


def _candidate_names(prefix: str, kind: str, ndim: int) -> list[str]:
  """Standard file names for one prefix ('train'/'t10k') and kind ('images'/'labels')."""
  names = []
  for base in (f'{prefix}-{kind}-idx{ndim}-ubyte', f'{prefix}-{kind}.idx{ndim}-ubyte'):
    names.extend((base, base + '.gz'))
  return names


def _find_file(directory: str, split: str, kind: str, ndim: int) -> str:
  """Finds the images or labels file of `split` in `directory`.

  Looks first for the standard names (`train-images-idx3-ubyte`, `train-images.idx3-ubyte`, with or
  without `.gz`), then for any single file matching `*train-images*idx3-ubyte[.gz]` (EMNIST's
  `emnist-<name>-train-images-idx3-ubyte`). If a file exists both plain and gzipped, the plain one
  is read (it is faster).
  """
  prefixes = _SPLIT_PREFIXES[split]
  for prefix in prefixes:
    for name in _candidate_names(prefix, kind, ndim):
      path = os.path.join(directory, name)
      if os.path.isfile(path):
        return path

  # Fallback: any file whose name (without .gz) matches *<prefix>-<kind>*idx<ndim>-ubyte.
  pattern = re.compile(
      r'.*(?:' + '|'.join(re.escape(p) for p in prefixes) + r')-' + kind + r'.*idx' + str(ndim) + r'-ubyte'
  )
  matches = {}  # name without .gz -> list of actual names
  for name in sorted(os.listdir(directory)):
    base = name[:-3] if name.endswith('.gz') else name
    if pattern.fullmatch(base) and os.path.isfile(os.path.join(directory, name)):
      matches.setdefault(base, []).append(name)
  if len(matches) == 1:
    (base, names), = matches.items()
    return os.path.join(directory, base if base in names else names[0])
  expected = ' or '.join(_candidate_names(prefixes[0], kind, ndim)[:2])
  if len(matches) > 1:
    found = ', '.join(sorted(matches))
    raise UserError(
        f'IDX folder {directory} has several {split} {kind} files ({found}); keep one data set per folder'
    )
  raise UserError(
      f'IDX folder {directory} has no {split} {kind} file; expected {expected} (optionally .gz), '
      f'or a single *{prefixes[0]}-{kind}*idx{ndim}-ubyte file; '
      f'`{paths.fetch_command("mnist", directory)}` downloads MNIST there'
  )


def load_idx_split(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Loads the images and labels of one split of an MNIST-format data set from a folder.

  The folder holds the four standard files, plain or gzipped: `train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (also accepted:
  the dot variant `train-images.idx3-ubyte`, and EMNIST's `emnist-<name>-train-images-idx3-ubyte`).
  Images are returned as stored; note EMNIST stores its images transposed.

  Args:
    directory: the folder holding the IDX files.
    split: 'train' or 'test'.

  Returns:
    `(images, labels)`: images uint8 [N, H, W, 1] (an [N, H, W, C] file is kept as is) and
    labels int32 [N].

  Raises:
    UserError: if the folder or a file is missing, a file is corrupt, the images are not uint8
      [N, H, W], or the image and label counts differ.
  """
  directory = os.fspath(directory)
  if split not in _SPLIT_PREFIXES:
    raise UserError(f'unknown IDX split {split!r}; use one of {sorted(_SPLIT_PREFIXES)}')
  if not os.path.isdir(directory):
    raise UserError(
        f'IDX data folder {directory} does not exist; pass --config.data.dir=FOLDER holding '
        'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, '
        't10k-labels-idx1-ubyte.gz'
    )
  images_path = _find_file(directory, split, 'images', 3)
  labels_path = _find_file(directory, split, 'labels', 1)
  images = read_idx(images_path)
  labels = read_idx(labels_path)

  if images.dtype != np.uint8 or images.ndim not in (3, 4):
    raise UserError(
        f'{images_path} holds {images.dtype} data of shape {images.shape}; expected uint8 images [N, H, W]'
    )
  if images.ndim == 3:
    images = images[..., np.newaxis]
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise UserError(
        f'{labels_path} holds {labels.dtype} data of shape {labels.shape}; expected integer labels [N]'
    )
  if images.shape[0] != labels.shape[0]:
    raise UserError(
        f'{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels; '
        'the two files must come from the same data set and split'
    )
  return images, labels.astype(np.int32)
