"""Tests for `gan_jax.data.fetch` against a local HTTP server on 127.0.0.1 serving generated files.

Nothing here touches the network: every mirror is the test's own server (or a closed port), the
checksum table is patched with the MD5s of the generated files, and the known mirrors are off.
"""

import gzip
import hashlib
import http.server
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading

import ml_collections
import numpy as np
import pytest

from conftest import REPO, load_config, subprocess_env
from gan_jax.data import fetch
from gan_jax.data import idx
from gan_jax.data import paths
from gan_jax.data import sources
from gan_jax.errors import UserError


# ------------------------------------------------------------------------------ the local server
class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves `server.files` ({url path: bytes}) with single-range `Range: bytes=N-` support."""

  def do_GET(self):  # pylint: disable=invalid-name
    state = self.server.state
    rng = self.headers.get('Range')
    state.requests.append((self.path, rng))
    data = state.files.get(self.path)
    if data is None:
      self.send_error(404)
      return
    start = 0
    if rng and not state.ignore_range:
      start = int(re.fullmatch(r'bytes=(\d+)-', rng).group(1))
      if start >= len(data):
        self.send_response(416)
        self.send_header('Content-Range', f'bytes */{len(data)}')
        self.send_header('Content-Length', '0')
        self.end_headers()
        return
      self.send_response(206)
      self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
    else:
      self.send_response(200)
    body = data[start:]
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    cut = state.truncate.pop(self.path, None)
    # HTTP/1.0: the connection closes when this returns, so a cut body ends early at the client.
    self.wfile.write(body if cut is None else body[:cut])

  def log_message(self, *args):  # keep the test output clean
    pass


class _State:

  def __init__(self):
    self.files = {}
    self.requests = []
    self.truncate = {}  # url path -> bytes to send in its next answer, then close
    self.ignore_range = False


@pytest.fixture
def server():
  """A threaded HTTP server on 127.0.0.1; yields (base URL, state)."""
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
  httpd.state = _State()
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{httpd.server_address[1]}', httpd.state
  httpd.shutdown()
  httpd.server_close()
  thread.join(5)


def _closed_port_url() -> str:
  """A URL on a port nothing listens on (connection refused)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  return f'http://127.0.0.1:{port}/mnist/'


