"""Downloads MNIST, Fashion-MNIST, KMNIST and CIFAR-10 from known mirrors, checked and resumable:
  python -m gan_jax.data.fetch NAME [NAME ...] [--dir=DIR] [--mirror=URL]
NAME is mnist, fashion_mnist, kmnist or cifar10; DIR defaults to $GAN_JAX_DATA/NAME, else
~/gan_jax_data/NAME (the folder the configs read); --mirror is a base URL tried first.

Each file is written to `DIR/.partial/FILE` and renamed to `DIR/FILE` only once its MD5 matches the
table below (the checksums torchvision lists for these files), so `DIR` never holds a half-written
or corrupt file. A transfer cut short is resumed with an HTTP Range request, on the same mirror and,
failing that, on the next one; an interrupted command run again resumes where it stopped. Mirrors
are tried in order: `--mirror` URLs first, then the data set's known mirrors. When every mirror
fails the error is one line that lists the URLs tried and how to put the files in place by hand.

Only the standard library's `urllib` talks to the network (proxies come from the usual
`http_proxy`/`https_proxy` variables); nothing else in gan_jax downloads data.
"""

import hashlib
import math
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import tqdm

from gan_jax.data import paths
from gan_jax.errors import UserError

# Data set -> file -> MD5. These are the checksums torchvision lists for the same files (its
# `MNIST.resources`, `FashionMNIST.resources`, `KMNIST.resources` and `CIFAR10.tgz_md5`).
MD5 = {
    'mnist': {
        'train-images-idx3-ubyte.gz': 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
        'train-labels-idx1-ubyte.gz': 'd53e105ee54ea40749a09fcbcd1e9432',
        't10k-images-idx3-ubyte.gz': '9fb629c4189551a2d022fa330f9573f3',
        't10k-labels-idx1-ubyte.gz': 'ec29112dd5afa0611ce80d1b7f02629c',
    },
    'fashion_mnist': {
        'train-images-idx3-ubyte.gz': '8d4fb7e6c68d591d4c3dfef9ec88bf0d',
        'train-labels-idx1-ubyte.gz': '25c81989df183df01b3e8a0aad5dffbe',
        't10k-images-idx3-ubyte.gz': 'bef4ecab320f06d8554ea6380940ec79',
        't10k-labels-idx1-ubyte.gz': 'bb300cfdad3c16e7a12a480ee83cd310',
    },
    'kmnist': {
        'train-images-idx3-ubyte.gz': 'bdb82020997e1d708af4cf47b453dcf7',
        'train-labels-idx1-ubyte.gz': 'e144d726b3acfaa3e44228e80efcd344',
        't10k-images-idx3-ubyte.gz': '5c965bf0a639b31b8f53240b1b52f4d7',
        't10k-labels-idx1-ubyte.gz': '7320c461ea6c1c855c0b718fb2a4b134',
    },
    'cifar10': {
        'cifar-10-python.tar.gz': 'c58f30108f718f92721af3b95e74349a',
    },
}

# Data set -> base URLs, tried in this order; a file's URL is the base followed by its name.
MIRRORS = {
    'mnist': (
        'https://ossci-datasets.s3.amazonaws.com/mnist/',
        'https://storage.googleapis.com/cvdf-datasets/mnist/',
        'http://yann.lecun.com/exdb/mnist/',
    ),
    'fashion_mnist': (
        # S3 website endpoints serve plain HTTP only; the MD5 check guards what arrives.
        'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
        'https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/',
    ),
    'kmnist': (
        'https://codh.rois.ac.jp/kmnist/dataset/kmnist/',
        'http://codh.rois.ac.jp/kmnist/dataset/kmnist/',
    ),
    'cifar10': (
        'https://www.cs.toronto.edu/~kriz/',
    ),
}

# Data set -> the `config.data.source` that reads its folder.
SOURCE = {'mnist': 'idx', 'fashion_mnist': 'idx', 'kmnist': 'idx', 'cifar10': 'cifar10'}

PARTIAL = '.partial'  # sub-folder of DIR holding downloads in progress
ATTEMPTS_PER_MIRROR = 3  # tries on one mirror while transfers are cut short, before the next mirror
DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 3600.0  # --timeout above an hour is a mistake (and inf overflows socket timeouts)
_CHUNK = 1 << 16


def _package_version() -> str:
  """gan_jax's installed version, for the User-Agent header."""
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  try:
    return importlib.metadata.version("gan_jax")
  except importlib.metadata.PackageNotFoundError:
    return "source"


_USER_AGENT = f'gan_jax/{_package_version()} (Python urllib)'
_SCHEMES = ('http', 'https', 'file')


