"""Reads a folder of PNG and JPEG images into uint8 arrays, with labels from class sub-folders.

  FOLDER/*.png                      unlabelled images
  FOLDER/CLASS/**/*.jpg             one class per sub-folder of FOLDER (labels 0.. in sorted order)

Every image is decoded with Pillow, turned upright by its EXIF orientation (photos), converted to
grey ('L', `channels=1`) or RGB (`channels=3`), then, if `resolution` is set, centre-cropped to a
square and resized to `resolution` x `resolution` (bicubic, antialiased when shrinking). With
`resolution=0` the images are kept as they are and must all have the same size.

A file that cannot be used (not an image, truncated, 16-bit or float pixels, a different size when
`resolution=0`) is, with `bad_files='error'`, one `UserError` line naming it; with `bad_files='skip'`
it is left out, and the number left out is logged with the first few names. Files with other
extensions and hidden files (`.name`) are ignored.
"""

import concurrent.futures
import dataclasses
import os
import time

import numpy as np
from absl import logging

from gan_jax.errors import UserError

EXTENSIONS = ('.png', '.jpg', '.jpeg')
BAD_FILES = ('error', 'skip')
CHANNELS = (1, 3)
_MAX_WORKERS = 8  # decoding threads (Pillow releases the GIL while decoding)


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  """The images of a folder, in sorted file order.

  Attributes:
    images: uint8 [N, H, W, C].
    labels: int32 [N] (index into `class_names`), or None for a folder without class sub-folders.
    class_names: the class sub-folders' names, sorted, or None.
    files: the images' paths relative to the folder, in the order of `images`.
    skipped: (relative path, reason) of each file left out under `bad_files='skip'`.
  """

  images: np.ndarray
  labels: np.ndarray | None
  class_names: tuple | None
  files: tuple
  skipped: tuple


class BadImage(Exception):
  """An image file that cannot be used; the message says why."""


def list_images(directory: str) -> tuple[list, tuple | None]:
  """The image files under `directory` and the class names, if the images are in sub-folders.

  Returns:
    (relative paths sorted, class names sorted or None).

  Raises:
    UserError: a missing folder, a folder without images, or images both at the top level and in
      sub-folders (whether they are labelled would be ambiguous).
  """
  if not os.path.isdir(directory):
    what = 'is a file, not a folder' if os.path.exists(directory) else 'does not exist'
    raise UserError(f'image folder {directory} {what}; pass --config.data.dir=FOLDER holding PNG or JPEG '
                    'images')
  files, others = [], 0
  for root, dirs, names in os.walk(directory, followlinks=True):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    for name in sorted(names):
      if name.startswith('.'):
        continue
      if os.path.splitext(name)[1].lower() in EXTENSIONS:
        files.append(os.path.relpath(os.path.join(root, name), directory))
      else:
        others += 1
  if not files:
    ignored = f' ({others} files with other extensions ignored)' if others else ''
    raise UserError(f'image folder {directory} has no PNG or JPEG images{ignored}; put .png/.jpg/.jpeg '
                    'files in it (or in one sub-folder per class), or pass another --config.data.dir')
  files.sort()
  top = [f for f in files if os.sep not in f]
  nested = [f for f in files if os.sep in f]
  if top and nested:
    raise UserError(f'image folder {directory} has images both at its top level ({top[0]}) and in '
                    f'sub-folders ({nested[0]}); put every image in a class sub-folder, or all at the top '
                    'level')
  class_names = tuple(sorted({f.split(os.sep, 1)[0] for f in nested})) if nested else None
  return files, class_names


def unusable(path: str, reason) -> UserError:
  """The error for an image that cannot be used under `bad_files='error'`."""
  return UserError(f'cannot use image {path}: {reason}; fix or remove it, or pass --config.data.bad_files=skip')


def labels_of(files, class_names) -> np.ndarray | None:
  """int32 labels of `files` (paths relative to the folder) from their class sub-folder, or None."""
  if class_names is None:
    return None
  index = {name: i for i, name in enumerate(class_names)}
  return np.asarray([index[rel.split(os.sep, 1)[0]] for rel in files], np.int32)


