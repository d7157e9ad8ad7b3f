"""Reads prepared TensorFlow Datasets (TFDS) image data sets into numpy, without TensorFlow.

`tfds.data_source` reads a data set prepared in the `array_record` (or `parquet`) file format with
random access and decodes images with PIL, so no TensorFlow is needed to read. Preparing a data set
(`tfds build`) does need TensorFlow and internet, so this module never downloads: a data set that is
not prepared in the data folder raises a `UserError` that says how to prepare it elsewhere.

`tensorflow_datasets` is imported inside the functions, so `import gan_jax` stays fast.
"""

import os
import re

import numpy as np

from gan_jax.errors import UserError

# Records read per `__getitems__` call.
_READ_CHUNK = 1024

_EXAMPLE_DATASETS = 'mnist, fashion_mnist, kmnist, cifar10, svhn_cropped, celeb_a'


def _import_tfds():
  """Imports tensorflow_datasets, or raises a UserError saying how to install it."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        'the tfds data source needs tensorflow_datasets and array_record; `pip install tensorflow-datasets '
        'array_record`, or for MNIST-format data use --config.data.source=idx'
    ) from None
  return tfds


def _one_line(error: BaseException, limit: int = 300) -> str:
  """The message of `error` on one line, cut to `limit` characters."""
  text = ' '.join(str(error).split()) or type(error).__name__
  return text if len(text) <= limit else text[:limit] + '...'


def _where(data_dir: str | None) -> str:
  if data_dir:
    return f'data_dir {data_dir}'
  return 'the default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)'


def _not_prepared_message(name: str, data_dir: str | None) -> str:
  return (
      f'TFDS data set {name!r} is not prepared in {_where(data_dir)} and is never downloaded here; '
      'prepare it on a machine with internet (`pip install gan_jax[tfds-prepare]` then '
      f'`tfds build {name} --data_dir=DIR --file_format=array_record`) and copy DIR here, then pass '
      '--config.data.dir=DIR; or for MNIST-format data use --config.data.source=idx'
  )


def _unknown_name_message(name: str) -> str:
  return (
      f'unknown TFDS data set {name!r}; image data sets include {_EXAMPLE_DATASETS} '
      '(`tfds.list_builders()` lists them all); set --config.data.name'
  )


def _diagnose(tfds, name: str, split: str, data_dir: str | None, error: Exception) -> UserError:
  """Turns a failure of `tfds.data_source` into a UserError that says what to do."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    return UserError(_unknown_name_message(name))
  except Exception:  # pylint: disable=broad-except
    builder = None
  if builder is not None:
    if not builder.is_prepared():
      return UserError(_not_prepared_message(name, data_dir))
    file_format = builder.info.file_format
    random_access = tfds.core.file_adapters.FileFormat.with_random_access()
    if file_format is not None and file_format not in random_access:
      return UserError(
          f'TFDS data set {name!r} in {builder.data_dir} was prepared as {file_format.value}, which '
          'cannot be read without TensorFlow; rebuild it with '
          f'`tfds build {name} --data_dir=DIR --file_format=array_record`'
      )
  return UserError(
      f'cannot read split {split!r} of TFDS data set {name!r} from {_where(data_dir)}: {_one_line(error)}'
  )


def open_source(name: str, split: str, data_dir: str | None):
  """Opens a TFDS random-access data source, never downloading; raises UserError on failure."""
  tfds = _import_tfds()
  if not name:
    raise UserError(f'no TFDS data set name given; set --config.data.name (e.g. one of {_EXAMPLE_DATASETS})')
  # 'namespace:name' (community / Hugging Face data sets) would go to the network; 'name:1.2.3' is a version.
  if re.match(r'^[^:/]+:[^\d]', name):
    raise UserError(
        f'TFDS data set {name!r} is a namespaced (community) data set, which needs internet; use a data set '
        'prepared in --config.data.dir instead'
    )
  data_dir = os.fspath(data_dir) if data_dir else None
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False, try_gcs=False)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(_unknown_name_message(name)) from None
  except Exception as e:  # pylint: disable=broad-except
    raise _diagnose(tfds, name, split, data_dir, e) from e