class _Failed(Exception):
  """One URL did not give the file; the message says why, for the final error line."""


class _Truncated(_Failed):
  """The transfer stopped early; what arrived is kept in the partial file, to be resumed."""


class _RangeNotSatisfiable(Exception):
  """HTTP 416 on a resumed request: the partial file may already hold the whole file."""


def md5sum(path: str) -> str:
  """The hex MD5 of a file, read in chunks."""
  digest = hashlib.md5(usedforsecurity=False)  # integrity against a known checksum, not security
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def file_url(base: str, file: str) -> str:
  """The URL of `file` under the base URL `base` (a trailing slash is optional)."""
  return base.rstrip('/') + '/' + urllib.parse.quote(file)


def _reason(error: BaseException) -> str:
  """A short, one-line reason for a failed request."""
  if isinstance(error, urllib.error.HTTPError):
    return f'HTTP {error.code} {error.reason}'.strip()
  if isinstance(error, urllib.error.URLError):
    if not isinstance(error.reason, BaseException):
      return ' '.join(str(error.reason).split())
    error = error.reason
  if isinstance(error, (socket.timeout, TimeoutError)):
    return 'timed out'
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  text = ' '.join(str(error).split())
  return text or type(error).__name__


def _size(path: str) -> int:
  return os.path.getsize(path) if os.path.isfile(path) else 0


def _human(num_bytes: float) -> str:
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if num_bytes < 1024 or unit == 'GiB':
      return f'{num_bytes:.0f} {unit}' if unit == 'B' else f'{num_bytes:.1f} {unit}'
    num_bytes /= 1024
  return ''


def _download(url: str, partial: str, timeout: float, progress: bool | None) -> None:
  """Downloads `url` into `partial`, resuming from the bytes it already holds.

  Raises:
    _RangeNotSatisfiable: the server answered 416 to the resumed request.
    _Truncated: the transfer stopped early (what arrived is kept).
    _Failed: no usable answer (HTTP error, refused connection, timeout, ...).
  """
  offset = _size(partial)
  request = urllib.request.Request(url, headers={'User-Agent': _USER_AGENT})
  if offset:
    request.add_header('Range', f'bytes={offset}-')
  try:
    response = urllib.request.urlopen(request, timeout=timeout)  # pylint: disable=consider-using-with
  except urllib.error.HTTPError as e:
    e.close()
    if e.code == 416 and offset:
      raise _RangeNotSatisfiable() from None
    raise _Failed(_reason(e)) from None
  except (OSError, http.client.HTTPException, ValueError) as e:
    raise _Failed(_reason(e)) from None

  with response:
    status = getattr(response, 'status', None) or 200  # file:// answers carry no status
    mode = 'wb'
    if offset and status == 206:
      match = re.match(r'bytes (\d+)-', response.headers.get('Content-Range', ''))
      if not match or int(match.group(1)) != offset:
        raise _Failed(f'bad Content-Range {response.headers.get("Content-Range")!r} for a resumed request')
      mode = 'ab'
    else:
      offset = 0  # the whole file is coming (no Range sent, or the server ignored it)
    length = response.headers.get('Content-Length')
    length = int(length) if length and length.isdigit() else None
    received = 0
    with open(partial, mode) as f, tqdm.tqdm(
        total=None if length is None else offset + length, initial=offset, unit='B', unit_scale=True,
        unit_divisor=1024, desc=os.path.basename(partial), file=sys.stderr, leave=False, dynamic_ncols=True,
        disable=None if progress is None else not progress) as bar:
      try:
        while True:
          chunk = response.read(_CHUNK)
          if not chunk:
            break
          f.write(chunk)
          received += len(chunk)
          bar.update(len(chunk))
      except (OSError, http.client.HTTPException) as e:
        raise _Truncated(f'transfer interrupted after {offset + received} bytes: {_reason(e)}') from None
      finally:
        # On disk before the size is trusted for a Range request or the file is renamed.
        f.flush()
        os.fsync(f.fileno())
  if length is not None and received < length:
    raise _Truncated(f'transfer cut short at {offset + received} of {offset + length} bytes')


class _AllMirrorsFailed(Exception):

  def __init__(self, file: str, tried: list):
    super().__init__(file)
    self.file = file
    self.tried = tried


