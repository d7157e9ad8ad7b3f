"""The paper kit's run access: the public run reader (gan_jax.run.reader) limited to image runs, and
the record-keeping every paper command shares (where it ran, files written all or nothing)."""

from gan_jax.errors import UserError
from gan_jax.run import files
from gan_jax.run.environment import device_description  # pylint: disable=unused-import  (the paper kit's records)
from gan_jax.run.reader import RunReader


def image_run(workdir: str, data_dir: str | None = None) -> RunReader:
  """A reader of the run in `workdir`; a UserError for a toy run (the paper's evaluations need images)."""
  reader = RunReader(workdir, data_dir)
  if reader.config.data.source == "toy":
    raise UserError(f"{workdir} was trained on toy data ({reader.config.data.name}); the paper's "
                    "image evaluations need an image run (figure1 draws toy runs)")
  return reader


def write_text(path: str, text: str) -> str:
  """Writes `text` to `path` atomically, creating its folder; returns the path."""
  try:
    files.atomic_write_text(path, text)
  except OSError as e:
    raise UserError(f"cannot write {path} ({e.strerror}); choose a writable path") from None
  return path
