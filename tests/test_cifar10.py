"""Tests for the CIFAR-10 reader (`gan_jax.data.cifar10`, source 'cifar10') on generated archives.

The archives have the layout and format of `cifar-10-python.tar.gz` (a `cifar-10-batches-py/` folder
of pickled dicts with b'data' uint8 [N, 3072] and b'labels'), with a few images per batch.
"""

import gzip
import io
import os
import pickle
import tarfile

import ml_collections
import numpy as np
import pytest

from conftest import load_config
from gan_jax.data import cifar10
from gan_jax.data import pipeline
from gan_jax.data import sources
from gan_jax.errors import UserError

PER_BATCH = 5  # images per generated batch (the real ones hold 10,000)


def _rows(images: np.ndarray) -> np.ndarray:
  """NHWC uint8 -> CIFAR-10 rows [N, 3072]: 1024 red, then green, then blue values."""
  return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _batches(seed=0, per_batch=PER_BATCH) -> dict:
  """batch name -> (NHWC images, labels) of random data."""
  rng = np.random.RandomState(seed)
  out = {}
  for name in cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,):
    out[name] = (rng.randint(0, 256, (per_batch, 32, 32, 3)).astype(np.uint8),
                 rng.randint(0, 10, per_batch).astype(np.int64))
  return out


def _pickled(images, labels, protocol=2, keys=(b'data', b'labels')) -> bytes:
  batch = {keys[0]: _rows(images), keys[1]: [int(v) for v in labels], b'batch_label': b'generated'}
  return pickle.dumps(batch, protocol=protocol)


def _write_archive(path, batches, protocol=2, skip=(), replace=None) -> str:
  """A .tar.gz shaped like cifar-10-python.tar.gz; `replace` maps batch name -> raw bytes."""
  replace = replace or {}
  with tarfile.open(path, 'w:gz') as tar:
    members = dict(batches)
    for name in list(cifar10.TRAIN_BATCHES) + ['readme.html', cifar10.TEST_BATCH, 'batches.meta']:
      if name in skip:
        continue
      if name in replace:
        raw = replace[name]
      elif name in members:
        raw = _pickled(*members[name], protocol=protocol)
      else:
        raw = pickle.dumps({b'label_names': [n.encode() for n in cifar10.CLASS_NAMES]}, protocol=2)
      info = tarfile.TarInfo(f'{cifar10.FOLDER}/{name}')
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))
  return str(path)


def _write_folder(folder, batches) -> str:
  os.makedirs(folder, exist_ok=True)
  for name, (images, labels) in batches.items():
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(_pickled(images, labels))
  return str(folder)


@pytest.fixture
def archive_dir(tmp_path):
  batches = _batches()
  _write_archive(tmp_path / cifar10.ARCHIVE, batches)
  return str(tmp_path), batches


def _expected_train(batches):
  images = np.concatenate([batches[n][0] for n in cifar10.TRAIN_BATCHES])
  labels = np.concatenate([batches[n][1] for n in cifar10.TRAIN_BATCHES])
  return images, labels


def test_archive_gives_the_batches_in_order_as_nhwc(archive_dir):
  directory, batches = archive_dir
  images, labels = cifar10.read_train(directory)
  want_images, want_labels = _expected_train(batches)
  assert images.dtype == np.uint8 and images.shape == (5 * PER_BATCH, 32, 32, 3) and images.flags.c_contiguous
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(images, want_images)
  np.testing.assert_array_equal(labels, want_labels)
  test_images, test_labels = cifar10.read_test(directory)
  np.testing.assert_array_equal(test_images, batches[cifar10.TEST_BATCH][0])
  np.testing.assert_array_equal(test_labels, batches[cifar10.TEST_BATCH][1])


def test_pixel_layout_matches_the_format():
  """Row r of an image: its first 1024 values are red, row-major; pixel (y, x) is value 32 * y + x."""
  image = np.zeros((1, 32, 32, 3), np.uint8)
  image[0, 0, 1, 0] = 11  # red at y=0, x=1
  image[0, 1, 0, 2] = 22  # blue at y=1, x=0
  row = _rows(image)[0]
  assert row[1] == 11 and row[2048 + 32] == 22
  images, _ = cifar10._parse_batch(_pickled(image, [3]), 'test')  # pylint: disable=protected-access
  np.testing.assert_array_equal(images, image)


