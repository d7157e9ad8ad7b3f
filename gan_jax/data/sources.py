"""One entry point for the image data sources, the paper's splits, and numpy preprocessing.

`load_images` loads one split ('train', 'validation' or 'test') of an image data set from one of
the sources below, as uint8 [N, H, W, C] images and int32 labels (None where there are none):

* 'idx': MNIST-format IDX files in the folder `config.data.dir` (`gan_jax.data.idx`).
* 'cifar10': CIFAR-10's python archive or its extracted folder in `config.data.dir`
  (`gan_jax.data.cifar10`).
* 'folder': PNG/JPEG images in `config.data.dir`, labelled by class sub-folders if any
  (`gan_jax.data.folder`), cropped and resized to `config.data.resolution`.
* 'tfds': a TFDS data set `config.data.name` prepared in `config.data.dir` (`gan_jax.data.tfds_source`).
* 'digits': scikit-learn's 8x8 digits (bundled with scikit-learn, no download).

The 'toy' source (low-dimensional vectors) is handled elsewhere, not here. For 'idx' and 'cifar10'
an empty `config.data.dir` means the default folder `gan_jax.data.paths.default_dir(name)`, where
`python -m gan_jax.data.fetch NAME` puts the files.

Splits follow the GAN paper: 'train' is the first `num_train` examples of the source's train set
(default 50000, as for MNIST; the paper used 40000 for CIFAR-10, which is exactly data_batch_1..4),
'validation' is the rest of the train set, and 'test' is the source's test set. An image folder
has no fixed order or test set: its images are shuffled once with a fixed seed, 'train' is the
first `num_train`, and 'validation' and 'test' are both the rest (as for 'digits').

`open_records` opens the training split for streaming (`gan_jax.data.stream`): image folders and TFDS
splits are decoded record by record when read, the small sources are loaded into host memory.

The preprocessing helpers (`to_float`, `global_contrast_normalize`, `apply_layout`) and
`check_batch_size` are pure numpy, used by the device pipeline.
"""

import dataclasses
import os
from typing import Any

import numpy as np

from gan_jax.data import cifar10
from gan_jax.data import folder
from gan_jax.data import idx
from gan_jax.data import paths
from gan_jax.data import scale as scale_lib
from gan_jax.data import stream
from gan_jax.data import tfds_source
from gan_jax.errors import UserError

SOURCES = ('idx', 'tfds', 'digits', 'toy', 'cifar10', 'folder')
SPLITS = ('train', 'validation', 'test')
LAYOUTS = ('flat', 'nhwc')

DEFAULT_NUM_TRAIN = 50000

# 'digits': examples in the train split after the fixed shuffle; the other 297 are validation/test.
DIGITS_NUM_TRAIN = 1500
DIGITS_SEED = 0

# MNIST-format data sets that `python -m gan_jax.data.fetch` downloads.
FETCHABLE_IDX = ('mnist', 'fashion_mnist', 'kmnist')

# 'folder': the seed of the one fixed shuffle before the train/validation split.
FOLDER_SEED = 0


@dataclasses.dataclass(frozen=True)
class LoadedData:
  """One split of an image data set, on the host.

  Attributes:
    images: uint8 [N, H, W, C].
    labels: int32 [N], or None if the data set has no labels.
    name: the data set's name, for logs and file names (e.g. 'mnist', 'digits').
    class_names: the name of each label value, where the source has them (CIFAR-10, image folders
      with class sub-folders), else None.
  """

  images: np.ndarray
  labels: np.ndarray | None
  name: str
  class_names: tuple | None = None


def _get(config_data: Any, key: str, default: Any) -> Any:
  """`config_data[key]`, or `default` if absent (works for ConfigDict and dict)."""
  value = config_data.get(key, default)
  return default if value is None else value


def _data_dir(config_data: Any) -> str:
  """`config.data.dir` with `~` expanded ('' when unset): the shell leaves `--flag=~/x` as it is."""
  return os.path.expanduser(_get(config_data, 'dir', ''))


def _num_train(config_data: Any) -> int:
  num_train = _get(config_data, 'num_train', DEFAULT_NUM_TRAIN)
  if isinstance(num_train, bool) or not isinstance(num_train, (int, np.integer)) or num_train <= 0:
    raise UserError(
        f'config.data.num_train must be a positive integer, got {num_train!r}; fix --config.data.num_train'
    )
  return int(num_train)


