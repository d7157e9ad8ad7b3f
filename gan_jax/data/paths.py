"""Where downloaded data sets live by default: `$GAN_JAX_DATA/NAME`, or `~/gan_jax_data/NAME`.

`python -m gan_jax.data.fetch NAME` writes there, and the experiment configs that read MNIST or
CIFAR-10 read from there unless `--config.data.dir` says otherwise. One environment variable moves
every data set at once (a shared disk, a scratch volume on a cluster).
"""

import os

ENV_VAR = 'GAN_JAX_DATA'
HOME_FOLDER = 'gan_jax_data'


def data_root() -> str:
  """The folder holding one sub-folder per data set: `$GAN_JAX_DATA`, else `~/gan_jax_data`.

  `~` and environment variables inside `$GAN_JAX_DATA` are expanded; the folder need not exist.
  """
  root = os.environ.get(ENV_VAR, '').strip()
  if root:
    return os.path.expandvars(os.path.expanduser(root))
  return os.path.join(os.path.expanduser('~'), HOME_FOLDER)


def default_dir(name: str) -> str:
  """The default folder of data set `name` (e.g. 'mnist' -> `~/gan_jax_data/mnist`).

  Args:
    name: the data set's name, as `python -m gan_jax.data.fetch` spells it.

  Returns:
    `data_root()/name`; it is read when called, so `$GAN_JAX_DATA` set later is honoured.
  """
  return os.path.join(data_root(), name)


def fetch_command(name: str, directory: str | os.PathLike | None = None) -> str:
  """The command that downloads data set `name` into `directory` (`--dir` only when not the default).

  Used in error messages about a missing data folder, so that they say exactly what to run.
  """
  command = f'python -m gan_jax.data.fetch {name}'
  if directory:
    directory = os.fspath(directory)
    if os.path.abspath(os.path.expanduser(directory)) != os.path.abspath(default_dir(name)):
      command += f' --dir={directory}'
  return command