def test_reference_splits_through_load_images(archive_dir):
  directory, batches = archive_dir
  config = ml_collections.ConfigDict({'source': 'cifar10', 'name': 'cifar10', 'dir': directory,
                                      'num_train': 4 * PER_BATCH})
  train = sources.load_images(config, 'train')
  validation = sources.load_images(config, 'validation')
  test = sources.load_images(config, 'test')
  # train = data_batch_1..4, validation = data_batch_5, test = test_batch (the reference split).
  first_four = [batches[f'data_batch_{i}'] for i in range(1, 5)]
  np.testing.assert_array_equal(train.images, np.concatenate([images for images, _ in first_four]))
  np.testing.assert_array_equal(train.labels, np.concatenate([labels for _, labels in first_four]))
  np.testing.assert_array_equal(validation.images, batches['data_batch_5'][0])
  np.testing.assert_array_equal(validation.labels, batches['data_batch_5'][1])
  np.testing.assert_array_equal(test.images, batches['test_batch'][0])
  assert train.name == 'cifar10' and train.class_names == cifar10.CLASS_NAMES
  config.num_train = 5 * PER_BATCH
  with pytest.raises(UserError, match=r'validation split .* is empty'):
    sources.load_images(config, 'validation')


def test_paper_configs_use_the_reference_split():
  assert cifar10.REFERENCE_NUM_TRAIN == 4 * 10_000
  for name in ('cifar10_fc', 'cifar10_conv'):
    config = load_config(name, '')
    assert (config.data.source, config.data.num_train, config.data.dir) == ('cifar10', 40_000, '')
    assert config.data.gcn and config.data.gcn_scale == 55.0
  assert load_config('cifar10_fc', '').batch_size == 100  # 40,000 / 100 = 400 batches an epoch


def test_every_way_to_point_at_the_data(tmp_path):
  batches = _batches(1)
  want = _expected_train(batches)[0]
  (tmp_path / 'a').mkdir()
  archive = _write_archive(tmp_path / 'a' / cifar10.ARCHIVE, batches)
  extracted = _write_folder(tmp_path / 'b' / cifar10.FOLDER, batches)
  for path in (archive, tmp_path / 'a', extracted, tmp_path / 'b'):
    np.testing.assert_array_equal(cifar10.read_train(path)[0], want)
  assert cifar10.locate(tmp_path / 'b') == ('folder', extracted)
  # With both, the extracted folder (faster) wins.
  _write_archive(tmp_path / 'b' / cifar10.ARCHIVE, _batches(2))
  np.testing.assert_array_equal(cifar10.read_train(tmp_path / 'b')[0], want)


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_pickle_protocols_and_str_keys(tmp_path, protocol):
  batches = _batches(3)
  _write_archive(tmp_path / cifar10.ARCHIVE, batches, protocol=protocol)
  np.testing.assert_array_equal(cifar10.read_train(tmp_path)[0], _expected_train(batches)[0])
  images, labels = cifar10._parse_batch(  # pylint: disable=protected-access
      _pickled(*batches['test_batch'], keys=('data', 'labels')), 'test')
  np.testing.assert_array_equal(images, batches['test_batch'][0])


def test_default_folder_and_missing_data(tmp_path, monkeypatch):
  monkeypatch.setenv('GAN_JAX_DATA', str(tmp_path / 'root'))
  config = ml_collections.ConfigDict({'source': 'cifar10', 'name': 'cifar10', 'dir': '', 'num_train': 40_000})
  with pytest.raises(UserError) as info:
    sources.load_images(config, 'train')
  message = str(info.value)
  assert str(tmp_path / 'root' / 'cifar10') in message and 'does not exist' in message
  assert '`python -m gan_jax.data.fetch cifar10`' in message and '\n' not in message
  (tmp_path / 'root' / 'cifar10').mkdir(parents=True)
  _write_archive(tmp_path / 'root' / 'cifar10' / cifar10.ARCHIVE, _batches())
  config.num_train = 4 * PER_BATCH
  assert sources.load_images(config, 'train').images.shape == (4 * PER_BATCH, 32, 32, 3)
  with pytest.raises(UserError, match=r'fetch cifar10 --dir=.*elsewhere'):
    cifar10.read_train(tmp_path / 'elsewhere')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError, match='holds neither cifar-10-python.tar.gz nor cifar-10-batches-py'):
    cifar10.read_train(tmp_path / 'empty')