def _empty_validation(name: str, num_train: int, num_source_train: int) -> UserError:
  return UserError(
      f'the validation split of {name} is empty: num_train={num_train} takes all {num_source_train} '
      f'examples of its train set; lower --config.data.num_train below {num_source_train}'
  )


def _load_idx(config_data: Any, split: str) -> LoadedData:
  directory = _data_dir(config_data)
  name = _get(config_data, 'name', '')
  if not directory and name in FETCHABLE_IDX:
    directory = paths.default_dir(name)
  if not directory:
    raise UserError(
        'the idx source needs a folder of MNIST-format IDX files; set --config.data.dir=FOLDER '
        '(e.g. the folder holding train-images-idx3-ubyte.gz), or --config.data.name=mnist for the '
        'folder `python -m gan_jax.data.fetch mnist` fills'
    )
  num_train = _num_train(config_data) if split != 'test' else None
  if not os.path.isdir(directory):
    fetchable = name if name in FETCHABLE_IDX else 'mnist'
    raise UserError(
        f'IDX data folder {directory} does not exist; download {fetchable} into it with '
        f'`{paths.fetch_command(fetchable, directory)}`, or pass --config.data.dir=FOLDER holding '
        'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, '
        't10k-labels-idx1-ubyte.gz'
    )
  name = name or os.path.basename(os.path.normpath(directory))
  if split == 'test':
    images, labels = idx.load_idx_split(directory, 'test')
    return LoadedData(images, labels, name)
  images, labels = idx.load_idx_split(directory, 'train')
  if split == 'train':
    return LoadedData(images[:num_train], labels[:num_train], name)
  if num_train >= images.shape[0]:
    raise _empty_validation(name, num_train, images.shape[0])
  return LoadedData(images[num_train:], labels[num_train:], name)


def _load_cifar10(config_data: Any, split: str) -> LoadedData:
  directory = _data_dir(config_data) or paths.default_dir('cifar10')
  name = _get(config_data, 'name', '') or 'cifar10'
  if split == 'test':
    images, labels = cifar10.read_test(directory)
    return LoadedData(images, labels, name, cifar10.CLASS_NAMES)
  num_train = _num_train(config_data)
  images, labels = cifar10.read_train(directory)
  if split == 'train':
    return LoadedData(images[:num_train], labels[:num_train], name, cifar10.CLASS_NAMES)
  if num_train >= images.shape[0]:
    raise _empty_validation(name, num_train, images.shape[0])
  return LoadedData(images[num_train:], labels[num_train:], name, cifar10.CLASS_NAMES)


def _folder_dir(config_data: Any) -> str:
  directory = _data_dir(config_data)
  if not directory:
    raise UserError('the folder source needs a folder of PNG or JPEG images; set --config.data.dir=FOLDER')
  return directory


def _folder_split(config_data: Any, split: str, n: int, name: str) -> np.ndarray:
  """Indices (into the sorted files) of a folder's split."""
  num_train = _num_train(config_data)
  # Sorted file order groups images by class: one fixed shuffle makes validation a fair sample.
  order = np.random.RandomState(FOLDER_SEED).permutation(n)
  if split == 'train':
    return order[:num_train]
  if num_train >= n:
    raise _empty_validation(name, num_train, n)
  return order[num_train:]


def _load_folder(config_data: Any, split: str) -> LoadedData:
  directory = _folder_dir(config_data)
  loaded = folder.load_folder(directory, resolution=_get(config_data, 'resolution', 0),
                              channels=_get(config_data, 'channels', 3),
                              bad_files=_get(config_data, 'bad_files', 'error'))
  name = _get(config_data, 'name', '') or os.path.basename(os.path.normpath(directory))
  chosen = _folder_split(config_data, split, loaded.images.shape[0], name)
  labels = None if loaded.labels is None else loaded.labels[chosen]
  return LoadedData(loaded.images[chosen], labels, name, loaded.class_names)


def _load_tfds(config_data: Any, split: str) -> LoadedData:
  name = _get(config_data, 'name', '')
  data_dir = _data_dir(config_data) or None
  if split == 'test':
    images, labels = tfds_source.load_tfds(name, 'test', data_dir)
    return LoadedData(images, labels, name)
  num_train = _num_train(config_data)
  # Slice with TFDS's split syntax so only the examples needed are decoded; a slice past the end
  # is an error in TFDS, so compare with the size of the train split first.
  size = tfds_source.tfds_num_examples(name, 'train', data_dir)
  if split == 'train':
    tfds_split = 'train' if num_train >= size else f'train[0:{num_train}]'
  else:
    if num_train >= size:
      raise _empty_validation(name, num_train, size)
    tfds_split = f'train[{num_train}:{size}]'
  images, labels = tfds_source.load_tfds(name, tfds_split, data_dir)
  return LoadedData(images, labels, name)


