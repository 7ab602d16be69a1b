"""Stopping a training loop cleanly on SIGTERM/SIGINT, and time-based checkpoints.

A loop enters ``StopSignals`` and asks ``Decisions.at(step)`` after every step
whether to stop (a signal arrived) or to save (``every_minutes`` passed). It
saves, then raises ``Stopped``, whose message is the one line a launcher prints
before exiting with 128 + the signal number. With several processes the two
flags are all-gathered every ``sync_every`` steps, so all processes stop or save
at the same step; one process decides at every step without a collective.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils


class Stopped(Exception):
  """Raised after a SIGTERM/SIGINT stop was saved; the message is the one line to show."""

  def __init__(self, signum: int, step: int, path: str, what: str | None = None):
    self.signum, self.step, self.path = signum, step, path
    what = what or f"at step {step}; checkpoint saved in {path}"
    super().__init__(f"stopped by {signal.Signals(signum).name} {what}; run the same command to resume")


class StopSignals:
  """Turns the first SIGTERM/SIGINT into a flag the loop reads between steps; a
  second SIGINT interrupts at once (KeyboardInterrupt). Installed only in the main
  thread (Python delivers signals there)."""

  def __init__(self):
    self.signum = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is None:
      self.signum = signum
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class Decisions:
  """Stop and time-checkpoint decisions, the same on every process (module docstring)."""

  def __init__(self, signals: StopSignals, clock: Callable[[], float], every_minutes: float,
               sync_every: int):
    self._signals, self._clock, self._sync_every = signals, clock, sync_every
    self._interval_s = 60.0 * every_minutes
    self._last_save = clock() if every_minutes else 0.0
    self._now = self._last_save

  def saved(self) -> None:
    self._last_save = self._now

  def at(self, step: int) -> tuple[int, bool]:
    """(signal number to stop for or 0, whether a checkpoint is due by time) after ``step``."""
    signum = self._signals.signum or 0
    if self._interval_s:
      self._now = self._clock()
    by_time = bool(self._interval_s) and self._now - self._last_save >= self._interval_s
    if jax.process_count() == 1:
      return signum, by_time
    if step % self._sync_every:
      return 0, False
    flags = multihost_utils.process_allgather(np.array([signum, int(by_time)], np.int32))
    flags = np.asarray(flags).reshape(-1, 2)
    return int(flags[:, 0].max()), bool(flags[:, 1].any())
