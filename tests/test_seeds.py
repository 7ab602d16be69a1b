"""Several SimGAN seeds in one reproduction (experiments/seeds.py): layout, plumbing, aggregation."""

import json
import os
import time
import types

import pytest


def _config(*assignments, experiment="eyesim_gaze:smoke"):
  from simgan_jax.configs import reproduce as reproduce_config

  return reproduce_config.apply_overrides(reproduce_config.get_config(experiment), list(assignments))


def _result(error, within7):
  return {"train_seconds": 1.0, "eval": {"test": {"mean_angular_error_deg": error,
                                                  "within_deg": {str(d): within7 for d in range(26)}}}}


def test_defaults_and_the_single_seed_layout():
  from simgan_jax.experiments import seeds

  for experiment in ("eyesim_gaze", "eyesim_gaze:smoke", "handsim_pose", "handsim_pose:smoke"):
    c = _config(experiment=experiment)
    assert seeds.simgan_seeds(c) == [c.simgan.seed] and seeds.refined_seeds(c) == list(c.seeds)
    assert seeds.stage_root(c, "w", c.simgan.seed) == "w" and seeds.tag(c, c.simgan.seed) == ""
  cpu = _config(experiment="eyesim_gaze:cpu")
  assert seeds.simgan_seeds(cpu) == [0, 1, 2] and seeds.refined_seeds(cpu) == [0, 1]
  assert seeds.simgan_seeds(_config(experiment="handsim_pose:cpu")) == [0, 1, 2]
  c = _config("simgan_seeds=3,5")
  assert seeds.stage_root(c, "w", 3) == "w" and seeds.stage_root(c, "w", 5) == os.path.join("w", "simgan_seed5")
  assert seeds.tag(c, 5) == "_seed5" and seeds.simgan_config(c, 5).seed == 5


@pytest.mark.parametrize("assignment, message", [
    ("simgan_seeds=1,1", "config.simgan_seeds: a seed is listed twice in (1, 1)"),
    ("refined_seeds=-1", "config.refined_seeds: expected a list of integers >= 0"),
])
def test_bad_seed_lists_are_one_line(assignment, message):
  from simgan_jax.errors import ConfigError
  from simgan_jax.experiments import reproduce

  with pytest.raises(ConfigError) as e:
    reproduce.validate_config(_config(assignment))
  assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_refined_rows_are_trained_per_simgan_seed_and_spread_over_all_runs():
  """Stub estimators: shared rows once, refined rows per SimGAN seed, mean +- std over every run."""
  from simgan_jax.experiments import reproduce
  from simgan_jax.experiments import seeds

  config = _config("simgan_seeds=0,1", "refined_seeds=0,1", "seeds=0,1,2",
                   "training_sets=synthetic,refined,target")
  calls = []
  # Refiner 0's refined rows score 8 and 9 degrees, refiner 1's 11 and 12: per refiner the
  # estimator seeds differ by 1 (std 0.5); between refiners the means differ by 3.
  errors = {"w": {"0": 8.0, "1": 9.0}, "w/simgan_seed1": {"0": 11.0, "1": 12.0}}

  def train_estimators(c, pools, root, log):
    calls.append((root, tuple(c.training_sets), tuple(c.seeds), pools["name"]))
    if "refined" in c.training_sets:
      return {"refined": {str(e): _result(errors[root][str(e)], 0.5) for e in c.seeds}}
    return {n: {str(e): _result(10.0, 0.3) for e in c.seeds} for n in c.training_sets}

  stages = types.SimpleNamespace(train_estimators=train_estimators, summarize=reproduce.summarize)
  refiners = {0: {"root": "w", "pools": {"name": "pools0"}}, 1: {"root": "w/simgan_seed1", "pools": {"name": "pools1"}}}
  summary, results = seeds.train_estimators(config, stages, refiners, "w", log=None)
  assert calls == [("w", ("synthetic", "target"), (0, 1, 2), "pools0"),
                   ("w", ("refined",), (0, 1), "pools0"), ("w/simgan_seed1", ("refined",), (0, 1), "pools1")]
  assert list(results) == ["synthetic", "refined", "target"]  # the config's order
  assert sorted(results["refined"]) == ["simgan0/seed0", "simgan0/seed1", "simgan1/seed0", "simgan1/seed1"]
  r = summary["refined"]
  assert r["num_seeds"] == 4 and r["num_simgan_seeds"] == 2 and r["num_estimator_seeds"] == 2
  assert r["error_mean"] == pytest.approx(10.0)
  # Over all four runs (8, 9, 11, 12): std sqrt(2.5) = 1.58, not the 0.5 within one refiner.
  assert r["error_std"] == pytest.approx(2.5 ** 0.5)
  assert r["error_std_simgan"] == pytest.approx(1.5)  # of the per-refiner means 8.5 and 11.5
  assert "num_simgan_seeds" not in summary["synthetic"] and summary["synthetic"]["num_seeds"] == 3
  text = "\n".join(seeds.spread_lines(summary, "°", "within7", "within 7°"))
  assert "over 2 SimGAN seeds x 2 estimator seeds (4 runs" in text
  assert "spread over SimGAN seeds alone" in text and "`refined` 1.50° mean error, 0.0 points within 7°" in text
  # One SimGAN seed: the old keys, no spread statement.
  summary, results = seeds.train_estimators(_config("training_sets=refined"), stages, {0: refiners[0]}, "w", None)
  assert sorted(results["refined"]) == ["0", "1"] and "num_simgan_seeds" not in summary["refined"]
  assert seeds.spread_lines(summary, "°", "within7", "within 7°") == []


