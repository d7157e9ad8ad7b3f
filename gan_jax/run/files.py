"""Writing files all or nothing: a reader sees the old file or the new one, never half of either.

Each writer puts the bytes in a temporary file beside the target, then renames it over the target
(`os.replace` is atomic on POSIX filesystems). If writing fails (a full disk, no permission), the
temporary file is removed and the target is left as it was.
"""

import json
import os


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
