"""Scalars to TensorBoard event files, to ``metrics.jsonl`` and to the console."""

from __future__ import annotations

import datetime
import json
import os
import sys

import numpy as np


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
  rate = scalars.get("images_per_second", 0.0)
  return f"step {step}/{total} [{phase}] " + " ".join(parts) + f" | {rate:.0f} img/s | ETA {eta}"


def print_line(line: str) -> None:
  print(line, file=sys.stdout, flush=True)