def test_refiner_stages_per_simgan_seed(tmp_path, monkeypatch):
  """Stages 1-3 and 5 with stubbed training: each seed in its own folder, timed under its own name."""
  from simgan_jax.experiments import seeds

  trained = []
  monkeypatch.setattr(seeds.train, "train_and_evaluate", lambda c, d: trained.append((c.seed, d)))
  monkeypatch.setattr(seeds.selection_lib, "best_checkpoint", lambda c, d: {
      "step": 6 + c.seed, "scores": {str(6 + c.seed): 0.5}, "selection_scores": {str(6 + c.seed): 0.25}})
  config = _config("simgan_seeds=0,4")
  workdir, timings = str(tmp_path), {}

  def timed(name, fn, record_none=True):  # reproduce.stage_timer's signature
    timings[name] = 1.0
    return fn()

  refine = lambda c, root, simgan_dir, step, log: {"root": root, "step": step}  # noqa: E731
  refiners = seeds.train_refiners(config, workdir, timed, lambda line: None, refine)
  other = os.path.join(workdir, "simgan_seed4")
  assert trained == [(0, os.path.join(workdir, "simgan")), (4, os.path.join(other, "simgan"))]
  assert refiners[4]["pools"] == {"root": other, "step": 10}
  assert json.load(open(os.path.join(other, "selection.json")))["step"] == 10
  assert json.load(open(os.path.join(workdir, "selection.json")))["step"] == 6
  assert list(timings) == ["simgan", "refine", "simgan_seed4", "refine_seed4"]
  stages = types.SimpleNamespace(label_preservation=lambda c, pools, w: {
      "pupil_shift_px": {"mean": pools["step"] / 10}})
  two = {"refined": {"two_sample_accuracy": 0.9}}
  records = seeds.other_preservations(config, stages, refiners, workdir, timed, lambda c, pools, root: two)
  assert records == {"4": {"step": 10, "realism_kid": 0.5, "selection_score": 0.25, "pupil_shift_px": 1.0,
                           "two_sample_refined": 0.9}}
  assert json.load(open(os.path.join(other, "preservation.json")))["two_sample"] == two
  assert "preservation_seed4" in timings and "two_sample_seed4" in timings
  records["0"] = dict(records["4"], step=6)
  table = seeds.selection_lines({"simgan_seeds": records}, {"pupil_shift_px": "pupil shift (px)"})
  assert "| SimGAN seed | selected step | realism KID | selection score | pupil shift (px) |" in table[2]
  assert "| 4 | 10 | 0.5 | 0.25 | 1 | 90.0% |" in table
  assert seeds.selection_lines({"simgan_seeds": {"0": records["0"]}}, {}) == []


