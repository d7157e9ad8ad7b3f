"""Shared entry-point handling: a user's mistake is one line on stderr and exit code 2.

`run(main, config_flag)` wraps `absl.app.run`: flag errors (an unknown or ill-typed `--config.KEY`, a
config file that does not exist or does not load), stray positional arguments and `UserError`s print
one `error: ...` line and exit 2, never a traceback. `--help` (or `-h`) prints the command's one-line
description (its module docstring's first paragraph) and its flags, and exits 0.

Every entry point defines its flags at module level and ends with `sys.exit(cli.run(main))`.
"""

import os
import sys

from absl import app, flags, logging

from gan_jax.errors import UserError


def _one_line(text) -> str:
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return " ".join(lines) if len(lines) <= 3 else lines[0]


def _fail(message) -> int:
  logging.flush()
  print(f"error: {_one_line(message)}", file=sys.stderr)
  return 2


def _config_error(e: Exception, argv) -> str:
  """A one-line explanation of why the config flag did not parse or load."""
  path = _config_path(argv)
  if isinstance(e, AttributeError) and "get_config" in str(e):
    return (f"config file {path} has no get_config() function; a config file defines "
            "get_config(arg='') returning an ml_collections.ConfigDict")
  if _in_config_file(e, argv):
    return _in_config_file(e, argv)
  if isinstance(e, AttributeError | KeyError):
    text = str(e).encode().decode("unicode_escape")  # KeyError text arrives quoted and escaped
    key = text.splitlines()[0].strip("\"' ")
    hint = next((line.strip() for line in text.splitlines()[1:] if line.strip()), "")
    hint = " " + hint.strip("\"' ") if hint else ""
    bad = [a.split("=")[0] for a in argv if a.startswith("--config.") and key in a]
    where = bad[0] if bad else f"'{key}'"
    return (f"unknown config key {where}:{hint} every key and its default is in gan_jax/config.py "
            "(or the experiment's config file)")
  text = str(e)
  if path and not os.path.isfile(path):
    return f"config file {path} does not exist; pass --config=experiments/configs/NAME.py (e.g. digits.py)"
  return f"cannot load config file {path}: {type(e).__name__}: {text}"


def usage() -> str:
  """The running command's description (its module docstring's first paragraph) and its flags."""
  doc = (sys.modules["__main__"].__doc__ or "").strip()
  description = doc.split("\n\n")[0] if doc else ""
  return f"{description}\n\nflags:\n{flags.FLAGS.main_module_help()}".strip() + "\n"


def _config_file_line(e: BaseException, path: str):
  """The line of the config file `path` where `e` was raised (deepest frame there), or None."""
  if not path or e is None:
    return None
  target, line, tb = os.path.abspath(path), None, e.__traceback__
  while tb is not None:
    if os.path.abspath(tb.tb_frame.f_code.co_filename) == target:
      line = tb.tb_lineno
    tb = tb.tb_next
  return line


def _config_path(argv) -> str:
  return next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "").split(":")[0]


def _in_config_file(e: BaseException, argv):
  """One line for an exception raised by the config file's own code, or None if it was not."""
  path = _config_path(argv)
  line = _config_file_line(e, path)
  if line is None:
    return None
  return f"the config file {path} failed at line {line}: {type(e).__name__}: {e}"


def run(main, config_flag=None) -> int:
  """Runs an absl `main`; user errors become one clear line and exit code 2."""
  argv = sys.argv
  if any(a in ("--help", "-h", "--helpshort", "-help") for a in argv[1:]):
    sys.stdout.write(usage())
    return 0
  try:
    rest = flags.FLAGS(argv)  # parse here so flag errors are ours to report
    if config_flag is not None:
      config_flag.value.keys()  # a config that failed to load raises on first use: surface it now
  except flags.Error as e:
    cause = e.__cause__ or e.__context__
    if isinstance(cause, UserError):  # raised by the config file itself (e.g. an unknown argument)
      return _fail(cause)
    if _in_config_file(cause, argv):
      return _fail(_in_config_file(cause, argv))
    if isinstance(cause, AttributeError | KeyError | OSError | ImportError):
      return _fail(_config_error(cause, argv))
    return _fail(e)
  except UserError as e:
    return _fail(e)
  except (AttributeError, KeyError, OSError, ImportError, SyntaxError) as e:
    return _fail(_config_error(e, argv))
  except Exception as e:  # pylint: disable=broad-except
    if _in_config_file(e, argv):  # any other error in the user's config file: one line, its cause kept
      return _fail(_in_config_file(e, argv))
    raise
  if len(rest) > 1:
    return _fail(f"unexpected arguments: {' '.join(rest[1:])}; every option is a --flag=VALUE "
                 "(see --help)")

  def wrapped(argv):
    try:
      return main(argv)
    except UserError as e:
      sys.exit(_fail(e))

  # Parsing twice would load the config file again and define its `--config.KEY` flags twice.
  app.run(wrapped, argv=argv, flags_parser=lambda _: rest)
  return 0