def tfds_num_examples(name: str, split: str, data_dir: str | os.PathLike | None = None) -> int:
  """Returns the number of examples in a split of a prepared TFDS data set, without decoding any.

  Args:
    name: the TFDS data set name, e.g. 'mnist' (a config and version may follow: 'name/config:1.0.0').
    split: a TFDS split string, e.g. 'train' or 'train[0:50000]'.
    data_dir: the TFDS data folder; None or '' for the default ($TFDS_DATA_DIR or ~/tensorflow_datasets).

  Raises:
    UserError: as `load_tfds`.
  """
  return len(open_source(name, split, data_dir))


def _read_records(source, n: int):
  """Yields the records of `source` in order, reading by batches with `__getitems__` when it can."""
  getitems = getattr(source, '__getitems__', None)
  for start in range(0, n, _READ_CHUNK):
    keys = list(range(start, min(n, start + _READ_CHUNK)))
    records = None
    if getitems is not None:
      try:
        records = getitems(keys)
      except TypeError:
        # The source under `tfds.testing.mock_data` has a broken `__getitems__`; read one by one.
        getitems = None
    if records is None:
      records = [source[k] for k in keys]
    yield from records


def example(record, name: str) -> tuple[np.ndarray, int]:
  """(uint8 image [H, W, C], label) of one TFDS record; label -1 where there is no scalar integer
  'label' feature. Grayscale [H, W] images get C = 1.

  Raises:
    UserError: the record has no 'image' feature, or it is not a uint8 [H, W, C] image.
  """
  if not isinstance(record, dict) or 'image' not in record:
    keys = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise UserError(
        f'TFDS data set {name!r} has no \'image\' feature (it has {keys}); choose an image data set '
        f'such as {_EXAMPLE_DATASETS}'
    )
  image = np.asarray(record['image'])
  if image.ndim == 2:
    image = image[..., np.newaxis]
  if image.dtype != np.uint8 or image.ndim != 3:
    raise UserError(
        f'TFDS data set {name!r} has {image.dtype} images of shape {image.shape}; only uint8 [H, W, C] '
        'images are supported'
    )
  label = np.asarray(record['label']) if 'label' in record else None
  is_label = label is not None and label.ndim == 0 and np.issubdtype(label.dtype, np.integer)
  return image, (int(label) if is_label else -1)


def load_tfds(
    name: str, split: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
  """Reads all images (and labels) of a split of a prepared TFDS data set into numpy.

  Uses `tfds.data_source(..., download=False)`, so the data set must already be prepared in
  `data_dir` in the array_record format; nothing is ever downloaded. Note that TFDS stores
  examples in its own (shuffled at preparation) order, not the order of the original files.

  Args:
    name: the TFDS data set name, e.g. 'mnist' (a config and version may follow: 'name/config:1.0.0').
    split: a TFDS split string, e.g. 'train', 'test' or 'train[0:50000]'.
    data_dir: the TFDS data folder; None or '' for the default ($TFDS_DATA_DIR or ~/tensorflow_datasets).

  Returns:
    `(images, labels)`: images uint8 [N, H, W, C] (grayscale [H, W] images get C = 1) from the
    'image' feature, and labels int32 [N] from a scalar integer 'label' feature, or None if the
    data set has none.

  Raises:
    UserError: if the name is unknown, the data set is not prepared in `data_dir` (or was prepared
      in a format that cannot be read without TensorFlow), the split is invalid or empty, or the
      data set has no fixed-shape uint8 'image' feature.
  """
  source = open_source(name, split, data_dir)
  n = len(source)
  if n == 0:
    raise UserError(f'split {split!r} of TFDS data set {name!r} is empty; choose another split')

  images = None
  labels = None
  for i, record in enumerate(_read_records(source, n)):
    image, label = example(record, name)
    if images is None:
      images = np.empty((n,) + image.shape, np.uint8)
      labels = np.empty((n,), np.int32) if label >= 0 else None
    if image.shape != images.shape[1:]:
      raise UserError(
          f'TFDS data set {name!r} has images of different shapes ({images.shape[1:]} and {image.shape}); '
          'choose a data set with a fixed image size'
      )
    images[i] = image
    if labels is not None:
      labels[i] = label
  return images, labels