def test_two_simgan_seeds_smoke(tmp_path, monkeypatch):
  """Every stage at smoke size with two SimGAN seeds, two rows and one estimator seed."""
  import matplotlib.axes

  from simgan_jax.experiments import reproduce

  labels = []
  set_ylabel = matplotlib.axes.Axes.set_ylabel
  monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel",
                      lambda self, text, *a, **k: labels.append(text) or set_ylabel(self, text, *a, **k))

  config = _config("simgan_seeds=0,1", "seeds=0", "training_sets=refined,target", "data_multiplier=1",
                   "num_sample_images=2", "simgan.drift.enabled=false", "simgan.two_sample.enabled=false",
                   "test_data=eyesim_target:validation")  # the split the ablations use
  workdir = tmp_path / "repro"
  result = reproduce.run(config, str(workdir), log=lambda line: None)
  for root in (workdir, workdir / "simgan_seed1"):
    assert (root / "simgan" / "origin.json").exists() and (root / "selection.json").exists()
    assert (root / "gaze" / "refined" / "seed_0" / "results.json").exists()
    assert (root / "two_sample.json").exists() and (root / "refined").is_dir()
  assert not (workdir / "simgan_seed1" / "gaze" / "target").exists()  # the target row is trained once
  assert result["summary"]["refined"]["num_simgan_seeds"] == 2 and result["summary"]["target"]["num_seeds"] == 1
  assert sorted(result["preservation"]["simgan_seeds"]) == ["0", "1"]
  report = open(result["report"]).read()
  assert "over 2 SimGAN seeds x 1 estimator seeds (2 runs" in report
  assert "| SimGAN seed | selected step |" in report and "| 1 | " in report
  assert "was not trained by this run" not in report
  timings = json.load(open(workdir / "timings.json"))
  assert {"simgan", "simgan_seed1", "refine_seed1", "two_sample_seed1"} <= set(timings)
  # The within-d figure names the set it was evaluated on (it once said "test" on validation runs).
  assert "eyesim_target:validation images within distance (%)" in labels


def test_launcher_says_runs_over_simgan_and_estimator_seeds():
  from simgan_jax.experiments import seeds as seeds_lib

  assert seeds_lib.runs_text({"num_seeds": 3}) == "3 seeds"
  assert seeds_lib.runs_text({"num_seeds": 6, "num_simgan_seeds": 3, "num_estimator_seeds": 2}) == (
      "6 runs: 3 SimGAN seeds x 2 estimator seeds")


def test_a_stage_switched_off_records_no_time_so_a_later_run_records_its_own(tmp_path):
  """The final two-sample test off, then on in a rerun of the same workdir: the rerun's
  time is recorded (it once kept the first run's 0.0 min); a stage already timed keeps
  its time when a rerun finds it done."""
  from simgan_jax.experiments import caveats, reproduce

  path = str(tmp_path / "timings.json")
  timings = {}
  timed = reproduce.stage_timer(timings, caveats.CpuClock(str(tmp_path), "cpu"), path)
  assert timed("two_sample", lambda: None, record_none=False) is None
  assert "two_sample" not in timings  # switched off: nothing recorded
  timed("two_sample", lambda: time.sleep(0.05) or {"refined": 1}, record_none=False)
  assert timings["two_sample"] >= 0.05
  first = timings["two_sample"]
  timed("two_sample", lambda: {"refined": 1}, record_none=False)  # a rerun finds it done
  assert timings["two_sample"] == first and json.load(open(path))["two_sample"] == first
  timed("simgan", lambda: None)  # stages that return nothing are timed as before
  assert "simgan" in timings and "simgan" in json.load(open(tmp_path / caveats.CPU_TIMINGS_FILE))["stages"]
