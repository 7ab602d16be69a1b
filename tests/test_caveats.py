"""Report caveats printed from the run's own records (experiments/caveats.py), each only when it holds."""

import json
import os
import shutil

import pytest


def test_copied_simgan_stage_is_named(tmp_path, monkeypatch):
  from simgan_jax.experiments import caveats

  monkeypatch.chdir(tmp_path)
  here = tmp_path / "a" / "simgan"
  caveats.stamp_origin(str(here))  # a fresh run: stamped where it trains
  assert caveats.origin_lines(str(here)) == []
  os.makedirs(here / "checkpoints" / "3")
  shutil.copytree(here, tmp_path / "b" / "simgan")
  lines = caveats.origin_lines(str(tmp_path / "b" / "simgan"))
  assert lines[0].startswith("The SimGAN stage (`simgan/`) was not trained by this run: it was trained in "
                             "`a/simgan` and copied or moved here")
  # A directory with checkpoints but no stamp (trained before stamps, or copied) is not stamped later.
  os.remove(tmp_path / "b" / "simgan" / caveats.ORIGIN_FILE)
  caveats.stamp_origin(str(tmp_path / "b" / "simgan"))
  assert not (tmp_path / "b" / "simgan" / caveats.ORIGIN_FILE).exists()
  assert caveats.origin_lines(str(tmp_path / "b" / "simgan")) == []
  # Whoever copies one may say why; the note is quoted.
  json.dump({"trained_in": str(here), "note": "Reused from the lp4_noise ablation (same config and seed)."},
            open(tmp_path / "b" / "simgan" / caveats.ORIGIN_FILE, "w"))
  assert caveats.origin_lines(str(tmp_path / "b" / "simgan"))[0].endswith(
      "training's. Reused from the lp4_noise ablation (same config and seed).")


def test_timings_are_called_upper_bounds_only_when_a_stage_idled(tmp_path):
  from simgan_jax.experiments import caveats

  timings = {"simgan": 1000.0, "refine": 100.0, "preservation": 5.0}
  clock = caveats.CpuClock(str(tmp_path), "cpu")
  clock.record["stages"] = {"simgan": 1500.0, "refine": 150.0, "preservation": 0.1}  # busy; a short stage
  clock.begin()
  clock.end("two_sample")
  assert caveats.timing_lines(str(tmp_path), timings) == []
  clock.record["stages"]["simgan"] = 400.0  # 0.4 cores busy: paused or shared
  clock.end("two_sample")
  lines = caveats.timing_lines(str(tmp_path), timings)
  assert lines[0].startswith("Read these times as upper bounds: simgan (0.40 cores busy on average) kept less")
  assert "refine" not in lines[0]
  assert caveats.timing_lines(str(tmp_path / "none"), timings) == []  # no CPU record: nothing claimed
  gpu = caveats.CpuClock(str(tmp_path), "gpu")  # the record is read back: its platform stays cpu
  assert gpu.record["platform"] == "cpu"
  json.dump({"platform": "gpu", "stages": {"simgan": 1.0}}, open(tmp_path / caveats.CPU_TIMINGS_FILE, "w"))
  assert caveats.timing_lines(str(tmp_path), timings) == []  # an accelerator waits with its CPU idle


def test_hand_report_points_to_the_joint_error_when_no_share_separates_rows():
  from simgan_jax.experiments import caveats

  def row(within):
    return {"within5_mean": within}

  # The oracle and target rows are not among those compared: their shares do not count.
  summary = {"synthetic": row(0.4), "refined": row(0.0), "oracle": row(3.0), "target": row(8.2)}
  lines = caveats.share_noise_lines(summary, "within5_mean", "with all joints within 20 px", "px")
  assert lines[0] == ("No row trained on synthetic or refined images has 1% of test images with all joints "
                      "within 20 px (0.0-0.4%), "
                      "so comparing those shares compares noise: read the mean joint error (px) instead.")
  summary["refined"] = row(3.0)
  assert caveats.share_noise_lines(summary, "within5_mean", "within 20 px", "px") == []