def fetch_file(file: str, md5: str, directory: str, urls, timeout: float = DEFAULT_TIMEOUT_S,
               progress: bool | None = None, log=print) -> str:
  """Downloads one file into `directory` from the first of `urls` that gives it with checksum `md5`.

  A file already in `directory` with the right checksum is kept as is. Otherwise the download goes
  to `directory/.partial/FILE` and is renamed to `directory/FILE` once its MD5 matches; a file that
  does not match is deleted.

  Returns:
    The path of the verified file.

  Raises:
    _AllMirrorsFailed: with the URLs tried and why each failed.
  """
  dest = os.path.join(directory, file)
  if os.path.isfile(dest):
    if md5sum(dest) == md5:
      log(f'{file}: already in {directory}, checksum OK')
      return dest
    log(f'{file}: the copy in {directory} has the wrong checksum; downloading it again')
  partial_dir = os.path.join(directory, PARTIAL)
  os.makedirs(partial_dir, exist_ok=True)
  partial = os.path.join(partial_dir, file)
  tried = []
  for url in urls:
    attempt, restarted = 0, False
    while True:
      attempt += 1
      resumed_from = _size(partial)
      if resumed_from:
        log(f'{file}: resuming at byte {resumed_from} from {url}')
      t0 = time.perf_counter()
      try:
        _download(url, partial, timeout, progress)
      except _RangeNotSatisfiable:
        pass  # the partial file may already be whole: the checksum decides
      except _Truncated as e:
        if attempt < ATTEMPTS_PER_MIRROR:
          log(f'{file}: {e}; resuming')
          continue
        tried.append(f'{url} ({e})')
        break
      except _Failed as e:
        tried.append(f'{url} ({e})')
        break
      got = md5sum(partial)
      if got == md5:
        size, seconds = _size(partial), time.perf_counter() - t0
        os.replace(partial, dest)  # atomic on one file system: dest is whole or absent
        rate = (size - resumed_from) / max(seconds, 1e-9)
        log(f'{file}: {_human(size)} from {url} in {seconds:.1f} s ({_human(rate)}/s), checksum OK')
        return dest
      os.remove(partial)
      if resumed_from and not restarted:
        # The kept bytes may have come from another server or a changed file: start over once.
        restarted = True
        log(f'{file}: checksum mismatch after resuming; downloading it again from the start')
        continue
      tried.append(f'{url} (checksum mismatch: md5 {got}, expected {md5})')
      break
  raise _AllMirrorsFailed(file, tried)


def _remove_empty(folder: str) -> None:
  try:
    os.rmdir(folder)
  except OSError:
    pass  # not empty (a download to resume, or the user's files) or already gone


def fetch(name: str, directory: str | None = None, mirrors=(), known_mirrors: bool = True,
          timeout: float = DEFAULT_TIMEOUT_S, progress: bool | None = None, checksums: dict | None = None,
          log=print) -> list:
  """Downloads every file of data set `name` into `directory`, verified against its MD5.

  Args:
    name: 'mnist', 'fashion_mnist', 'kmnist' or 'cifar10'.
    directory: where the files go; default `gan_jax.data.paths.default_dir(name)`. Created if needed.
    mirrors: base URLs to try first, in order (e.g. a local copy: 'http://host/mnist/').
    known_mirrors: then try the data set's known mirrors (`MIRRORS[name]`).
    timeout: seconds to wait for a server to answer or send more bytes.
    progress: show a progress bar with bytes/s and ETA; None: only on a terminal.
    checksums: file -> MD5 to fetch instead of `MD5[name]` (tests serve generated files).
    log: called with one line per event (file done, resumed, skipped).

  Returns:
    The paths of the files, in the order of the table.

  Raises:
    UserError: an unknown name, a bad mirror URL, a folder that cannot be created, or a file that no
      mirror gives with the right checksum (one line listing the URLs tried). Incomplete downloads
      stay in `directory/.partial` for the next run to resume; nothing unverified is left in
      `directory`, and a folder this call created is removed again if nothing arrived.
  """
  if name not in MD5:
    raise UserError(f'unknown data set {name!r}; choose one of {", ".join(MD5)}')
  checksums = dict(checksums if checksums is not None else MD5[name])
  directory = os.path.abspath(os.path.expanduser(os.fspath(directory or paths.default_dir(name))))
  bases = list(mirrors) + (list(MIRRORS[name]) if known_mirrors else [])
  if not bases:
    raise UserError('no mirror to try: pass --mirror=URL, or drop --noknown_mirrors')
  for base in bases:
    try:
      parsed = urllib.parse.urlparse(base)
    except ValueError:  # e.g. an unclosed IPv6 bracket
      parsed = urllib.parse.urlparse('')
    if parsed.scheme not in _SCHEMES or not (parsed.netloc or parsed.path):
      raise UserError(f'mirror {base!r} is not a URL; pass a base URL such as --mirror=http://host/mnist/')
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise UserError(f'{directory} is a file, not a folder; pass --dir=FOLDER')
  created = not os.path.isdir(directory)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create data folder {directory}: {_reason(e)}; pass --dir=FOLDER') from None

  done = []
  try:
    for file, md5 in checksums.items():
      urls = [file_url(base, file) for base in bases]
      done.append(fetch_file(file, md5, directory, urls, timeout, progress, log))
  except _AllMirrorsFailed as e:
    missing = [f for f in checksums if not os.path.isfile(os.path.join(directory, f))]
    _remove_empty(os.path.join(directory, PARTIAL))
    if created:
      _remove_empty(directory)
    resume = ('; run the command again to resume the partial download'
              if os.path.isdir(os.path.join(directory, PARTIAL)) else '')
    raise UserError(
        f'cannot download {name} file {e.file}; tried {"; ".join(e.tried)}{resume}; check the network or '
        f'pass --mirror=URL, or copy {", ".join(missing)} into {directory} by hand '
        '(their MD5s are in gan_jax/data/fetch.py)'
    ) from None
  except KeyboardInterrupt:  # what arrived stays in .partial to resume; empty folders go
    _remove_empty(os.path.join(directory, PARTIAL))
    if created:
      _remove_empty(directory)
    raise
  except OSError as e:
    _remove_empty(os.path.join(directory, PARTIAL))
    raise UserError(f'cannot write to data folder {directory}: {_reason(e)}; free some space or pass '
                    '--dir=FOLDER') from None
  _remove_empty(os.path.join(directory, PARTIAL))
  return done


