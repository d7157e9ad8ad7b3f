"""Writing files all or nothing: a reader sees the old file or the new one, never half of either.

Each writer puts the bytes in a temporary file beside the target, then renames it over the target
(`os.replace` is atomic on POSIX filesystems). If writing fails (a full disk, no permission), the
temporary file is removed and the target is left as it was.
"""

import json
import os

from gan_jax.errors import UserError


def atomic_write_bytes(path: str, payload: bytes) -> str:
  """Writes `payload` to `path` atomically; returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def atomic_write_text(path: str, text: str) -> str:
  """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
  return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj, indent: int = 1) -> str:
  """Writes `obj` as JSON to `path` atomically; returns `path`."""
  return atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_copy(src: str, dst: str) -> str:
  """Copies file `src` to `dst` atomically; returns `dst`."""
  with open(src, "rb") as f:
    return atomic_write_bytes(dst, f.read())


def atomic_savefig(fig, path: str) -> str:
  """Saves a matplotlib figure to `path` (its format from the extension) atomically and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp{os.getpid()}{ext}"
  try:
    fig.savefig(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  finally:
    plt.close(fig)
  return path


def check_destination(path: str, flag: str, folder: bool = False) -> None:
  """Raises one `UserError` line when a command's output `path` (from `flag`) cannot be made: a file
  on its way (a parent that is a file), or a folder where a file goes (or a file where a folder goes,
  `folder=True`). Commands call it before long work, so a bad path fails at once."""
  path = os.path.abspath(path)
  if os.path.exists(path):
    if os.path.isdir(path) != folder:
      raise UserError(f"{flag}={path} is {'a file' if folder else 'a folder'}; pass a "
                      f"{'folder' if folder else 'file'} path")
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(f"{flag}={path} cannot be made: {parent} is a file; pass another path")
