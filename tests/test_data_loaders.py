"""Tests for the host-side data loaders: IDX files, TFDS (offline), sklearn digits, preprocessing."""

import gzip
import io
import os
import socket
import struct
import time

import ml_collections
import numpy as np
import pytest

from gan_jax.data import idx
from gan_jax.data import sources
from gan_jax.data import stream
from gan_jax.data import tfds_source
from gan_jax.errors import UserError

_DTYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def _idx_bytes(array: np.ndarray) -> bytes:
  """Serializes `array` in the IDX format."""
  array = np.asarray(array)
  header = bytes([0, 0, _DTYPE_CODES[array.dtype], array.ndim])
  header += struct.pack('>' + 'I' * array.ndim, *array.shape)
  return header + array.astype(array.dtype.newbyteorder('>')).tobytes()


def _write(path, data: bytes, gz: bool = False):
  with open(path, 'wb') as f:
    f.write(gzip.compress(data) if gz else data)
  return path


def _write_split(directory, split, images, labels, gz=True, style='standard'):
  """Writes the images and labels IDX files of one split under one naming style."""
  prefix = {'train': 'train', 'test': 't10k'}[split]
  if style == 'standard':
    names = (f'{prefix}-images-idx3-ubyte', f'{prefix}-labels-idx1-ubyte')
  elif style == 'dot':
    names = (f'{prefix}-images.idx3-ubyte', f'{prefix}-labels.idx1-ubyte')
  else:  # EMNIST
    prefix = {'train': 'train', 'test': 'test'}[split]
    names = (f'emnist-digits-{prefix}-images-idx3-ubyte', f'emnist-digits-{prefix}-labels-idx1-ubyte')
  suffix = '.gz' if gz else ''
  _write(os.path.join(directory, names[0] + suffix), _idx_bytes(images), gz)
  _write(os.path.join(directory, names[1] + suffix), _idx_bytes(labels), gz)


def _random_split(n, seed, h=28, w=28):
  rng = np.random.RandomState(seed)
  return rng.randint(0, 256, size=(n, h, w)).astype(np.uint8), rng.randint(0, 10, size=n).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize('dtype', list(_DTYPE_CODES))
@pytest.mark.parametrize('gz', [False, True])
def test_read_idx_round_trip(tmp_path, dtype, gz):
  rng = np.random.RandomState(0)
  array = (rng.randn(3, 4, 5) * 50).astype(dtype)
  path = _write(tmp_path / 'data-idx3-ubyte', _idx_bytes(array), gz)  # gzip detected by content, not name
  out = idx.read_idx(path)
  assert out.dtype == dtype and out.dtype.isnative
  np.testing.assert_array_equal(out, array)
  out[0, 0, 0] = 1  # writable


def test_read_idx_one_dim_labels(tmp_path):
  labels = np.arange(7, dtype=np.uint8)
  path = _write(tmp_path / 'labels.gz', _idx_bytes(labels), gz=True)
  np.testing.assert_array_equal(idx.read_idx(str(path)), labels)


def test_read_idx_bad_magic(tmp_path):
  path = _write(tmp_path / 'notidx', b'\x89PNG\r\n\x1a\n' + bytes(100))
  with pytest.raises(UserError, match=r'notidx is not an IDX file.*magic'):
    idx.read_idx(path)
  bad_code = _write(tmp_path / 'badcode', bytes([0, 0, 0x07, 1]) + struct.pack('>I', 1) + b'x')
  with pytest.raises(UserError, match='not an IDX file'):
    idx.read_idx(bad_code)
  empty = _write(tmp_path / 'empty', b'')
  with pytest.raises(UserError, match='not an IDX file'):
    idx.read_idx(empty)


def test_read_idx_truncated_and_trailing(tmp_path):
  data = _idx_bytes(np.zeros((2, 3, 4), np.int16))  # 48 data bytes
  truncated = _write(tmp_path / 'truncated', data[:-5])
  with pytest.raises(UserError, match=r'truncated.*needs 48 data bytes but it has 43'):
    idx.read_idx(truncated)
  trailing = _write(tmp_path / 'trailing.gz', data + b'abc', gz=True)
  with pytest.raises(UserError, match=r'trailing bytes.*needs 48 data bytes but it has 51'):
    idx.read_idx(trailing)
  short_header = _write(tmp_path / 'short_header', data[:9])
  with pytest.raises(UserError, match=r'truncated.*header'):
    idx.read_idx(short_header)


