"""Caveats a reproduction's report prints from its own inputs (reports are never edited by hand).

* ``origin_lines``: the SimGAN stage was trained in another directory and copied or
  moved here (``stamp_origin`` writes ``origin.json`` into a SimGAN workdir when its
  training starts there; a run without checkpoints yet is the only one that can say).
* ``timing_lines``: on a CPU run, some stage kept less than ``MIN_BUSY_CORES`` of a
  core busy (it was paused or waited), or other processes kept at least
  ``MIN_OTHER_CORES`` cores busy while it ran (it shared the machine): its wall time is
  an upper bound. ``CpuClock`` records each stage's process CPU time, and the machine's
  CPU time spent by other processes (Linux ``/proc/stat``), beside ``timings.json``.
* ``reuse_lines``: the estimator stage found estimators finished by an earlier run (a
  resumed run, or rows copied from another workdir) and trained only the rest: its wall
  time is this run's part, not the stage's cost; the estimators' own training times
  (``train_seconds`` in their ``results.json``) are summed beside it.
* ``samples_note_lines``: what a person saw in ``samples.png``, given with
  ``launch/reproduce.py --samples_note`` after looking at it (``write_samples_note``), and
  printed only while the grid is the one they looked at (its SHA-256 is kept with the note).
* ``share_noise_lines``: every synthetic- or refined-trained row's share within the threshold is
  too small to separate rows (the hand run at ``:cpu`` size); read the mean error.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import time

from simgan_jax.errors import DataError

ORIGIN_FILE = "origin.json"
CPU_TIMINGS_FILE = "timings_cpu.json"
# A JAX stage on an idle CPU machine keeps at least one core busy; below this many
# CPU seconds per wall second it was paused or shared.
MIN_BUSY_CORES = 0.75
# Other processes busy on this many cores on average during a stage: it shared the machine.
MIN_OTHER_CORES = 0.5
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


def machine_cpu_seconds(stat: str = "/proc/stat") -> float | None:
  """CPU seconds all processes of this machine have used since boot (Linux), else None."""
  try:
    with open(stat) as f:
      fields = f.readline().split()
  except OSError:
    return None
  if not fields or fields[0] != "cpu":
    return None
  user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuClock:
  """Per stage, in ``workdir/timings_cpu.json``: this process's CPU seconds (``stages``)
  and the CPU seconds other processes used meanwhile (``others``; absent where the machine
  cannot say). Recorded by the run that records the stage's wall time in timings.json
  (not for stages an older run did)."""

  def __init__(self, workdir: str, platform: str, machine=machine_cpu_seconds):
    self.path = os.path.join(workdir, CPU_TIMINGS_FILE)
    self.record = read_json(self.path) or {"platform": platform, "stages": {}}
    self.record.setdefault("others", {})
    self.machine = machine
    self.start = self.machine_start = None

  def begin(self) -> None:
    self.start = time.process_time()
    self.machine_start = self.machine()

  def end(self, name: str) -> None:
    own = time.process_time() - self.start
    self.record["stages"][name] = own
    machine_end = self.machine()
    if self.machine_start is not None and machine_end is not None:
      self.record["others"][name] = max(0.0, machine_end - self.machine_start - own)
    with open(self.path + ".tmp", "w") as f:
      json.dump(self.record, f, indent=1)
    os.replace(self.path + ".tmp", self.path)


def timing_lines(workdir: str, timings: dict[str, float]) -> list[str]:
  """The caveat when a stage of a CPU run idled (under ``MIN_BUSY_CORES`` cores busy) or
  shared the machine (other processes on ``MIN_OTHER_CORES`` cores or more)."""
  record = read_json(os.path.join(workdir, CPU_TIMINGS_FILE))
  if not record or record.get("platform") != "cpu":
    return []
  judged = [name for name in record["stages"] if timings.get(name, 0) >= MIN_STAGE_SECONDS]
  idle = [f"{name} ({record['stages'][name] / timings[name]:.2f} cores busy on average)" for name in judged
          if record["stages"][name] / timings[name] < MIN_BUSY_CORES]
  others = record.get("others", {})
  shared = [f"{name} ({others[name] / timings[name]:.2f} cores)" for name in judged
            if name in others and others[name] / timings[name] >= MIN_OTHER_CORES]
  if not idle and not shared:
    return []
  said = []
  if idle:
    said.append(f"{', '.join(idle)} kept less than {MIN_BUSY_CORES:g} of a CPU core busy, so the run was "
                "paused or waited on other jobs")
  if shared:
    said.append(f"other processes kept cores busy on average during {', '.join(shared)}, so the run "
                "shared the machine")
  return [f"Read these times as upper bounds: {'; '.join(said)} (CPU time per stage: `{CPU_TIMINGS_FILE}`).",
          ""]


def reuse_lines(workdir: str, timings: dict[str, float], stage: str, training_sets) -> list[str]:
  """The caveat when ``timings[stage]`` (the estimator stage) is shorter than the training
  time its estimators recorded: some were trained before this run and reused. Only the
  rows of ``training_sets`` count (a workdir may hold rows another run's report shows)."""
  paths = (glob.glob(os.path.join(workdir, "*", "*", "seed_*", "results.json"))
           + glob.glob(os.path.join(workdir, "simgan_seed*", "*", "*", "seed_*", "results.json")))
  paths = [p for p in paths if os.path.basename(os.path.dirname(os.path.dirname(p))) in set(training_sets)]
  trained = [float((read_json(p) or {}).get("train_seconds", 0.0)) for p in paths]
  if stage not in timings or not sum(trained) > timings[stage]:
    return []
  return [f"The {stage} stage's {timings[stage] / 60:.1f} min is this run's part: it found estimators "
          f"finished earlier (a resumed run, or rows copied from another workdir) and reused them. The "
          f"{len(trained)} estimators' own training took {sum(trained) / 60:.1f} min in all "
          "(`train_seconds` in their results.json; evaluation not included).", ""]


SAMPLES_NOTE_FILE = "samples_note.json"


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def write_samples_note(workdir: str, text: str) -> None:
  """Keeps ``text`` (what a person saw in ``WORKDIR/samples.png``) with the grid's hash and
  today's date, for the report's Samples section."""
  grid = os.path.join(workdir, "samples.png")
  if not os.path.isfile(grid):
    raise DataError(f"--samples_note: {grid} does not exist yet; run once and look at the grid first")
  if not text.strip():
    raise DataError("--samples_note: empty; say what you saw in the grid")
  with open(os.path.join(workdir, SAMPLES_NOTE_FILE), "w") as f:
    json.dump({"text": text.strip(), "date": datetime.date.today().isoformat(), "sha256": _sha256(grid)}, f, indent=1)


def samples_note_lines(workdir: str) -> list[str]:
  """The note on ``samples.png`` (``write_samples_note``) if it describes this very grid;
  a line saying it was withheld if the grid has been redrawn differently since; else []."""
  note = read_json(os.path.join(workdir, SAMPLES_NOTE_FILE))
  grid = os.path.join(workdir, "samples.png")
  if note is None or not os.path.isfile(grid):
    return []
  if note.get("sha256") != _sha256(grid):
    return [f"(A person's note on this grid, written {note.get('date')}, described an earlier samples.png; "
            "it is not shown. Look again and rerun with --samples_note.)", ""]
  return [f"What a person saw in this grid ({note['date']}, `--samples_note`): {note['text']}", ""]


def share_noise_lines(summary, key: str, label: str, error_unit: str) -> list[str]:
  """The caveat when no row trained on synthetic or refined images (the rows the report
  compares; not ``target`` or ``oracle``) has a share (``summary[row][key]``, %) of
  ``SHARE_NOISE_PERCENT``: comparing those shares compares noise."""
  shares = [s[key] for name, s in summary.items() if name not in ("target", "oracle")]
  if not shares or max(shares) >= SHARE_NOISE_PERCENT:
    return []
  return [f"No row trained on synthetic or refined images has {SHARE_NOISE_PERCENT:g}% of test images {label} "
          f"({min(shares):.1f}-{max(shares):.1f}%), so comparing those shares compares noise: read the "
          f"mean joint error ({error_unit}) instead.", ""]