@dataclasses.dataclass(frozen=True)
class OpenedRecords:
  """The training split opened for streaming: random-access `records` (`gan_jax.data.stream`)."""

  records: Any
  name: str
  labels: np.ndarray | None
  class_names: tuple | None = None
  loaded: LoadedData | None = None  # the whole split, for the sources loaded into host memory


def open_records(config_data: Any) -> OpenedRecords:
  """The training split of `config_data` as records a streamed run reads one by one.

  Image folders are listed (the same files and split as `load_images`) and decoded when read;
  `bad_files` applies when a file is read. TFDS splits are read through `tfds.data_source`. The
  other sources are small: their split is loaded into host memory.
  """
  source = _get(config_data, 'source', '')
  if source == 'folder':
    directory = _folder_dir(config_data)
    resolution = _get(config_data, 'resolution', 0)
    channels = _get(config_data, 'channels', 3)
    bad_files = _get(config_data, 'bad_files', 'error')
    folder.check_options(resolution, channels, bad_files)
    files, class_names = folder.list_images(directory)
    name = _get(config_data, 'name', '') or os.path.basename(os.path.normpath(directory))
    chosen = _folder_split(config_data, 'train', len(files), name)
    files = [files[i] for i in chosen]
    labels = folder.labels_of(files, class_names)
    records = stream.FolderRecords(directory, files, labels, resolution, channels, bad_files)
    return OpenedRecords(records, name, labels, class_names)
  if source == 'tfds':
    name = _get(config_data, 'name', '')
    data_dir = _data_dir(config_data) or None
    num_train = _num_train(config_data)
    size = tfds_source.tfds_num_examples(name, 'train', data_dir)
    split = 'train' if num_train >= size else f'train[0:{num_train}]'
    return OpenedRecords(stream.TfdsRecords(tfds_source.open_source(name, split, data_dir), name), name, None)
  loaded = load_images(config_data, 'train')
  return OpenedRecords(stream.ArrayRecords(loaded.images, loaded.labels), loaded.name, loaded.labels,
                       loaded.class_names, loaded)


