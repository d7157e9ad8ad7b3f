"""Shared entry-point handling: a user's mistake is one line on stderr and exit code 2.

`run(main)` wraps `absl.app.run`: flag errors (an unknown or ill-typed `--config.KEY`, a config file
that does not exist) and `UserError`s print one `error: ...` line and exit 2, never a traceback.
"""

import sys

from absl import app, flags, logging

from gan_jax.errors import UserError


def _one_line(text: str) -> str:
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return " ".join(lines) if len(lines) <= 3 else lines[0]


def run(main) -> int:
  """Runs an absl `main`, turning user errors into one clear line and a non-zero exit."""
  def wrapped(argv):
    try:
      return main(argv)
    except UserError as e:
      logging.flush()
      print(f"error: {_one_line(e)}", file=sys.stderr)
      sys.exit(2)

  try:
    flags.FLAGS(sys.argv)  # parse here so flag errors are ours to report
  except flags.Error as e:
    print(f"error: {_one_line(_flag_message(e))}", file=sys.stderr)
    return 2
  except UserError as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return 2
  app.run(wrapped, argv=sys.argv)
  return 0


def _flag_message(e: Exception) -> str:
  msg = str(e)
  cause = e.__cause__ or e.__context__
  if "--config" in msg and isinstance(cause, FileNotFoundError | ImportError | OSError):
    return f"config file not found or not loadable ({cause}); pass --config=experiments/configs/NAME.py"
  return msg
