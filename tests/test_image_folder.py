"""Tests for the image-folder source (`gan_jax.data.folder`, source 'folder') on generated PNGs and JPEGs."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import load_config
from gan_jax.data import folder
from gan_jax.data import pipeline
from gan_jax.data import sources
from gan_jax.errors import UserError


def _save(path, array, mode=None, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path, **kwargs)
  return path


def _random_rgb(rng, h=6, w=6):
  return rng.randint(0, 256, (h, w, 3)).astype(np.uint8)


@pytest.fixture
def classes(tmp_path):
  """cat/ (3 PNGs, one nested a level deeper) and dog/ (2 PNGs) of 6x6 RGB images."""
  rng = np.random.RandomState(0)
  images = {}
  for rel in ('cat/a.png', 'cat/b.png', 'cat/more/c.png', 'dog/a.png', 'dog/z.PNG'):
    images[rel] = _random_rgb(rng)
    _save(os.path.join(tmp_path, 'data', *rel.split('/')), images[rel])
  (tmp_path / 'data' / 'dog' / 'notes.txt').write_text('not an image')
  (tmp_path / 'data' / '.hidden').mkdir()
  _save(os.path.join(tmp_path, 'data', '.hidden', 'x.png'), _random_rgb(rng, 3, 3))  # ignored
  return str(tmp_path / 'data'), images


def test_class_subfolders_give_labels(classes):
  directory, images = classes
  out = folder.load_folder(directory)
  order = sorted(images, key=lambda rel: rel.replace('/', os.sep))
  assert out.files == tuple(rel.replace('/', os.sep) for rel in order)
  assert out.class_names == ('cat', 'dog')
  np.testing.assert_array_equal(out.labels, [0, 0, 0, 1, 1])
  assert out.labels.dtype == np.int32 and out.images.dtype == np.uint8 and out.images.shape == (5, 6, 6, 3)
  for i, rel in enumerate(order):
    np.testing.assert_array_equal(out.images[i], images[rel])  # PNG is lossless, no resize at 0


def test_flat_folder_has_no_labels(tmp_path):
  rng = np.random.RandomState(1)
  for name in ('b.png', 'a.jpg', 'c.jpeg'):
    _save(str(tmp_path / name), _random_rgb(rng, 8, 8), quality=95)
  out = folder.load_folder(tmp_path)
  assert out.labels is None and out.class_names is None and out.files == ('a.jpg', 'b.png', 'c.jpeg')
  assert out.images.shape == (3, 8, 8, 3)


def test_centre_crop_then_resize(tmp_path):
  wide = np.zeros((20, 40, 3), np.uint8)  # height 20, width 40: left, middle and right thirds differ
  wide[:, :10] = 50
  wide[:, 10:30] = 200
  wide[:, 30:] = 90
  _save(str(tmp_path / 'wide.png'), wide)
  out = folder.load_folder(tmp_path, resolution=20)
  np.testing.assert_array_equal(out.images[0], wide[:, 10:30])  # the centred square, not resized
  small = folder.load_folder(tmp_path, resolution=10).images
  assert small.shape == (1, 10, 10, 3) and np.all(np.abs(small.astype(int) - 200) <= 1)
  tall = np.full((30, 10, 3), 7, np.uint8)
  tall[10:20] = 250
  _save(str(tmp_path / 'tall.png'), tall)
  out = folder.load_folder(tmp_path, resolution=10)
  np.testing.assert_array_equal(out.images[0], tall[10:20])  # files sorted: tall.png, wide.png
  assert out.images.shape == (2, 10, 10, 3)


def test_grey_and_rgb_modes(tmp_path):
  rng = np.random.RandomState(2)
  rgb = _random_rgb(rng)
  grey = rng.randint(0, 256, (6, 6)).astype(np.uint8)
  _save(str(tmp_path / 'a_rgb.png'), rgb)
  _save(str(tmp_path / 'b_grey.png'), grey)
  rgba = np.dstack([rgb, np.full((6, 6), 128, np.uint8)])
  _save(str(tmp_path / 'c_rgba.png'), rgba)
  Image.fromarray(grey).convert('P').save(tmp_path / 'd_palette.png')
  one = folder.load_folder(tmp_path, channels=1)
  assert one.images.shape == (4, 6, 6, 1)
  np.testing.assert_array_equal(one.images[0, ..., 0], np.asarray(Image.fromarray(rgb).convert('L')))
  np.testing.assert_array_equal(one.images[1, ..., 0], grey)
  three = folder.load_folder(tmp_path, channels=3)
  np.testing.assert_array_equal(three.images[1], np.repeat(grey[..., None], 3, axis=2))
  np.testing.assert_array_equal(three.images[2], rgb)  # alpha dropped


def test_jpeg_exif_orientation_is_applied(tmp_path):
  array = np.zeros((4, 8, 3), np.uint8)  # 8 wide, 4 high
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 CW to display"
  Image.fromarray(array).save(tmp_path / 'photo.jpg', exif=exif.tobytes())
  assert folder.load_folder(tmp_path).images.shape == (1, 8, 4, 3)


def _bad_folder(tmp_path):
  rng = np.random.RandomState(3)
  for name in ('a.png', 'c.png', 'e.png'):
    _save(str(tmp_path / name), _random_rgb(rng))
  (tmp_path / 'b.png').write_bytes(b'not a png at all')
  good = (tmp_path / 'a.png').read_bytes()
  (tmp_path / 'd.png').write_bytes(good[:len(good) // 2])  # truncated
  return str(tmp_path)


def test_unreadable_file_is_an_error_naming_it(tmp_path):
  directory = _bad_folder(tmp_path)
  with pytest.raises(UserError) as info:
    folder.load_folder(directory)
  message = str(info.value)
  assert os.path.join(directory, 'b.png') in message and 'bad_files=skip' in message and '\n' not in message


def test_unreadable_files_are_skipped_and_counted(tmp_path):
  directory = _bad_folder(tmp_path)
  out = folder.load_folder(directory, bad_files='skip')
  assert out.files == ('a.png', 'c.png', 'e.png') and out.images.shape == (3, 6, 6, 3)
  assert [rel for rel, _ in out.skipped] == ['b.png', 'd.png']


def test_sixteen_bit_and_wrong_size(tmp_path):
  rng = np.random.RandomState(4)
  _save(str(tmp_path / 'a.png'), _random_rgb(rng))
  Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(tmp_path / 'b.png')  # 16-bit grey
  with pytest.raises(UserError, match=r'b\.png: it has I;16.*16-bit or float'):
    folder.load_folder(tmp_path)
  os.remove(tmp_path / 'b.png')
  _save(str(tmp_path / 'c.png'), _random_rgb(rng, 7, 9))
  with pytest.raises(UserError, match=r'c\.png: it is 9x7 but a\.png is 6x6; set --config\.data\.resolution'):
    folder.load_folder(tmp_path)
  assert folder.load_folder(tmp_path, bad_files='skip').files == ('a.png',)
  assert folder.load_folder(tmp_path, resolution=6).images.shape == (2, 6, 6, 3)


def test_empty_missing_and_mixed_folders(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError, match='has no PNG or JPEG images'):
    folder.load_folder(tmp_path / 'empty')
  (tmp_path / 'text').mkdir()
  (tmp_path / 'text' / 'readme.txt').write_text('x')
  with pytest.raises(UserError, match=r'no PNG or JPEG images \(1 files with other extensions ignored\)'):
    folder.load_folder(tmp_path / 'text')
  with pytest.raises(UserError, match='does not exist'):
    folder.load_folder(tmp_path / 'nope')
  rng = np.random.RandomState(5)
  _save(str(tmp_path / 'mixed' / 'top.png'), _random_rgb(rng))
  _save(str(tmp_path / 'mixed' / 'cls' / 'x.png'), _random_rgb(rng))
  with pytest.raises(UserError, match='both at its top level'):
    folder.load_folder(tmp_path / 'mixed')
  (tmp_path / 'allbad').mkdir()
  (tmp_path / 'allbad' / 'x.png').write_bytes(b'junk')
  with pytest.raises(UserError, match='no usable image: all 1 were skipped'):
    folder.load_folder(tmp_path / 'allbad', bad_files='skip')


@pytest.mark.parametrize('kwargs, message', [
    ({'resolution': -1}, 'resolution must be a non-negative integer'),
    ({'resolution': 2.5}, 'resolution must be a non-negative integer'),
    ({'channels': 2}, 'channels must be 1 .grey. or 3'),
    ({'bad_files': 'ignore'}, "bad_files must be 'error' or 'skip'"),
])
def test_bad_options(classes, kwargs, message):
  with pytest.raises(UserError, match=message):
    folder.load_folder(classes[0], **kwargs)


def _folder_config(directory, **overrides):
  config = {'source': 'folder', 'name': '', 'dir': directory, 'num_train': 3, 'resolution': 0, 'channels': 3,
            'bad_files': 'error'}
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def test_splits_through_load_images(classes):
  directory, _ = classes
  config = _folder_config(directory)
  everything = folder.load_folder(directory)
  train = sources.load_images(config, 'train')
  validation = sources.load_images(config, 'validation')
  test = sources.load_images(config, 'test')
  assert train.name == 'data' and train.class_names == ('cat', 'dog')
  assert train.images.shape[0] == 3 and validation.images.shape[0] == 2
  np.testing.assert_array_equal(test.images, validation.images)
  # Together, one fixed permutation of the whole folder, labels following their images.
  order = np.random.RandomState(sources.FOLDER_SEED).permutation(5)
  np.testing.assert_array_equal(np.concatenate([train.images, validation.images]), everything.images[order])
  np.testing.assert_array_equal(np.concatenate([train.labels, validation.labels]), everything.labels[order])
  config.num_train = 5
  with pytest.raises(UserError, match='validation split .* is empty'):
    sources.load_images(config, 'validation')
  with pytest.raises(UserError, match='folder source needs a folder'):
    sources.load_images(_folder_config(''), 'train')


def test_build_data_carries_labels_and_trains(tmp_path):
  """The digits config (smoke) on a folder of 8x8 grey images in two classes."""
  from gan_jax import train  # pylint: disable=g-import-not-at-top

  rng = np.random.RandomState(6)
  for c in ('zero', 'one'):
    for i in range(40):
      _save(str(tmp_path / 'data' / c / f'{i:02d}.png'), _random_rgb(rng, 12, 16))
  config = load_config('digits', 'smoke')
  config.data.source, config.data.dir, config.data.num_train = 'folder', str(tmp_path / 'data'), 64
  config.data.resolution, config.data.channels = 8, 1
  config.batch_size, config.num_steps, config.steps_per_dispatch = 16, 4, 2
  config.log_every, config.sample_every, config.checkpoint_every = 2, 4, 4
  config.parallel.mode = 'none'
  data = pipeline.build_data(config)
  assert data.arrays['train'].shape == (64, 64) and data.image_shape == (8, 8, 1)
  assert data.labels.shape == (64,) and set(data.labels) == {0, 1} and data.class_names == ('one', 'zero')
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['step'] == 4 and np.isfinite(summary['d_loss'])


def test_a_data_folder_under_home_may_be_written_with_a_tilde(classes, monkeypatch):
  """`--config.data.dir=~/photos`: the shell does not expand `~` after `=`, so the data layer does."""
  directory, _ = classes
  monkeypatch.setenv('HOME', os.path.dirname(directory))
  config = _folder_config(os.path.join('~', os.path.basename(directory)))
  np.testing.assert_array_equal(sources.load_images(config, 'train').images,
                                sources.load_images(_folder_config(directory), 'train').images)