# ------------------------------------------------------------------------------ command line
def _define_flags():
  """Defines the command-line flags (only when run as a program, to keep imports flag-free)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  flags.DEFINE_string('dir', None, 'Folder to download into (default: $GAN_JAX_DATA/NAME, else '
                      '~/gan_jax_data/NAME).')
  flags.DEFINE_multi_string('mirror', [], 'A base URL to try before the known mirrors (repeatable), '
                            'e.g. http://host/mnist/.')
  flags.DEFINE_bool('known_mirrors', True, "After --mirror, try the data set's known mirrors.")
  flags.DEFINE_float('timeout', DEFAULT_TIMEOUT_S, 'Seconds to wait for a server before giving up on it.')


_VALUE_FLAGS = ('dir', 'mirror', 'timeout')  # flags that may take their value as the next argument


def split_names(argv) -> tuple[list, list]:
  """(data set names, the rest): the bare words of `argv`, apart from the values of `--dir DIR`.

  `cli.run` accepts flags only, so the names are taken out before absl parses the rest.
  """
  names, rest, value_next = [], list(argv[:1]), False
  for arg in argv[1:]:
    if value_next or arg.startswith('-'):
      rest.append(arg)
      value_next = not value_next and '=' not in arg and arg.lstrip('-') in _VALUE_FLAGS
    else:
      names.append(arg)
  return names, rest


def run_cli() -> int:
  """The command line (`python -m gan_jax.data.fetch NAME ... --flags`); returns the exit code."""
  from gan_jax import cli  # pylint: disable=import-outside-toplevel

  names, sys.argv = split_names(sys.argv)
  return cli.run(lambda argv: main(argv[:1] + names))


def main(argv):
  """Fetches the data sets named on the command line (`argv[1:]`)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  names = argv[1:]
  if not names:
    raise UserError(f'name a data set: python -m gan_jax.data.fetch NAME (one of {", ".join(MD5)})')
  for name in names:
    if name not in MD5:
      raise UserError(f'unknown data set {name!r}; choose one of {", ".join(MD5)}')
  directory = flags.FLAGS.dir
  if directory and len(names) > 1:
    raise UserError('--dir names one folder: fetch one data set at a time with --dir, or omit --dir')
  timeout = flags.FLAGS.timeout
  if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT_S:
    raise UserError(f'--timeout must be a number of seconds in (0, {MAX_TIMEOUT_S}], got {timeout}')
  for name in names:
    folder = os.path.abspath(os.path.expanduser(directory or paths.default_dir(name)))
    try:
      fetch(name, folder, mirrors=flags.FLAGS.mirror, known_mirrors=flags.FLAGS.known_mirrors,
            timeout=timeout, log=lambda line, n=name: print(f'{n}: {line}', flush=True))
    except KeyboardInterrupt:
      kept = os.path.join(folder, PARTIAL)
      raise UserError(f'interrupted while fetching {name}'
                      + (f'; the partial download is kept in {kept}' if os.path.isdir(kept) else '')
                      + '; run the same command again to resume') from None
    print(f'{name}: ready in {folder}; train on it with --config.data.source={SOURCE[name]} '
          f'--config.data.dir={folder}', flush=True)


if __name__ == '__main__':
  _define_flags()
  sys.exit(run_cli())