def test_corrupt_and_truncated_archives(tmp_path):
  path = _write_archive(tmp_path / cifar10.ARCHIVE, _batches())
  with open(path, 'rb') as f:
    raw = f.read()
  cut = tmp_path / 'cut' / cifar10.ARCHIVE
  cut.parent.mkdir()
  cut.write_bytes(raw[:len(raw) // 2])
  with pytest.raises(UserError, match='corrupt or truncated archive'):
    cifar10.read_train(cut)
  junk = tmp_path / 'junk' / cifar10.ARCHIVE
  junk.parent.mkdir()
  junk.write_bytes(b'this is not a tar.gz file')
  with pytest.raises(UserError, match='corrupt or truncated archive') as info:
    cifar10.read_test(junk.parent)
  assert 'python -m gan_jax.data.fetch cifar10' in str(info.value) and '\n' not in str(info.value)
  gz_not_tar = tmp_path / 'gz' / cifar10.ARCHIVE
  gz_not_tar.parent.mkdir()
  gz_not_tar.write_bytes(gzip.compress(b'x' * 1000))
  with pytest.raises(UserError, match='corrupt or truncated archive'):
    cifar10.read_train(gz_not_tar)


def test_archive_without_a_batch(tmp_path):
  _write_archive(tmp_path / cifar10.ARCHIVE, _batches(), skip=('data_batch_5',))
  with pytest.raises(UserError, match='has no data_batch_5; expected the CIFAR-10 python archive'):
    cifar10.read_train(tmp_path)
  folder = _write_folder(tmp_path / 'x' / cifar10.FOLDER, {'data_batch_1': _batches()['data_batch_1']})
  with pytest.raises(UserError, match='has no data_batch_2'):
    cifar10.read_train(folder)


class _Exploit:
  """Unpickling this would run a shell command, were globals not restricted."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


@pytest.mark.parametrize('bad, message', [
    (lambda t: pickle.dumps({b'data': np.zeros((5, 1024), np.uint8), b'labels': [0] * 5}),
     r'holds uint8 data of shape \(5, 1024\); expected uint8 \[N, 3072\]'),
    (lambda t: pickle.dumps({b'data': np.zeros((5, 3072), np.float32), b'labels': [0] * 5}),
     'holds float32 data'),
    (lambda t: pickle.dumps({b'data': np.zeros((5, 3072), np.uint8), b'labels': [0] * 4}),
     'labels of shape'),
    (lambda t: pickle.dumps({b'data': np.zeros((5, 3072), np.uint8), b'fine_labels': [0] * 5}),
     r'has no data or labels \(keys'),
    (lambda t: pickle.dumps({b'data': np.zeros((5, 3072), np.uint8), b'labels': [99] * 5}),
     'labels outside 0..9'),
    (lambda t: pickle.dumps([1, 2, 3]), 'holds a list'),
    (lambda t: b'garbage', 'is not a CIFAR-10 batch'),
    (lambda t: pickle.dumps(_Exploit(t / 'pwned')), r'is not a CIFAR-10 batch \(UnpicklingError: unexpected'),
])
def test_bad_batches_are_one_line(tmp_path, bad, message):
  _write_archive(tmp_path / cifar10.ARCHIVE, _batches(), replace={'data_batch_3': bad(tmp_path)})
  with pytest.raises(UserError, match=message) as info:
    cifar10.read_train(tmp_path)
  assert 'data_batch_3' in str(info.value) and '\n' not in str(info.value)
  assert not (tmp_path / 'pwned').exists()


def test_build_data_and_a_few_training_steps(tmp_path):
  """The paper's fully connected CIFAR-10 config (smoke widths) on a generated archive."""
  from gan_jax import train  # pylint: disable=g-import-not-at-top

  batches = _batches(4, per_batch=8)
  _write_archive(tmp_path / cifar10.ARCHIVE, batches)
  config = load_config('cifar10_fc', 'smoke')
  config.data.dir, config.data.num_train = str(tmp_path), 32
  config.parallel.mode = 'none'
  data = pipeline.build_data(config)
  assert data.arrays['train'].shape == (32, 3072) and data.image_shape == (32, 32, 3)
  want_labels = np.concatenate([batches[f'data_batch_{i}'][1] for i in range(1, 5)])
  np.testing.assert_array_equal(data.labels, want_labels)
  assert data.class_names == cifar10.CLASS_NAMES
  assert pipeline.load_split(config.data, 'validation').shape == (8, 3072)
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['step'] == config.num_steps and np.isfinite(summary['d_loss'])