def load_image(path: str, resolution: int, channels: int) -> np.ndarray:
  """One image as uint8 [H, W, channels], cropped and resized if `resolution` > 0.

  Raises:
    BadImage: the file cannot be decoded or has pixels that cannot be converted faithfully.
  """
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top  (only this source needs it)

  try:
    with Image.open(path) as image:
      image.load()
      if image.mode in ('I', 'F') or image.mode.startswith('I;'):
        # Converting 16-bit or float pixels to 8 bits clips them; the data would silently change.
        raise BadImage(f'it has {image.mode} (16-bit or float) pixels; save it with 8 bits per channel')
      image = ImageOps.exif_transpose(image)
      image = image.convert('L' if channels == 1 else 'RGB')
  except BadImage:
    raise
  except Exception as e:  # pylint: disable=broad-except  # Pillow raises many types for broken files
    reason = ' '.join(str(e).split()) or type(e).__name__
    raise BadImage(f'it is not a readable image ({reason})') from None
  if resolution:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != resolution:
      image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
  array = np.asarray(image, dtype=np.uint8)
  return array[..., np.newaxis] if array.ndim == 2 else array


def check_options(resolution, channels, bad_files) -> None:
  if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 0:
    raise UserError('config.data.resolution must be a non-negative integer (0: keep the images\' size), '
                    f'got {resolution!r}; fix --config.data.resolution')
  if channels not in CHANNELS:
    raise UserError(f'config.data.channels must be 1 (grey) or 3 (RGB), got {channels!r}; fix '
                    '--config.data.channels')
  if bad_files not in BAD_FILES:
    raise UserError(f"config.data.bad_files must be 'error' or 'skip', got {bad_files!r}; fix "
                    '--config.data.bad_files')


def load_folder(directory: str | os.PathLike, resolution: int = 0, channels: int = 3,
                bad_files: str = 'error') -> ImageFolder:
  """Reads every PNG/JPEG image under `directory` (see the module docstring).

  Args:
    directory: the image folder.
    resolution: crop to a centred square and resize to this size; 0 keeps the images' size (they
      must then all be the same).
    channels: 1 for grey, 3 for RGB.
    bad_files: 'error' (a file that cannot be used is a UserError naming it) or 'skip' (left out,
      counted and logged).

  Returns:
    An `ImageFolder`.

  Raises:
    UserError: bad options, a missing or empty folder, a bad file under 'error', or no usable image.
  """
  directory = os.fspath(directory)
  check_options(resolution, channels, bad_files)
  files, class_names = list_images(directory)
  t0 = time.perf_counter()

  def decode(rel):
    try:
      return load_image(os.path.join(directory, rel), int(resolution), channels)
    except BadImage as e:
      return e

  images, kept, skipped, shape = None, [], [], None
  workers = min(_MAX_WORKERS, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    # map keeps the files' order, so the first bad file reported is the first in sorted order.
    for rel, result in zip(files, pool.map(decode, files)):
      if not isinstance(result, BadImage) and shape is not None and result.shape != shape:
        result = BadImage(f'it is {result.shape[1]}x{result.shape[0]} but {kept[0]} is '
                           f'{shape[1]}x{shape[0]}; set --config.data.resolution=SIZE to crop and resize '
                           'every image')
      if isinstance(result, BadImage):
        if bad_files == 'error':
          pool.shutdown(wait=True, cancel_futures=True)
          raise unusable(os.path.join(directory, rel), result)
        skipped.append((rel, str(result)))
        continue
      if images is None:
        shape = result.shape
        images = np.empty((len(files),) + shape, np.uint8)
      images[len(kept)] = result
      kept.append(rel)
  if skipped:
    first = '; '.join(f'{rel}: {why}' for rel, why in skipped[:3])
    logging.warning('skipped %d of %d images in %s that could not be used (%s%s)', len(skipped), len(files),
                    directory, first, '; ...' if len(skipped) > 3 else '')
  if not kept:
    raise UserError(f'image folder {directory} has no usable image: all {len(files)} were skipped (first: '
                    f'{skipped[0][0]}: {skipped[0][1]})')
  images = images[:len(kept)] if len(kept) < len(files) else images
  labels = labels_of(kept, class_names)
  logging.info('read %d images (%s) from %s in %.1f s', len(kept), 'x'.join(map(str, images.shape[1:])),
               directory, time.perf_counter() - t0)
  return ImageFolder(images, labels, class_names, tuple(kept), tuple(skipped))
