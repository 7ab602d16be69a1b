"""Scalars to TensorBoard event files, to ``metrics.jsonl`` and to the console; progress lines."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Callable

import numpy as np

from simgan_jax.errors import ConfigError


class MetricWriter:
  """Writes on process 0 only; the others pass ``enabled=False``."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # imported lazily: only process 0 writes

    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    for name, value in scalars.items():
      if np.isfinite(value):  # e.g. selection_score is +inf for a checkpoint never to select
        self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")
    self._jsonl.flush()

  def write_image(self, step: int, name: str, image_HW_or_HWC: np.ndarray) -> None:
    if self.enabled:
      self._tb.add_image(name, image_HW_or_HWC, step, dataformats="HW" if image_HW_or_HWC.ndim == 2 else "HWC")

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


_SHORT = {
    "refiner_adversarial_loss": "R_adv",
    "self_regularization_loss": "R_reg",
    "discriminator_loss": "D",
    "discriminator_accuracy_real": "acc_real",
    "discriminator_accuracy_refined": "acc_ref",
    "kg": "kg",
}


def console_line(step: int, total: int, phase: str, scalars: dict[str, float], eta_s: float) -> str:
  parts = [f"{_SHORT[k]} {v:.4g}" for k, v in scalars.items() if k in _SHORT]
  eta = datetime.timedelta(seconds=int(eta_s))
  rate = scalars.get("refined_images_per_second", 0.0)
  steps = scalars.get("steps_per_second", 0.0)
  return (f"step {step}/{total} [{phase}] " + " ".join(parts) +
          f" | {steps:.3g} steps/s, {rate:.0f} refined img/s | ETA {eta}")


def print_line(line: str) -> None:
  print(line, file=sys.stdout, flush=True)


def format_seconds(seconds: float) -> str:
  """``1m05s`` or ``2h03m00s``."""
  seconds = int(max(seconds, 0))
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"
  return f"{seconds // 60}m{seconds % 60:02d}s"



def rate_text(rate: float) -> str:
  """A rate to 3 significant digits without exponents: 0.0412, 38.6, 1680."""
  return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"

class Progress:
  """A progress line on stderr: redrawn in place (``\\r``) on a terminal; in a log file
  or pipe a plain line every ``every_s`` seconds or ``every_percent`` percent, whichever
  comes first, and never a ``\\r``.

  ``Progress("eyesim_target train", 50_000, "images")``; ``update(done)``; ``close()``
  prints the final line (count, time, rate).
  """

  def __init__(self, label: str, total: int, unit: str = "", enabled: bool = True,
               every_s: float = 10.0, stream=None, every_percent: float = 10.0):
    self.label, self.total, self.unit, self.enabled, self.every_s = label, int(total), unit, enabled, every_s
    self.every_percent = every_percent
    self.stream = stream or sys.stderr
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self.start = self.last = time.perf_counter()
    self.done = self.last_done = 0

  def _write(self, line: str, final: bool = False) -> None:
    if self.tty:
      self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
    else:
      self.stream.write(line + "\n")
    self.stream.flush()

  def _due(self, now: float) -> bool:
    if self.tty:
      return now - self.last >= 0.5
    step = self.every_percent / 100 * max(self.total, 1)
    return now - self.last >= self.every_s or (self.done - self.last_done >= step and self.done < self.total)

  def update(self, done: int) -> None:
    self.done = int(done)
    now = time.perf_counter()
    if not self.enabled or not self._due(now):
      return
    self.last, self.last_done = now, self.done
    rate = self.done / max(now - self.start, 1e-9)
    eta = format_seconds((self.total - self.done) / rate) if rate > 0 else "?"
    self._write(f"{self.label}: {self.done}/{self.total} {self.unit} "
                f"({100 * self.done / max(self.total, 1):.0f}%), {rate_text(rate)} {self.unit}/s, ETA {eta}")

  def close(self, note: str = "") -> None:
    if not self.enabled:
      return
    seconds = time.perf_counter() - self.start
    self._write(f"{self.label}: {self.done} {self.unit} in {format_seconds(seconds)} "
                f"({rate_text(self.done / max(seconds, 1e-9))} {self.unit}/s){note}", final=True)


def timed_first_call(fn: Callable, name: str, enabled: bool = True) -> Callable:
  """``fn`` that prints how long its first call took: for a jitted step, its compilation.

  The line is written as ``compiling the NAME step ... 41.3 s``; later calls go
  straight to ``fn``. With the persistent compilation cache warm, the time is
  that of loading the program.
  """
  first = [True]

  def call(*args, **kwargs):
    if not first[0]:
      return fn(*args, **kwargs)
    first[0] = False
    if enabled:
      print(f"compiling the {name} step ...", end="", file=sys.stdout, flush=True)
    start = time.perf_counter()
    try:
      out = fn(*args, **kwargs)
    except BaseException:
      if enabled:
        print(file=sys.stdout, flush=True)
      raise
    if enabled:
      print(f" {time.perf_counter() - start:.1f} s", file=sys.stdout, flush=True)
    return out

  return call


def prepare_workdir(workdir: str, subdirs: tuple[str, ...] = ()) -> None:
  """Creates ``workdir`` (and ``subdirs``) and checks it is writable: a ConfigError
  naming it, before any work that would be lost."""
  try:
    for folder in (workdir, *(os.path.join(workdir, d) for d in subdirs)):
      os.makedirs(folder, exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--workdir {workdir}: not writable ({e.strerror or e})") from None