def load_digits_split(split: str) -> LoadedData:
  """Loads scikit-learn's 8x8 digits (1797 images, bundled with scikit-learn; no download).

  Pixel values 0..16 become uint8 0..255 (x * 255 / 16, rounded). The examples are shuffled with a
  fixed `np.random.RandomState(0)` permutation; 'train' is the first 1500, 'validation' the other
  297, and 'test' is the same 297 examples as 'validation' (the data set is too small for three
  splits), so test numbers on digits are not independent of model selection.

  Args:
    split: 'train', 'validation' or 'test'.

  Returns:
    The split as uint8 [N, 8, 8, 1] images and int32 labels.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top  (slow import)

  digits = datasets.load_digits()
  images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
  labels = digits.target.astype(np.int32)
  order = np.random.RandomState(DIGITS_SEED).permutation(images.shape[0])
  chosen = order[:DIGITS_NUM_TRAIN] if split == 'train' else order[DIGITS_NUM_TRAIN:]
  return LoadedData(images[chosen], labels[chosen], 'digits')


def load_images(config_data: Any, split: str) -> LoadedData:
  """Loads one split of the image data set that `config_data` describes.

  Args:
    config_data: the `config.data` ConfigDict (a dict works too) with keys `source` ('idx',
      'cifar10', 'folder', 'tfds' or 'digits'), `name` (the TFDS data set name; otherwise an
      optional display name, and for idx with an empty `dir` the data set whose default folder is
      read), `dir` (the IDX, CIFAR-10 or image folder, or the TFDS data_dir; '' for the default
      folder), optionally `num_train` (default 50000; ignored by 'digits'), and for 'folder'
      `resolution`, `channels` and `bad_files` (see `gan_jax.data.folder.load_folder`).
    split: 'train' (the first `num_train` examples of the source's train set), 'validation' (the
      rest of the train set) or 'test' (the source's test set).

  Returns:
    The split as a `LoadedData`. For 'tfds' the examples are in TFDS's stored order, which differs
    from the original files' order, so its validation split is not the same examples as idx's.

  Raises:
    UserError: for an unknown source or split, missing or corrupt data, or an empty validation
      split (num_train at least the size of the train set).
    ValueError: for source 'toy', which is not an image source (callers handle it elsewhere).
  """
  if split not in SPLITS:
    raise UserError(f'unknown split {split!r}; use one of {", ".join(SPLITS)}')
  source = _get(config_data, 'source', '')
  if source == 'idx':
    return _load_idx(config_data, split)
  if source == 'tfds':
    return _load_tfds(config_data, split)
  if source == 'digits':
    return load_digits_split(split)
  if source == 'cifar10':
    return _load_cifar10(config_data, split)
  if source == 'folder':
    return _load_folder(config_data, split)
  if source == 'toy':
    raise ValueError(
        "source 'toy' holds vectors, not images; load it with the toy data module, not load_images"
    )
  raise UserError(f'unknown data source {source!r}; set --config.data.source to one of {", ".join(SOURCES)}')


def to_float(images: np.ndarray, scale: str) -> np.ndarray:
  """Converts uint8 images to float32.

  Args:
    images: uint8 array of any shape.
    scale: 'unit' for [0, 1] (x / 255) or 'symmetric' for [-1, 1] (x / 127.5 - 1).

  Returns:
    A float32 array of the same shape.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(f'to_float expects uint8 images, got {images.dtype}')
  return scale_lib.from_uint8(images, scale)


def global_contrast_normalize(
    x: np.ndarray,
    scale: float = 55.0,
    min_divisor: float = 1e-8,
    subtract_mean: bool = True,
    use_std: bool = False,
    sqrt_bias: float = 0.0,
) -> np.ndarray:
  """Global contrast normalization, as pylearn2's `pylearn2.expr.preprocessing.global_contrast_normalize`.

  Per example (over all its features): subtract the mean, then divide by
  `sqrt(sqrt_bias + sum(x**2)) / scale` (or, with `use_std`, by `sqrt(sqrt_bias + var(x, ddof=1)) / scale`);
  a divisor below `min_divisor` is replaced by 1. pylearn2's CIFAR-10 preprocessing used `scale=55`.
  Unlike pylearn2, `x` may have any shape [N, ...]; the statistics are over everything but axis 0.

  Args:
    x: [N, ...] array (uint8 or float).
    scale: the norm each example is scaled to.
    min_divisor: divisors smaller than this are replaced by 1.
    subtract_mean: subtract each example's mean first.
    use_std: divide by the standard deviation instead of the norm.
    sqrt_bias: added inside the square root.

  Returns:
    An array of x's shape: x's dtype if floating, else float32 (computed in float64).
  """
  x = np.asarray(x)
  if scale < min_divisor:
    raise ValueError(f'scale {scale} must be at least min_divisor {min_divisor}')
  out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
  flat = x.reshape(x.shape[0], -1).astype(np.float64)
  if subtract_mean:
    flat = flat - flat.mean(axis=1, keepdims=True)
  if use_std:
    ddof = 1 if flat.shape[1] > 1 else 0
    normalizers = np.sqrt(sqrt_bias + flat.var(axis=1, ddof=ddof)) / scale
  else:
    normalizers = np.sqrt(sqrt_bias + (flat**2).sum(axis=1)) / scale
  normalizers[normalizers < min_divisor] = 1.0
  flat = flat / normalizers[:, np.newaxis]
  return flat.reshape(x.shape).astype(out_dtype)


def apply_layout(x: np.ndarray, layout: str) -> np.ndarray:
  """Puts a batch of images in the layout a model expects.

  Args:
    x: [N, H, W, C] array.
    layout: 'flat' for [N, H * W * C] (MLPs), or 'nhwc' to leave it unchanged (conv nets).
  """
  if layout == 'flat':
    return x.reshape(x.shape[0], -1)
  if layout == 'nhwc':
    return x
  raise UserError(f'unknown data layout {layout!r}; use one of {", ".join(LAYOUTS)}')


def check_batch_size(n_examples: int, batch_size: int, name: str) -> None:
  """Raises a UserError if `batch_size` is not positive or larger than the `n_examples` of split `name`."""
  if batch_size <= 0:
    raise UserError(f'batch_size must be positive, got {batch_size}; fix --config.batch_size')
  if batch_size > n_examples:
    raise UserError(
        f'batch_size {batch_size} is larger than the {n_examples} examples of split {name}; '
        'lower --config.batch_size'
    )
