"""User-facing errors.

A `UserError` is a mistake the user can fix (a bad config key, a missing file, a corrupt data file).
Entry points catch it and print its message as one line, then exit non-zero, without a traceback.
The message should say what was wrong and what to do about it.
"""


class UserError(Exception):
  """A problem with the user's input; printed as one line by the command-line entry points."""
