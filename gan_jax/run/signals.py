"""SIGTERM and SIGINT (Ctrl-C) as requests to stop, for the trainer and the sweep.

`StopSignals(raise_on=2)` (the trainer): the first signal is remembered (`requested`), so the loop
checkpoints at its next step boundary and returns; a second one raises KeyboardInterrupt at once.
`StopSignals(raise_on=1)` (the sweep): every signal raises KeyboardInterrupt at once, and is also
remembered, since a KeyboardInterrupt raised inside a library callback can be printed and dropped
there; the caller checks `requested` between units of work.

Outside the main thread signals cannot be handled; the context then changes nothing.
"""

import signal
import threading


class StopSignals:
  """Context manager turning SIGTERM/SIGINT into a stop request (see the module docstring)."""

  def __init__(self, raise_on: int = 2):
    self.raise_on = raise_on
    self.signal = None  # the name of the first signal received
    self.count = 0
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signal is not None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.count += 1
    if self.signal is None:
      self.signal = signal.Signals(signum).name
    if self.count >= self.raise_on:
      raise KeyboardInterrupt

  def requested_anywhere(self) -> bool:
    """Whether any process of a multi-host run was asked to stop; all processes must call this at
    the same steps (it is a collective). With one process it is `requested`."""
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_count() == 1:
      return self.requested
    import numpy as np  # pylint: disable=g-import-not-at-top
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(np.int32(self.requested))
    if np.any(flags) and self.signal is None:
      self.signal = "SIGTERM (another process)"
    return bool(np.any(flags))

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