def test_read_idx_corrupt_gzip(tmp_path):
  compressed = gzip.compress(_idx_bytes(np.zeros((10, 10), np.uint8)))
  cut = _write(tmp_path / 'cut.gz', compressed[: len(compressed) // 2])
  with pytest.raises(UserError, match=r'cut\.gz is a corrupt or truncated gzip file'):
    idx.read_idx(cut)
  garbage = _write(tmp_path / 'garbage.gz', b'\x1f\x8b' + bytes(range(256)) * 4)
  with pytest.raises(UserError, match='corrupt or truncated gzip'):
    idx.read_idx(garbage)


def test_read_idx_missing_file(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    idx.read_idx(tmp_path / 'nope')
  with pytest.raises(UserError, match='is a folder'):
    idx.read_idx(tmp_path)


@pytest.mark.parametrize('gz', [False, True])
@pytest.mark.parametrize('style', ['standard', 'dot', 'emnist'])
def test_load_idx_split_naming_styles(tmp_path, gz, style):
  train = _random_split(5, 0)
  test = _random_split(3, 1)
  _write_split(tmp_path, 'train', *train, gz=gz, style=style)
  _write_split(tmp_path, 'test', *test, gz=gz, style=style)
  for split, (images, labels) in (('train', train), ('test', test)):
    x, y = idx.load_idx_split(tmp_path, split)
    assert x.shape == images.shape + (1,) and x.dtype == np.uint8
    assert y.shape == labels.shape and y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)


def test_load_idx_split_prefers_plain_over_gz_and_standard_names(tmp_path):
  _write_split(tmp_path, 'train', *_random_split(2, 0), gz=True)
  _write_split(tmp_path, 'train', *_random_split(4, 0), gz=False)
  _write_split(tmp_path, 'train', *_random_split(6, 0), gz=False, style='emnist')
  x, _ = idx.load_idx_split(tmp_path, 'train')
  assert x.shape[0] == 4


def test_load_idx_split_missing_folder(tmp_path):
  missing = tmp_path / 'no_such_folder'
  with pytest.raises(UserError, match=r'no_such_folder does not exist.*--config\.data\.dir'):
    idx.load_idx_split(missing, 'train')


def test_load_idx_split_missing_file(tmp_path):
  _write_split(tmp_path, 'train', *_random_split(2, 0))
  with pytest.raises(UserError) as info:
    idx.load_idx_split(tmp_path, 'test')
  message = str(info.value)
  assert str(tmp_path) in message and 't10k-images-idx3-ubyte' in message and '\n' not in message
  os.remove(tmp_path / 'train-labels-idx1-ubyte.gz')
  with pytest.raises(UserError, match=r'no train labels file; expected train-labels-idx1-ubyte'):
    idx.load_idx_split(tmp_path, 'train')


def test_load_idx_split_ambiguous_emnist(tmp_path):
  _write_split(tmp_path, 'train', *_random_split(2, 0), style='emnist')
  images, _ = _random_split(2, 0)
  _write(tmp_path / 'emnist-letters-train-images-idx3-ubyte.gz', _idx_bytes(images), gz=True)
  with pytest.raises(UserError, match='several train images files'):
    idx.load_idx_split(tmp_path, 'train')


def test_load_idx_split_count_mismatch(tmp_path):
  images, labels = _random_split(5, 0)
  _write_split(tmp_path, 'train', images, labels[:4])
  with pytest.raises(UserError, match='has 5 images but .* has 4 labels'):
    idx.load_idx_split(tmp_path, 'train')


def test_load_idx_split_bad_split_and_bad_dtype(tmp_path):
  with pytest.raises(UserError, match='unknown IDX split'):
    idx.load_idx_split(tmp_path, 'validation')
  _write(tmp_path / 'train-images-idx3-ubyte', _idx_bytes(np.zeros((2, 3, 3), np.float32)))
  _write(tmp_path / 'train-labels-idx1-ubyte', _idx_bytes(np.zeros((2,), np.uint8)))
  with pytest.raises(UserError, match='expected uint8 images'):
    idx.load_idx_split(tmp_path, 'train')


def test_load_images_idx_paper_splits(tmp_path):
  train = _random_split(10, 0, 4, 4)
  test = _random_split(3, 1, 4, 4)
  _write_split(tmp_path, 'train', *train)
  _write_split(tmp_path, 'test', *test)
  config = ml_collections.ConfigDict({'source': 'idx', 'name': 'mnist', 'dir': str(tmp_path), 'num_train': 7})
  tr = sources.load_images(config, 'train')
  va = sources.load_images(config, 'validation')
  te = sources.load_images(config, 'test')
  assert tr.name == 'mnist'
  np.testing.assert_array_equal(tr.images[..., 0], train[0][:7])
  np.testing.assert_array_equal(va.images[..., 0], train[0][7:])
  np.testing.assert_array_equal(va.labels, train[1][7:])
  np.testing.assert_array_equal(te.images[..., 0], test[0])
  config.num_train = 10
  assert sources.load_images(config, 'train').images.shape[0] == 10
  with pytest.raises(UserError, match=r'validation split .* is empty.*--config\.data\.num_train'):
    sources.load_images(config, 'validation')
  with pytest.raises(UserError, match='needs a folder'):
    sources.load_images(ml_collections.ConfigDict({'source': 'idx', 'name': '', 'dir': ''}), 'train')


# ---------------------------------------------------------------------------------------------
# TFDS (offline: mock_data, and a tiny data set prepared in tmp_path without TensorFlow)


@pytest.fixture
def no_network(monkeypatch):
  """Makes any network connection attempt fail at once."""

  def refuse(*args, **kwargs):
    raise OSError('network access attempted in a test')

  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket, 'getaddrinfo', refuse)


@pytest.fixture(scope='module')
def tiny_tfds_dir(tmp_path_factory):
  """Prepares a tiny array_record TFDS data set (12 train, 4 test RGB images) in a temporary folder.

  Image values encode the example index i (train: i, test: 100 + i) and labels are i % 3, since
  TFDS shuffles examples when preparing. Images are given as PNG bytes, because encoding numpy
  images needs TensorFlow (not installed) while writing pre-encoded bytes does not. The builder
  class is not registered, so reading goes through TFDS's read-only path, as for a data set
  prepared elsewhere and copied here.
  """
  tfds = pytest.importorskip('tensorflow_datasets')
  from PIL import Image  # pylint: disable=g-import-not-at-top

  def png(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 5, 3), value, np.uint8)).save(buffer, format='PNG')
    return buffer.getvalue()

  class GanJaxTinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              'image': tfds.features.Image(shape=(4, 5, 3)),
              'label': tfds.features.ClassLabel(num_classes=3),
          }),
      )

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(12, 0), 'test': self._generate_examples(4, 100)}

    def _generate_examples(self, n, offset):
      for i in range(n):
        yield i, {'image': png(offset + i), 'label': i % 3}

  data_dir = tmp_path_factory.mktemp('tfds')
  GanJaxTinyImages(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  return str(data_dir)


def test_load_tfds_mock_mnist(no_network):
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=9, policy=tfds.testing.MockPolicy.USE_CODE):
    images, labels = tfds_source.load_tfds('mnist', 'train')
    assert images.shape == (9, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (9,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 10
    # mock_data ignores slicing (the source always has num_examples), but the syntax must pass through.
    images, _ = tfds_source.load_tfds('mnist', 'train[0:5]')
    assert images.shape[1:] == (28, 28, 1)
    images, labels = tfds_source.load_tfds('cifar10', 'test', data_dir='')
    assert images.shape == (9, 32, 32, 3) and labels.dtype == np.int32


def test_load_tfds_prepared_dataset(tiny_tfds_dir, no_network):
  images, labels = tfds_source.load_tfds('gan_jax_tiny_images', 'train', data_dir=tiny_tfds_dir)
  assert images.shape == (12, 4, 5, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int32
  values = images[:, 0, 0, 0].astype(np.int32)
  assert sorted(values) == list(range(12))
  assert (images == images[:, :1, :1, :1]).all()  # each image is constant
  np.testing.assert_array_equal(labels, values % 3)
  part, _ = tfds_source.load_tfds('gan_jax_tiny_images', 'train[2:5]', data_dir=tiny_tfds_dir)
  np.testing.assert_array_equal(part, images[2:5])
  assert tfds_source.tfds_num_examples('gan_jax_tiny_images', 'test', tiny_tfds_dir) == 4


def test_tfds_split_streams_record_by_record(tiny_tfds_dir, no_network):
  """`data.pipeline='stream'` reads a TFDS split through `tfds.data_source`, one record at a time: the
  same examples and labels as the loaded split, in the stream's order."""
  config = ml_collections.ConfigDict(
      {'source': 'tfds', 'name': 'gan_jax_tiny_images', 'dir': tiny_tfds_dir, 'num_train': 8}
  )
  opened = sources.open_records(config)
  train = sources.load_images(config, 'train')
  records = opened.records
  assert len(records) == 8 and records.has_labels and records.example_shape == (4, 5, 3)
  for i in range(8):
    image, label = records[i]
    np.testing.assert_array_equal(image, train.images[i])
    assert label == train.labels[i]
  order = stream.StreamOrder(8, 4, seed=0)
  images, labels = stream.take(stream.make_iterator(records, order, workers=2), 2)
  chosen = np.concatenate([order.batch_records(0), order.batch_records(1)])
  assert sorted(chosen) == list(range(8))  # one epoch: every record once
  np.testing.assert_array_equal(images.reshape(8, 4, 5, 3), train.images[chosen])
  np.testing.assert_array_equal(labels.reshape(8), train.labels[chosen])


def test_load_images_tfds_paper_splits(tiny_tfds_dir, no_network):
  config = ml_collections.ConfigDict(
      {'source': 'tfds', 'name': 'gan_jax_tiny_images', 'dir': tiny_tfds_dir, 'num_train': 8}
  )
  train = sources.load_images(config, 'train')
  validation = sources.load_images(config, 'validation')
  test = sources.load_images(config, 'test')
  assert train.images.shape == (8, 4, 5, 3) and validation.images.shape == (4, 4, 5, 3)
  assert train.name == 'gan_jax_tiny_images'
  both = np.concatenate([train.images, validation.images])[:, 0, 0, 0]
  assert sorted(both) == list(range(12))
  assert sorted(test.images[:, 0, 0, 0]) == [100, 101, 102, 103]
  config.num_train = 50000
  assert sources.load_images(config, 'train').images.shape[0] == 12
  with pytest.raises(UserError, match='validation split .* is empty'):
    sources.load_images(config, 'validation')


def test_load_tfds_errors(tiny_tfds_dir, tmp_path, no_network):
  pytest.importorskip('tensorflow_datasets')
  unknown = r"unknown TFDS data set 'no_such_dataset_xyz'.*mnist.*tfds\.list_builders"
  with pytest.raises(UserError, match=unknown):
    tfds_source.load_tfds('no_such_dataset_xyz', 'train', data_dir=str(tmp_path))
  start = time.time()
  with pytest.raises(UserError) as info:
    tfds_source.load_tfds('mnist', 'train', data_dir=str(tmp_path / 'empty'))
  assert time.time() - start < 20
  message = str(info.value)
  assert 'not prepared' in message and 'tfds build mnist' in message and '--config.data.source=idx' in message
  assert '\n' not in message
  with pytest.raises(UserError, match=r"cannot read split 'validation'.*Unknown split"):
    tfds_source.load_tfds('gan_jax_tiny_images', 'validation', data_dir=tiny_tfds_dir)
  with pytest.raises(UserError, match='namespaced'):
    tfds_source.load_tfds('huggingface:mnist', 'train')
  with pytest.raises(UserError, match='no TFDS data set name'):
    sources.load_images(ml_collections.ConfigDict({'source': 'tfds', 'name': '', 'dir': ''}), 'test')


# ---------------------------------------------------------------------------------------------
# sklearn digits


def test_digits_splits():
  config = ml_collections.ConfigDict({'source': 'digits', 'name': '', 'dir': ''})
  train = sources.load_images(config, 'train')
  validation = sources.load_images(config, 'validation')
  test = sources.load_images(config, 'test')
  assert train.images.shape == (1500, 8, 8, 1) and validation.images.shape == (297, 8, 8, 1)
  assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32 and train.name == 'digits'
  assert train.images.min() == 0 and train.images.max() == 255
  assert set(np.unique(train.images)) <= {int(round(v * 255 / 16)) for v in range(17)}
  np.testing.assert_array_equal(test.images, validation.images)
  np.testing.assert_array_equal(test.labels, validation.labels)
  again = sources.load_images(config, 'train')
  np.testing.assert_array_equal(again.images, train.images)
  np.testing.assert_array_equal(again.labels, train.labels)
  assert set(train.labels) == set(range(10))
  # train and validation are disjoint and cover the 1797 examples (no duplicate images expected).
  rows = {row.tobytes() for row in np.concatenate([train.images, validation.images])}
  assert len(rows) > 1700


def test_load_images_bad_source_and_split():
  with pytest.raises(UserError, match='unknown data source .*idx, tfds, digits, toy'):
    sources.load_images(ml_collections.ConfigDict({'source': 'imagenet'}), 'train')
  with pytest.raises(UserError, match='unknown split'):
    sources.load_images(ml_collections.ConfigDict({'source': 'digits'}), 'valid')
  with pytest.raises(ValueError, match='toy'):
    sources.load_images(ml_collections.ConfigDict({'source': 'toy'}), 'train')
  with pytest.raises(UserError, match='num_train must be a positive integer'):
    sources.load_images({'source': 'idx', 'dir': '/nonexistent', 'num_train': 0}, 'train')


# ---------------------------------------------------------------------------------------------
# Preprocessing and sharding


def test_to_float_ranges():
  x = np.array([0, 1, 127, 128, 255], np.uint8)
  unit = sources.to_float(x, 'unit')
  symmetric = sources.to_float(x, 'symmetric')
  assert unit.dtype == np.float32 and symmetric.dtype == np.float32
  assert unit[0] == 0.0 and unit[-1] == 1.0
  assert symmetric[0] == -1.0 and symmetric[-1] == 1.0
  np.testing.assert_allclose(unit, x / 255.0, rtol=1e-6)
  np.testing.assert_allclose(symmetric, x / 127.5 - 1.0, atol=1e-6)
  with pytest.raises(UserError, match='unknown pixel scale'):
    sources.to_float(x, 'zero_one')
  with pytest.raises(ValueError):
    sources.to_float(x.astype(np.float32), 'unit')


def test_global_contrast_normalize_matches_pylearn2_formula():
  rng = np.random.RandomState(0)
  x = rng.randint(0, 256, size=(6, 4, 4, 3)).astype(np.float32)
  x[2] = 7.0  # constant example: zero norm after centring -> divisor replaced by 1
  flat = x.reshape(6, -1).astype(np.float64)
  centred = flat - flat.mean(axis=1)[:, None]
  norms = np.sqrt((centred**2).sum(axis=1)) / 55.0
  norms[norms < 1e-8] = 1.0
  expected = (centred / norms[:, None]).reshape(x.shape)
  out = sources.global_contrast_normalize(x)
  assert out.shape == x.shape and out.dtype == np.float32
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out[2], 0.0)
  norms_out = np.sqrt((out.reshape(6, -1).astype(np.float64) ** 2).sum(axis=1))
  np.testing.assert_allclose(np.delete(norms_out, 2), 55.0, rtol=1e-5)
  # uint8 input works, use_std variant
  out_u8 = sources.global_contrast_normalize(x.astype(np.uint8), scale=1.0, use_std=True, sqrt_bias=10.0)
  std = np.sqrt(10.0 + centred.var(axis=1, ddof=1))
  np.testing.assert_allclose(out_u8.reshape(6, -1), centred / std[:, None], rtol=1e-5, atol=1e-6)


def test_apply_layout():
  x = np.zeros((5, 4, 3, 2), np.float32)
  assert sources.apply_layout(x, 'flat').shape == (5, 24)
  assert sources.apply_layout(x, 'nhwc') is x
  with pytest.raises(UserError, match='unknown data layout'):
    sources.apply_layout(x, 'nchw')


def test_check_batch_size():
  sources.check_batch_size(100, 100, 'train')
  expected = r'batch_size 128 is larger than the 100 examples of split validation; lower --config\.batch_size'
  with pytest.raises(UserError, match=expected):
    sources.check_batch_size(100, 128, 'validation')
  with pytest.raises(UserError, match='must be positive'):
    sources.check_batch_size(100, 0, 'train')