def test_timings_are_called_upper_bounds_when_other_processes_shared_the_machine(tmp_path):
  from simgan_jax.experiments import caveats

  readings = iter([100.0, 100.0 + 600.0, 700.0, 700.0 + 100.0])  # machine CPU seconds at begin/end
  clock = caveats.CpuClock(str(tmp_path), "cpu", machine=lambda: next(readings, None))
  clock.begin()
  clock.end("simgan")  # others: ~600 CPU s (this process used ~0 in between)
  clock.begin()
  clock.end("refine")  # others: ~100 CPU s
  assert 599.0 < clock.record["others"]["simgan"] <= 600.0
  clock.record["stages"].update(simgan=1500.0, refine=150.0)  # both busy on their own
  clock.end("preservation")  # writes the record (the machine reading is spent: None)
  timings = {"simgan": 1000.0, "refine": 100.0, "preservation": 5.0}
  lines = caveats.timing_lines(str(tmp_path), timings)
  # simgan: 0.60 other cores over its 1000 s; refine: 1.00 over 100 s; both at or over 0.5.
  assert lines[0] == ("Read these times as upper bounds: other processes kept cores busy on average during "
                      "simgan (0.60 cores), refine (1.00 cores), so the run shared the machine (CPU time per "
                      f"stage: `{caveats.CPU_TIMINGS_FILE}`).")
  timings["simgan"] = 2000.0  # 0.30 other cores: not said
  assert "simgan" not in caveats.timing_lines(str(tmp_path), timings)[0]


def test_machine_cpu_seconds_reads_proc_stat(tmp_path):
  import os

  from simgan_jax.experiments import caveats

  stat = tmp_path / "stat"
  tick = os.sysconf("SC_CLK_TCK")
  # user nice system idle iowait irq softirq steal guest guest_nice: idle and iowait are not busy
  stat.write_text(f"cpu  {tick} {tick} {tick} {50 * tick} {9 * tick} {tick} {tick} {tick} 0 0\ncpu0 1 2 3\n")
  assert caveats.machine_cpu_seconds(str(stat)) == 6.0
  assert caveats.machine_cpu_seconds(str(tmp_path / "missing")) is None


def test_an_estimator_stage_that_reused_finished_estimators_says_so(tmp_path):
  """The stage's wall time is this run's part when estimators were found finished: the
  report says so, with their summed training time. Catches: no caveat on a resumed run,
  one on every run (a full run's stage outlasts its estimators' training), and estimators
  of the other SimGAN seeds (simgan_seed<s>/) left out of the sum."""
  from simgan_jax.experiments import caveats

  def result(path, seconds):
    os.makedirs(path.parent, exist_ok=True)
    json.dump({"steps": 600, "train_seconds": seconds}, open(path, "w"))

  result(tmp_path / "gaze" / "synthetic" / "seed_0" / "results.json", 90.0)
  result(tmp_path / "gaze" / "refined" / "seed_0" / "results.json", 95.0)
  result(tmp_path / "simgan_seed1" / "gaze" / "refined" / "seed_0" / "results.json", 100.0)
  # A row this report does not show (another run's, in the same workdir): never counted.
  result(tmp_path / "gaze" / "refined_4x" / "seed_0" / "results.json", 500.0)
  rows = ("synthetic", "refined", "oracle")
  assert caveats.reuse_lines(str(tmp_path), {"gaze": 300.0}, "gaze", rows) == []  # all trained in this run
  assert caveats.reuse_lines(str(tmp_path), {"simgan": 300.0}, "gaze", rows) == []  # no such stage timed
  lines = caveats.reuse_lines(str(tmp_path), {"gaze": 200.0}, "gaze", rows)  # 285 s of training in 200 s
  assert lines[0] == ("The gaze stage's 3.3 min is this run's part: it found estimators finished earlier (a "
                      "resumed run, or rows copied from another workdir) and reused them. The 3 estimators' "
                      "own training took 4.8 min in all (`train_seconds` in their results.json; evaluation "
                      "not included).")


def test_samples_note_is_printed_only_for_the_grid_it_describes(tmp_path):
  """A person's words on samples.png must not outlive the grid: a redrawn grid withholds them."""
  from simgan_jax.errors import DataError
  from simgan_jax.experiments import caveats

  with pytest.raises(DataError, match=r"--samples_note: .*samples.png does not exist yet; run once and look"):
    caveats.write_samples_note(str(tmp_path), "sharp eyes")
  grid = tmp_path / "samples.png"
  grid.write_bytes(b"grid one")
  assert caveats.samples_note_lines(str(tmp_path)) == []  # no note: nothing
  with pytest.raises(DataError, match="--samples_note: empty"):
    caveats.write_samples_note(str(tmp_path), "  ")
  caveats.write_samples_note(str(tmp_path), " blurred eyes, no frame ")
  lines = caveats.samples_note_lines(str(tmp_path))
  assert lines[0].startswith("What a person saw in this grid (") and lines[0].endswith("`--samples_note`): blurred eyes, no frame")
  grid.write_bytes(b"grid two")  # a rerun drew another refiner's grid
  lines = caveats.samples_note_lines(str(tmp_path))
  assert "blurred eyes" not in " ".join(lines) and "described an earlier samples.png; it is not shown" in lines[0]