# ------------------------------------------------------------------------------ generated MNIST
def _idx(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack('>' + 'I' * array.ndim, *array.shape)
  return header + array.astype(np.uint8).tobytes()


def _mnist_files(n_train=300, n_test=50) -> dict:
  """file name -> gzipped IDX bytes of seeded random 28x28 digits."""
  rng = np.random.RandomState(0)
  files = {}
  for prefix, n in (('train', n_train), ('t10k', n_test)):
    files[f'{prefix}-images-idx3-ubyte.gz'] = gzip.compress(_idx(rng.randint(0, 256, (n, 28, 28))), mtime=0)
    files[f'{prefix}-labels-idx1-ubyte.gz'] = gzip.compress(_idx(rng.randint(0, 10, (n,))), mtime=0)
  return files


@pytest.fixture
def mnist(server, monkeypatch):
  """Generated MNIST files served under /mnist/, with the checksum table patched to match them."""
  base, state = server
  files = _mnist_files()
  for name, data in files.items():
    state.files[f'/mnist/{name}'] = data
  monkeypatch.setitem(fetch.MD5, 'mnist', {n: hashlib.md5(d).hexdigest() for n, d in files.items()})
  return f'{base}/mnist/', state, files


def _fetch(directory, mirrors, **kwargs):
  lines = []
  kwargs.setdefault('known_mirrors', False)
  out = fetch.fetch('mnist', str(directory), mirrors=mirrors, timeout=10, progress=False, log=lines.append,
                    **kwargs)
  return out, lines


def _assert_complete(directory, files):
  assert sorted(os.listdir(directory)) == sorted(files)  # no .partial left
  for name, data in files.items():
    with open(os.path.join(directory, name), 'rb') as f:
      assert f.read() == data


# ------------------------------------------------------------------------------ tests
def test_table_covers_every_data_set():
  assert set(fetch.MD5) == set(fetch.MIRRORS) == set(fetch.SOURCE) == {'mnist', 'fashion_mnist', 'kmnist',
                                                                       'cifar10'}
  assert fetch.MD5['cifar10'] == {'cifar-10-python.tar.gz': 'c58f30108f718f92721af3b95e74349a'}
  for table in fetch.MD5.values():
    assert all(re.fullmatch(r'[0-9a-f]{32}', md5) for md5 in table.values())
  assert fetch.MIRRORS['mnist'][0] == 'https://ossci-datasets.s3.amazonaws.com/mnist/'
  assert fetch.file_url('http://h/a', 'f.gz') == fetch.file_url('http://h/a/', 'f.gz') == 'http://h/a/f.gz'


def test_default_dir(monkeypatch, tmp_path):
  monkeypatch.setenv('GAN_JAX_DATA', str(tmp_path / 'data'))
  assert paths.default_dir('mnist') == str(tmp_path / 'data' / 'mnist')
  monkeypatch.delenv('GAN_JAX_DATA')
  monkeypatch.setenv('HOME', str(tmp_path))
  assert paths.default_dir('cifar10') == str(tmp_path / 'gan_jax_data' / 'cifar10')


def test_good_files_then_nothing_to_do(mnist, tmp_path):
  url, state, files = mnist
  out, lines = _fetch(tmp_path / 'data', [url])
  assert [os.path.basename(p) for p in out] == list(files)
  _assert_complete(tmp_path / 'data', files)
  images, labels = idx.load_idx_split(tmp_path / 'data', 'train')
  assert images.shape == (300, 28, 28, 1) and labels.shape == (300,)
  assert all('checksum OK' in line for line in lines)
  requests = len(state.requests)
  _, lines = _fetch(tmp_path / 'data', [url])
  assert len(state.requests) == requests and all('already in' in line for line in lines)


def test_default_folder(mnist, tmp_path, monkeypatch):
  url, _, files = mnist
  monkeypatch.setenv('GAN_JAX_DATA', str(tmp_path / 'root'))
  fetch.fetch('mnist', mirrors=[url], known_mirrors=False, progress=False, log=lambda _: None)
  _assert_complete(tmp_path / 'root' / 'mnist', files)


def test_configs_read_the_default_folder_and_say_how_to_fill_it(mnist, tmp_path, monkeypatch):
  url, _, _ = mnist
  monkeypatch.setenv('GAN_JAX_DATA', str(tmp_path / 'root'))
  config = load_config('mnist_paper', 'smoke')
  assert (config.data.source, config.data.name, config.data.dir) == ('idx', 'mnist', '')
  assert load_config('dcgan_28', '').data.dir == ''
  with pytest.raises(UserError) as info:
    sources.load_images(config.data, 'train')
  message = str(info.value)
  assert f'IDX data folder {tmp_path / "root" / "mnist"} does not exist' in message
  assert '`python -m gan_jax.data.fetch mnist`' in message and '--config.data.dir' in message
  other = ml_collections.ConfigDict({'source': 'idx', 'name': 'kmnist', 'dir': str(tmp_path / 'k')})
  with pytest.raises(UserError, match=r'`python -m gan_jax\.data\.fetch kmnist --dir=.*k`'):
    sources.load_images(other, 'test')
  fetch.fetch('mnist', mirrors=[url], known_mirrors=False, progress=False, log=lambda _: None)
  config.data.num_train = 250
  assert sources.load_images(config.data, 'train').images.shape == (250, 28, 28, 1)
  assert sources.load_images(config.data, 'test').labels.shape == (50,)


def test_corrupt_file_is_an_error_and_leaves_nothing(mnist, tmp_path):
  url, state, files = mnist
  state.files['/mnist/train-labels-idx1-ubyte.gz'] = b'not what the checksum says'
  with pytest.raises(UserError) as info:
    _fetch(tmp_path / 'data', [url])
  message = str(info.value)
  assert 'checksum mismatch' in message and f'{url}train-labels-idx1-ubyte.gz' in message
  assert '\n' not in message
  # The file before it was verified and stays; nothing unverified, no .partial.
  assert os.listdir(tmp_path / 'data') == ['train-images-idx3-ubyte.gz']
  # Into a fresh folder where the first file fails: the folder itself is removed again.
  state.files['/mnist/train-images-idx3-ubyte.gz'] = b'corrupt'
  with pytest.raises(UserError, match='checksum mismatch'):
    _fetch(tmp_path / 'fresh', [url])
  assert not os.path.exists(tmp_path / 'fresh')
  del files


def test_truncated_transfer_is_resumed(mnist, tmp_path):
  url, state, files = mnist
  name = 'train-images-idx3-ubyte.gz'
  half = len(files[name]) // 2
  state.truncate[f'/mnist/{name}'] = half
  _, lines = _fetch(tmp_path / 'data', [url])
  _assert_complete(tmp_path / 'data', files)
  ranges = [r for p, r in state.requests if p == f'/mnist/{name}']
  assert ranges == [None, f'bytes={half}-']
  assert any('cut short' in line for line in lines)
  assert any(f'resuming at byte {half}' in line for line in lines)


def test_server_that_ignores_range_still_gives_the_whole_file(mnist, tmp_path):
  url, state, files = mnist
  name = 't10k-images-idx3-ubyte.gz'
  state.truncate[f'/mnist/{name}'] = 100
  state.ignore_range = True
  _fetch(tmp_path / 'data', [url])
  _assert_complete(tmp_path / 'data', files)


def test_partial_file_from_an_earlier_run_is_resumed(mnist, tmp_path):
  url, state, files = mnist
  name = 'train-images-idx3-ubyte.gz'
  os.makedirs(tmp_path / 'data' / '.partial')
  with open(tmp_path / 'data' / '.partial' / name, 'wb') as f:
    f.write(files[name][:1000])
  _fetch(tmp_path / 'data', [url])
  _assert_complete(tmp_path / 'data', files)
  assert [r for p, r in state.requests if p == f'/mnist/{name}'] == ['bytes=1000-']


def test_complete_partial_file_answered_416_is_kept(mnist, tmp_path):
  url, state, files = mnist
  name = 'train-labels-idx1-ubyte.gz'
  os.makedirs(tmp_path / 'data' / '.partial')
  with open(tmp_path / 'data' / '.partial' / name, 'wb') as f:
    f.write(files[name])
  _fetch(tmp_path / 'data', [url])
  _assert_complete(tmp_path / 'data', files)
  assert [r for p, r in state.requests if p == f'/mnist/{name}'] == [f'bytes={len(files[name])}-']


def test_stale_partial_file_is_restarted_once(mnist, tmp_path):
  url, state, files = mnist
  name = 't10k-labels-idx1-ubyte.gz'
  os.makedirs(tmp_path / 'data' / '.partial')
  with open(tmp_path / 'data' / '.partial' / name, 'wb') as f:
    f.write(b'\0' * 100)  # bytes from some other file: the resumed download fails its checksum
  _, lines = _fetch(tmp_path / 'data', [url])
  _assert_complete(tmp_path / 'data', files)
  assert [r for p, r in state.requests if p == f'/mnist/{name}'] == ['bytes=100-', None]
  assert any('from the start' in line for line in lines)


def test_wrong_file_in_place_is_replaced(mnist, tmp_path):
  url, _, files = mnist
  os.makedirs(tmp_path / 'data')
  with open(tmp_path / 'data' / 't10k-labels-idx1-ubyte.gz', 'wb') as f:
    f.write(b'old')
  _fetch(tmp_path / 'data', [url])
  _assert_complete(tmp_path / 'data', files)


def test_missing_file_goes_to_the_next_mirror(mnist, tmp_path):
  url, state, files = mnist
  for name, data in files.items():
    state.files[f'/second/{name}'] = data
  del state.files['/mnist/t10k-images-idx3-ubyte.gz']
  second = url.replace('/mnist/', '/second/')
  _fetch(tmp_path / 'data', [url, second])
  _assert_complete(tmp_path / 'data', files)
  asked = [p for p, _ in state.requests if 't10k-images' in p]
  assert asked == ['/mnist/t10k-images-idx3-ubyte.gz', '/second/t10k-images-idx3-ubyte.gz']


def test_all_mirrors_down_is_one_line_listing_the_urls(mnist, tmp_path):
  url, _, _ = mnist
  missing = url.replace('/mnist/', '/nothing/')  # the server answers 404
  dead = [_closed_port_url(), _closed_port_url()]
  with pytest.raises(UserError) as info:
    _fetch(tmp_path / 'data', dead + [missing])
  message = str(info.value)
  assert '\n' not in message
  for base in dead + [missing]:
    assert f'{base}train-images-idx3-ubyte.gz' in message
  assert 'HTTP 404' in message and 'by hand' in message and str(tmp_path / 'data') in message
  assert not os.path.exists(tmp_path / 'data')


def test_bad_arguments():
  with pytest.raises(UserError, match='unknown data set'):
    fetch.fetch('imagenet')
  with pytest.raises(UserError, match='no mirror to try'):
    fetch.fetch('mnist', '/nonexistent', known_mirrors=False)
  with pytest.raises(UserError, match='is not a URL'):
    fetch.fetch('mnist', '/nonexistent', mirrors=['ftp.example.com/mnist'])


def _run_cli(*args, env=None):
  return subprocess.run([sys.executable, '-m', 'gan_jax.data.fetch', *args], cwd=REPO, capture_output=True,
                        text=True, timeout=120, check=False, env=env or subprocess_env(1))


def _one_error_line(proc) -> str:
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, proc.stderr[-2000:]
  return errors[0]


def test_cli_checksum_mismatch_and_unknown_name(server, tmp_path):
  base, state = server
  for name, data in _mnist_files().items():  # generated files: the real MD5s cannot match
    state.files[f'/mnist/{name}'] = data
  proc = _run_cli('mnist', f'--dir={tmp_path / "data"}', f'--mirror={base}/mnist/', '--noknown_mirrors',
                  '--timeout=10')
  line = _one_error_line(proc)
  assert 'checksum mismatch' in line and f'{base}/mnist/train-images-idx3-ubyte.gz' in line
  assert not os.path.exists(tmp_path / 'data')
  assert 'unknown data set' in _one_error_line(_run_cli('imagenet'))
  assert 'name a data set' in _one_error_line(_run_cli())


def test_split_names():
  names, rest = fetch.split_names(['prog', 'mnist', '--dir', 'd', 'kmnist', '--mirror=u', '--noknown_mirrors',
                                   '--timeout', '5', 'cifar10'])
  assert names == ['mnist', 'kmnist', 'cifar10']
  assert rest == ['prog', '--dir', 'd', '--mirror=u', '--noknown_mirrors', '--timeout', '5']


def test_cli_help():
  proc = _run_cli('--help')
  assert proc.returncode == 0 and '--mirror' in proc.stdout


@pytest.mark.parametrize('args,message', [
    (['--timeout=inf'], '--timeout must be a number of seconds in (0, 3600.0], got inf'),
    (['--mirror=http://[::1', '--noknown_mirrors'], "mirror 'http://[::1' is not a URL"),
])
def test_cli_bad_timeout_and_mirror(tmp_path, args, message):
  line = _one_error_line(_run_cli('mnist', f'--dir={tmp_path / "data"}', *args))
  assert message in line, line
  assert not os.path.exists(tmp_path / 'data')


def test_cli_interrupt_is_one_line_and_leaves_no_empty_folder(tmp_path):
  """Ctrl-C while a server is slow to answer: one line saying how to resume, no traceback."""
  with socket.socket() as server:
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    server.settimeout(60)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'gan_jax.data.fetch', 'mnist', f'--dir={tmp_path / "data"}', '--noknown_mirrors',
         f'--mirror=http://127.0.0.1:{server.getsockname()[1]}/mnist/', '--timeout=60'],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(1))
    try:
      connection, _ = server.accept()  # the request has arrived: the command waits for an answer
      proc.send_signal(signal.SIGINT)
      _, err = proc.communicate(timeout=60)
      connection.close()
    finally:
      if proc.poll() is None:
        proc.kill()
  assert proc.returncode == 2 and 'Traceback' not in err, err[-2000:]
  errors = [line for line in err.splitlines() if line.startswith('error:')]
  assert errors == ['error: interrupted while fetching mnist; run the same command again to resume'], err[-2000:]
  assert not os.path.exists(tmp_path / 'data')


