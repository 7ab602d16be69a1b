"""Caveats a reproduction's report prints from its own inputs (reports are never edited by hand).

* ``origin_lines``: the SimGAN stage was trained in another directory and copied or
  moved here (``stamp_origin`` writes ``origin.json`` into a SimGAN workdir when its
  training starts there; a run without checkpoints yet is the only one that can say).
* ``timing_lines``: some stage kept less than one CPU core busy on average (on a CPU
  run), so it was paused or waited on other jobs: its wall time is an upper bound.
  ``CpuClock`` records each stage's process CPU time beside ``timings.json``.
* ``share_noise_lines``: every simulator-trained row's share within the threshold is
  too small to separate rows (the hand run at ``:cpu`` size); read the mean error.
"""

from __future__ import annotations

import json
import os
import time

ORIGIN_FILE = "origin.json"
CPU_TIMINGS_FILE = "timings_cpu.json"
# A JAX stage on an idle CPU machine keeps at least one core busy; below this many
# CPU seconds per wall second it was paused or shared.
MIN_BUSY_CORES = 0.75
MIN_STAGE_SECONDS = 60.0  # shorter stages are not judged
SHARE_NOISE_PERCENT = 1.0  # a within-threshold share below this separates no rows


def read_json(path: str):
  """The JSON value in ``path``, or None when there is no such file."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def _display(path: str) -> str:
  path = os.path.abspath(path)
  rel = os.path.relpath(path)
  return path if rel.startswith("..") else rel


def stamp_origin(simgan_dir: str) -> None:
  """Writes ``simgan_dir/origin.json`` (where it is trained) when no training has started
  there; a directory with checkpoints but no stamp came from elsewhere and stays unstamped."""
  path = os.path.join(simgan_dir, ORIGIN_FILE)
  checkpoints = os.path.join(simgan_dir, "checkpoints")
  if os.path.exists(path) or (os.path.isdir(checkpoints) and os.listdir(checkpoints)):
    return
  os.makedirs(simgan_dir, exist_ok=True)
  with open(path, "w") as f:
    json.dump({"trained_in": os.path.abspath(simgan_dir)}, f)


def origin_lines(simgan_dir: str, name: str = "simgan/") -> list[str]:
  """The caveat when ``simgan_dir`` was trained somewhere else ([] otherwise, or unknown).
  A ``note`` in origin.json (written by whoever copied it) is quoted."""
  origin = read_json(os.path.join(simgan_dir, ORIGIN_FILE)) or {}
  trained_in = origin.get("trained_in")
  if not trained_in or os.path.abspath(trained_in) == os.path.abspath(simgan_dir):
    return []
  note = f" {origin['note'].strip()}" if origin.get("note") else ""
  return [f"The SimGAN stage (`{name}`) was not trained by this run: it was trained in "
          f"`{_display(trained_in)}` and copied or moved here, so its time above may not be the "
          f"training's.{note}", ""]


class CpuClock:
  """Process CPU seconds per stage, in ``workdir/timings_cpu.json``: recorded by the run
  that records the stage's wall time in timings.json (not for stages an older run did)."""

  def __init__(self, workdir: str, platform: str):
    self.path = os.path.join(workdir, CPU_TIMINGS_FILE)
    self.record = read_json(self.path) or {"platform": platform, "stages": {}}
    self.start = None

  def begin(self) -> None:
    self.start = time.process_time()

  def end(self, name: str) -> None:
    self.record["stages"][name] = time.process_time() - self.start
    with open(self.path + ".tmp", "w") as f:
      json.dump(self.record, f, indent=1)
    os.replace(self.path + ".tmp", self.path)


def timing_lines(workdir: str, timings: dict[str, float]) -> list[str]:
  """The caveat when a stage of a CPU run used less than ``MIN_BUSY_CORES`` cores on average."""
  record = read_json(os.path.join(workdir, CPU_TIMINGS_FILE))
  if not record or record.get("platform") != "cpu":
    return []
  idle = [(name, cpu / timings[name]) for name, cpu in record["stages"].items()
          if timings.get(name, 0) >= MIN_STAGE_SECONDS and cpu / timings[name] < MIN_BUSY_CORES]
  if not idle:
    return []
  stages = ", ".join(f"{name} ({busy:.2f} cores busy on average)" for name, busy in idle)
  return [f"Read these times as upper bounds: {stages} kept less than {MIN_BUSY_CORES:g} of a CPU core "
          "busy, so the run was paused or waited on other jobs on a shared machine "
          f"(process CPU time per stage: `{CPU_TIMINGS_FILE}`).", ""]


def share_noise_lines(summary, key: str, label: str, error_unit: str) -> list[str]:
  """The caveat when no simulator-trained row's share (``summary[row][key]``, %) reaches
  ``SHARE_NOISE_PERCENT``: comparing those shares compares noise."""
  shares = [s[key] for name, s in summary.items() if name != "target"]
  if not shares or max(shares) >= SHARE_NOISE_PERCENT:
    return []
  return [f"No simulator-trained row has {SHARE_NOISE_PERCENT:g}% of test images {label} "
          f"({min(shares):.1f}-{max(shares):.1f}%), so comparing those shares compares noise: read the "
          f"mean joint error ({error_unit}) instead.", ""]