def test_cli_fetches_from_a_local_mirror(mnist, tmp_path):
  """The program end to end: its checksums are the real ones, so this runs it via a tiny wrapper that
  patches the table first (the server's files are generated)."""
  url, _, files = mnist
  wrapper = tmp_path / 'run_fetch.py'
  wrapper.write_text(
      'import sys\n'
      'from gan_jax.data import fetch\n'
      f'fetch.MD5["mnist"] = {dict(fetch.MD5["mnist"])!r}\n'
      'fetch._define_flags()\n'
      'sys.exit(fetch.run_cli())\n')
  env = subprocess_env(1)
  env['GAN_JAX_DATA'] = str(tmp_path / 'root')
  proc = subprocess.run([sys.executable, str(wrapper), '--mirror', url, 'mnist', '--noknown_mirrors'],
                        cwd=REPO, capture_output=True, text=True, timeout=120, check=False, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  _assert_complete(tmp_path / 'root' / 'mnist', files)
  assert f'--config.data.source=idx --config.data.dir={tmp_path / "root" / "mnist"}' in proc.stdout


def test_fetch_then_train(mnist, tmp_path):
  """Fetch generated MNIST into an empty folder from the local mirror, then train a few steps on it."""
  from gan_jax import train  # pylint: disable=g-import-not-at-top

  url, _, _ = mnist
  data_dir = tmp_path / 'mnist'
  _fetch(data_dir, [url])
  config = load_config('digits', 'smoke')
  config.data.source, config.data.name, config.data.dir = 'idx', 'mnist', str(data_dir)
  config.data.num_train = 250
  config.num_steps, config.steps_per_dispatch, config.log_every = 4, 2, 2
  config.sample_every = config.checkpoint_every = 4
  config.batch_size = 50
  config.parallel.mode = 'none'
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['step'] == 4 and len(summary['params_sha256']) == 64
  assert np.isfinite(summary['d_loss']) and np.isfinite(summary['g_loss'])
