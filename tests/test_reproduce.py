"""The reproduction pipeline (launch/reproduce.py) at smoke size, and its parts."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.conftest import REPO


def _smoke_config(**overrides):
  from simgan_jax.configs import reproduce as reproduce_config

  c = reproduce_config.get_config("eyesim_gaze:smoke")
  c.update(overrides)
  return c


def test_overrides_parse_as_the_field_type():
  from simgan_jax.configs import reproduce as reproduce_config

  c = reproduce_config.apply_overrides(_smoke_config(), [
      "seeds=3,4,5", "simgan.num_iterations=7", "simgan.loss.self_regularization_weight=0.125",
      "simgan.adaptive_kg=true", "gaze.model.conv_features=2,2,4,4,4", "target_train_data="])
  assert c.seeds == (3, 4, 5)
  assert c.simgan.num_iterations == 7 and c.simgan.loss.self_regularization_weight == 0.125
  assert c.simgan.adaptive_kg is True
  assert c.gaze.model.conv_features == (2, 2, 4, 4, 4)
  assert c.target_train_data == ""
  assert c.overrides[0] == "seeds=3,4,5" and c.overrides[-1] == "target_train_data="  # quoted in report.md
  with pytest.raises(ValueError, match="no config field 'simgan.nope'"):
    reproduce_config.apply_overrides(c, ["simgan.nope=1"])
  with pytest.raises(ValueError, match="expected a int"):
    reproduce_config.apply_overrides(c, ["num_synthetic=many"])
  # Placeholder fields (unset: None) parse as their declared type, and go back to unset.
  c = reproduce_config.apply_overrides(c, ["simgan.optimizer.refiner_learning_rate=1e-4",
                                           "simgan.optimizer.discriminator_learning_rate=4e-4"])
  assert c.simgan.optimizer.refiner_learning_rate == 1e-4 and c.simgan.optimizer.discriminator_learning_rate == 4e-4
  assert reproduce_config.apply_overrides(c, ["simgan.optimizer.refiner_learning_rate=none"]).simgan.optimizer.refiner_learning_rate is None
  with pytest.raises(ValueError, match="refiner_learning_rate='fast': expected a float"):
    reproduce_config.apply_overrides(c, ["simgan.optimizer.refiner_learning_rate=fast"])
  with pytest.raises(ValueError, match="expected a int"):  # only placeholders take none
    reproduce_config.apply_overrides(c, ["simgan.num_iterations=none"])
  with pytest.raises(ValueError, match="unknown experiment"):
    reproduce_config.get_config("cats")
  with pytest.raises(ValueError, match="unknown variant"):
    reproduce_config.get_config("eyesim_gaze:tpu")


def test_selection_takes_the_lowest_adversarial_score(tmp_path):
  from simgan_jax.experiments import reproduce

  c = _smoke_config().simgan  # pretraining ends at step 3 + 2 = 5
  scores = {3: 0.1, 6: 5.0, 9: 2.0, 12: 3.0, 15: 0.5}
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for step, kid in scores.items():
      f.write(json.dumps({"step": step, "realism_kid": kid}) + "\n")
    f.write(json.dumps({"step": 12, "realism_kid": 1.0}) + "\n")  # a resumed run's entry wins
    f.write(json.dumps({"step": 13, "discriminator_loss": 1.0}) + "\n")
  for step in (3, 6, 9, 12):  # no checkpoint kept for step 15
    os.makedirs(tmp_path / "checkpoints" / str(step))
  selection = reproduce.select_checkpoint(c, str(tmp_path))
  # Step 3 (pretraining) scores lowest but is no candidate; 15 has no checkpoint.
  assert selection["step"] == 12
  assert selection["candidates"] == [6, 9, 12]


def test_summary_and_gap_closed_arithmetic():
  from simgan_jax.experiments import reproduce

  def result(error, within7):
    curve = {str(d): within7 for d in range(26)}
    return {"train_seconds": 1.0, "eval": {"test": {"mean_angular_error_deg": error, "within_deg": curve}}}

  summary = reproduce.summarize({
      "synthetic": {"0": result(12.0, 0.2), "1": result(10.0, 0.4)},
      "refined": {"0": result(9.0, 0.5), "1": result(9.0, 0.5)},
      "target": {"0": result(5.0, 0.8), "1": result(7.0, 0.6)},
  })
  assert summary["synthetic"]["error_mean"] == pytest.approx(11.0)
  assert summary["synthetic"]["error_std"] == pytest.approx(1.0)
  assert summary["synthetic"]["within7_mean"] == pytest.approx(30.0)
  # Gap 11 - 6 = 5 degrees; refined closes 11 - 9 = 2 of it.
  assert reproduce.gap_closed(summary, "refined", "synthetic") == pytest.approx(0.4)
  from simgan_jax.experiments import report

  assert report.comparison_lines(summary) == [
      "- `refined` vs `synthetic`: the mean error drops by 2.00°, more than the larger seed spread of "
      "the two (1.00°); refinement closes 40% of the synthetic-to-target error gap (11.00° to 6.00°)."]
  without_target = {k: v for k, v in summary.items() if k != "target"}
  assert reproduce.gap_closed(without_target, "refined", "synthetic") is None
  assert report.comparison_lines(without_target) == [
      "- `refined` vs `synthetic`: the mean error drops by 2.00°, more than the larger seed spread of "
      "the two (1.00°)."]
  summary["refined"]["error_mean"] = 10.5  # a 0.5 degree gain within the 1 degree spread
  assert "by 0.50°, not more than the larger seed spread" in report.comparison_lines(summary)[0]
  summary["target"]["error_mean"] = 12.0  # no gap: no share
  assert reproduce.gap_closed(summary, "refined", "synthetic") is None


def test_error_change_sign_spread_and_verdict():
  from simgan_jax.experiments import rows

  def row(mean, std):
    return {"error_mean": mean, "error_std": std}

  # A rise is a negative drop; its size, not its sign, is judged against the larger spread.
  assert rows.error_change({"synthetic": row(9.0, 0.2), "refined": row(10.0, 0.5)}, "refined", "synthetic") \
      == (pytest.approx(-1.0), 0.5, "more than")
  # The spread is the larger of the two rows', from either side; equal to it is not beyond it.
  assert rows.error_change({"synthetic": row(10.0, 0.1), "refined": row(9.0, 1.0)}, "refined", "synthetic") \
      == (pytest.approx(1.0), 1.0, "not more than")
  assert rows.error_change({"synthetic": row(10.0, 0.9), "refined": row(9.0, 0.3)}, "refined", "synthetic") \
      == (pytest.approx(1.0), 0.9, "more than")


def test_training_sets_pick_the_rows():
  from simgan_jax.configs import reproduce as reproduce_config
  from simgan_jax.errors import ConfigError
  from simgan_jax.experiments import reproduce

  pools = {"synthetic": np.zeros((8, 35, 55, 1), np.uint8), "refined": np.ones((8, 35, 55, 1), np.uint8),
           "labels": {"gaze": np.zeros((8, 3), np.float32)}}
  config = reproduce_config.apply_overrides(_smoke_config(num_synthetic=2, num_label_pairs=2),
                                             ["training_sets=refined,synthetic"])
  reproduce.validate_config(config)
  sources = reproduce.training_sources(config, pools)
  assert list(sources) == ["refined", "synthetic"]  # in the order asked for
  assert len(sources["refined"]().images) == 2
  config = reproduce_config.apply_overrides(_smoke_config(), ["target_train_data="])
  assert "target" not in reproduce.training_sources(config, pools)  # no labelled target data: no row
  for bad in ("training_sets=refined,cats", "training_sets="):
    with pytest.raises(ConfigError, match="config.training_sets: expected names from synthetic"):
      reproduce.validate_config(reproduce_config.apply_overrides(_smoke_config(), [bad]))


def test_oracle_pool_renders_the_synthetic_scenes_with_the_target_appearance():
  from simgan_jax.configs import reproduce as reproduce_config
  from simgan_jax.data import sources as sources_lib
  from simgan_jax.errors import ConfigError, DataError
  from simgan_jax.tasks import data as data_lib
  from simgan_jax.probe import pupil
  from simgan_jax.experiments import reproduce
  from simgan_jax.simulators import eyes

  config = _smoke_config(num_synthetic=6, num_label_pairs=6)
  reproduce.validate_config(config)
  # The synthetic pool as refine.py renders it: image i from fold_in(PRNGKey(synthetic_seed), i).
  source = data_lib.train_source(config.synthetic_data, config.gaze)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(config.synthetic_seed), i))(np.arange(6))
  synthetic, labels = eyes.render_batch(keys, source.config)
  labels = {k: np.asarray(v) for k, v in labels.items()}
  oracle = reproduce.oracle_pool(config, labels)
  assert oracle.shape == (6, 35, 55, 1) and oracle.dtype == np.uint8
  # Other pixels (textures, noise, blur), the same eye: the pupil stays near where it was.
  assert np.abs(oracle.astype(float) - sources_lib.from_unit_range(synthetic)).mean() > 10
  localize = jax.jit(pupil.localize_pupil)
  shift = np.linalg.norm(np.asarray(localize(sources_lib.to_unit_range(oracle)))
                         - np.asarray(localize(synthetic)), axis=-1)
  assert np.median(shift) < 3.0, shift
  moved = dict(labels, gaze=labels["gaze"][::-1])
  with pytest.raises(DataError, match="oracle: the simulator scenes do not match"):
    reproduce.oracle_pool(config, moved)
  # launch/diagnose_realism.py's rows: all factors off is the simulator's own image; one
  # factor off changes some pixels, less than all off; unknown names are refused.
  from simgan_jax.simulators import target
  plain = reproduce.oracle_pool(config, labels, target.APPEARANCE_FACTORS)
  assert np.abs(plain.astype(float) - sources_lib.from_unit_range(synthetic).astype(float)).max() <= 1
  no_blocking = reproduce.oracle_pool(config, None, ("blocking",))
  assert 0 < np.abs(no_blocking.astype(int) - oracle).mean() < np.abs(plain.astype(int) - oracle).mean()
  with pytest.raises(ConfigError, match="factors_off: unknown appearance factor.*'jpeg'"):
    reproduce.oracle_pool(config, labels, ("jpeg",))
  with pytest.raises(ConfigError, match="'oracle' .* needs a built-in simulator"):
    reproduce.validate_config(reproduce_config.apply_overrides(
        reproduce_config.get_config("unityeyes_mpiigaze:smoke"), ["training_sets=synthetic,oracle"]))


def test_smoke_reproduction_end_to_end(tmp_path):
  """Every stage at smoke size through the launcher, then a rerun that only reads back."""
  workdir = tmp_path / "repro"
  doc = tmp_path / "docs" / "results.md"
  command = [sys.executable, os.path.join(REPO, "launch", "reproduce.py"), "--experiment=eyesim_gaze:smoke",
             f"--workdir={workdir}", "--set", "seeds=0", f"--publish={doc}"]
  first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]

  metrics = [json.loads(line) for line in open(workdir / "simgan" / "metrics.jsonl")]
  kid_steps = sorted(m["step"] for m in metrics if "realism_kid" in m)
  assert kid_steps == [3, 6, 9]  # a score at every checkpoint
  selection = json.load(open(workdir / "selection.json"))
  assert selection["step"] in (6, 9)
  assert selection["scores"][str(selection["step"])] == min(selection["scores"][str(s)] for s in (6, 9))

  for name in ("synthetic", "synthetic_4x", "refined", "refined_4x", "oracle", "target"):
    results = json.load(open(workdir / "gaze" / name / "seed_0" / "results.json"))
    assert results["steps"] == 4 and results["eval"]["test"]["num_images"] == 256  # target_eval_examples of the smoke estimator
  assert not (workdir / "gaze" / "synthetic" / "seed_1").exists()  # one estimator seed, as --set asked

  # The refined set is a TFDS dataset with the simulator's labels, in input order.
  from simgan_jax.data import tfds_sources

  refined, labels = tfds_sources.load_directory(str(workdir / "refined"), labels="all")
  assert refined.shape == (256, 35, 55, 1) and refined.dtype == np.uint8
  np.testing.assert_array_equal(labels["index"], np.arange(256))
  assert labels["gaze"].shape == (256, 3)

  preservation = json.load(open(workdir / "preservation.json"))
  assert preservation["num_pairs"] == 32
  for key in ("pupil_shift_px", "localiser_error_synthetic_px", "gaze_drift_deg",
              "oracle_pupil_shift_px", "oracle_gaze_drift_deg"):
    assert np.isfinite(preservation[key]["mean"]) and preservation[key]["num"] == 32
  assert set(preservation["texture"]) == {"synthetic", "refined", "oracle"}  # probe/texture.py
  assert all(t["num"] == 32 and 0 <= t["shared"] <= t["coherence"] + 1e-9 <= 1 + 1e-9
             for t in preservation["texture"].values())

  # The final two-sample test: both image sets scored against the same real images, cached.
  final = preservation["two_sample"]
  assert final == json.load(open(workdir / "two_sample.json"))
  for name in ("refined", "synthetic", "oracle"):
    r = final[name]
    assert 0.0 <= r["two_sample_low"] <= r["two_sample_accuracy"] <= r["two_sample_high"] <= 1.0

  report = open(workdir / "report.md").read()
  assert "| refined (selected refiner) |" in report and "| raw synthetic |" in report
  for row in ("| synthetic |", "| synthetic, 4x data |", "| refined synthetic |",
              "| refined synthetic, 4x data |", "| target-domain labels (upper bound) |",
              "| synthetic scenes, target appearance (a perfect refiner) |", "- `oracle` (the synthetic",
              "gaze drift, synthetic → oracle", "| oracle (synthetic scenes, target appearance) |",
              "pupil-centre shift", "gaze drift", "![samples](samples.png)",
              "coherence / shared coherence: synthetic "):
    assert row in report
  for figure in ("within_d.png", "losses.png", "samples.png"):
    assert (workdir / figure).stat().st_size > 1000
    assert (doc.parent / f"results_{figure}").exists()
  assert "](results_within_d.png)" in doc.read_text()
  assert "synthetic: within 7 deg" in first.stdout

  # A rerun finds every stage done: no training, the same numbers.
  second = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "starting at step 0" not in second.stdout
  assert "is already done" in second.stderr + second.stdout
  results = lambda out: out.split("\ndone: ")[0].splitlines()[-6:]  # noqa: E731
  assert results(first.stdout) == results(second.stdout)
  # The closing block: the selected checkpoint (the one selection.json names), where, what next.
  block = "done: " + first.stdout.split("\ndone: ")[1]
  assert f"selected checkpoint: step {selection['step']} (" in block and "  rule: lowest " in block
  assert f"  report: {workdir}/report.md" in block and "next:\n" in block
  facts = json.loads(open(workdir / "summary.jsonl").readline())
  assert facts["command"] == "reproduce" and facts["selected"]["step"] == selection["step"]


def test_bad_experiment_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "reproduce.py"),
                           "--experiment=eyesim_gaze:huge", f"--workdir={tmp_path}"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith("error: --experiment: unknown variant 'huge'")


def test_refining_hand_data_with_the_eye_simgan_is_one_line_before_any_stage(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "reproduce.py"),
                           "--experiment=eyesim_gaze:smoke", f"--workdir={tmp_path}/w", "--set",
                           "synthetic_data=handsim"], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 1 and not os.path.exists(tmp_path / "w")
  assert result.stderr.strip().splitlines() == [
      "error: --set synthetic_data=handsim: handsim images show hands, the refiner was trained on eyesim "
      "(eyes); pass --allow_domain_mismatch to refine them anyway"]


def test_unityeyes_mpiigaze_preset_on_fixtures(tmp_path):
  """The paper's preset runs every stage on prepared fixture datasets in the real formats."""
  from simgan_jax.configs import reproduce as reproduce_config
  from simgan_jax.data.builders.prepare import prepare
  from simgan_jax.experiments import reproduce
  from tests import fixtures_data

  fixtures_data.write_unityeyes(tmp_path / "unity", count=6)
  fixtures_data.write_mpiigaze(tmp_path / "mpii", days={0: [1, 2], 12: [1]}, count=4)
  data = tmp_path / "data"
  prepare("unityeyes", tmp_path / "unity", data)
  prepare("mpiigaze", tmp_path / "mpii", data)
  config = reproduce_config.apply_overrides(reproduce_config.get_config("unityeyes_mpiigaze:smoke"), [
      f"data_dir={data}", "num_synthetic=2", "data_multiplier=2", "num_label_pairs=4", "seeds=0",
      "num_sample_images=2", "simgan.two_sample.num_test=8",  # the fixture has 16 real images
      "training_sets=refined_4x,target"])  # the other rows: the eyesim smoke test
  result = reproduce.run(config, str(tmp_path / "repro"), log=lambda line: None)
  assert set(result["summary"]) == {"refined_4x", "target"}
  test_images = result["summary"]["target"]  # evaluated on MPIIGaze's test split (person 12)
  assert np.isfinite(test_images["error_mean"])
  assert result["preservation"]["num_pairs"] == 4
  assert "gaze_drift_deg" in result["preservation"]
  assert os.path.exists(result["report"])


def test_report_states_the_oracle_floor_from_its_inputs():
  # The caveat once added to docs/results_eyesim.md by hand is printed from the numbers.
  from simgan_jax.experiments import report

  def r(acc, low, high):
    return {"two_sample_accuracy": acc, "two_sample_low": low, "two_sample_high": high}

  t = {"features": (8,), "steps": 1, "num_images": 20, "num_test": 5, "refined": r(1.0, 0.99, 1.0),
       "synthetic": r(1.0, 0.99, 1.0), "oracle": r(0.632, 0.599, 0.665)}
  text = "\n".join(report.two_sample_lines({"two_sample": t}))
  assert "told from the target pool 63.2% of the time" in text and "about 63%, not 50%" in text
  t["oracle"] = r(0.52, 0.48, 0.56)  # indistinguishable within its interval: no caveat
  assert "not 50%" not in "\n".join(report.two_sample_lines({"two_sample": t}))


def test_settings_line_names_separate_learning_rates_and_every_stabiliser_that_is_on():
  """A TTUR, R1, EMA, DiffAugment or task-consistency run must not read as the default in its report."""
  from simgan_jax.configs import default
  from simgan_jax.configs import reproduce as reproduce_config
  from simgan_jax.experiments import report

  c = reproduce_config.get_config("eyesim_gaze:cpu")  # camera-only: no trunk, so no self-regularisation
  assert report.training_text(c.simgan) == (
      "adam lr 0.0002, no self-regularisation (its term is 0 without a trunk); light stage (random light "
      "and tone, learned magnitudes, learned mean exposure), sensor stage (random blur and sensor noise, "
      "learned magnitudes), JPEG stage (standard table, learned quality per image)")
  c.simgan = default.get_config("cpu")
  assert report.training_text(c.simgan) == "adam lr 0.0002, lambda 1.0, psi `normalized_low_pass_4`"
  c = reproduce_config.apply_overrides(c, ["simgan.optimizer.discriminator_learning_rate=4e-4"])
  assert report.training_text(c.simgan).startswith("adam lr 0.0002 (refiner) / 0.0004 (discriminator), ")
  c = reproduce_config.apply_overrides(c, [
      "simgan.optimizer.refiner_learning_rate=1e-4", "simgan.refiner_ema.decay=0.99", "simgan.discriminator.r1_gamma=1",
      "simgan.augment.policy=translation,cutout", "simgan.loss.task_consistency_weight=0.5",
      "simgan.loss.psi=band_pass"])
  assert report.training_text(c.simgan) == (
      "adam lr 0.0001 (refiner) / 0.0004 (discriminator), lambda 1.0, psi `band_pass`; refiner EMA decay 0.99, "
      "R1 gamma 1.0, DiffAugment `translation,cutout`, task consistency 0.5")
  c = reproduce_config.apply_overrides(c, ["simgan.loss.self_regularization_free_above=0.5",
                                           "simgan.refiner.dropout_value=1.0"])
  assert "psi `band_pass` (pixels >= 0.5 free); drop-out head to 1.0, refiner EMA" in report.training_text(c.simgan)


def test_diagnose_realism_scores_the_perfect_refiner_with_factor_groups_off(tmp_path):
  """launch/diagnose_realism.py at smoke size: a row for the perfect refiner, each group
  asked for and the raw simulator, in the markdown it writes; one-line errors for an
  unknown group and a non-eye experiment."""
  script = os.path.join(REPO, "launch", "diagnose_realism.py")
  out = tmp_path / "d.md"
  workdir = tmp_path / "estimators"
  result = subprocess.run([sys.executable, script, "--experiment=eyesim_gaze:smoke",
                           "--groups=JPEG-like 8x8 blocking", f"--out={out}", "--downstream",
                           f"--workdir={workdir}", "--set", "test_data=eyesim_target:validation"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| ") and "points" in line]
  assert [r[1].strip() for r in rows] == ["none (the perfect refiner)", "JPEG-like 8x8 blocking (`blocking`)",
                                          "all (the raw simulator images)"]
  assert rows[0][4].strip() == "+0.0 points"
  assert all(0 <= float(r[2].strip().rstrip("%")) <= 100 for r in rows)
  assert "--groups='JPEG-like 8x8 blocking'" in out.read_text()
  # --downstream: each row's gaze error is the mean over its own estimators' results.
  means = []
  for row, folder in zip(rows, ("none", "jpeg_like_8x8_blocking", "all")):
    errors = [json.loads((workdir / folder / "gaze" / "oracle" / f"seed_{s}" / "results.json").read_text())
              ["eval"]["test"]["mean_angular_error_deg"] for s in (0, 1)]
    means.append(np.mean(errors))
    assert row[5].strip() == f"{np.mean(errors):.2f} +- {np.std(errors):.2f} deg"
    assert row[6].strip() == f"{means[-1] - means[0]:+.2f} deg"
  assert "tested on `eyesim_target:validation`" in out.read_text()
  bad = subprocess.run([sys.executable, script, "--experiment=eyesim_gaze:smoke", "--downstream"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
  assert bad.returncode != 0 and "--downstream needs --workdir" in bad.stderr
  assert re.search(r"` on \d{4}-\d{2}-\d{2} in \d+\.\d min\.", out.read_text())  # when it was made
  bad = subprocess.run([sys.executable, script, "--experiment=eyesim_gaze:smoke", "--groups=jpeg"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
  assert bad.returncode != 0 and "--groups: unknown group(s) 'jpeg'" in bad.stderr
  bad = subprocess.run([sys.executable, script, "--experiment=handsim_pose:smoke"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
  assert bad.returncode != 0 and "this diagnosis needs the eye target eyesim_target" in bad.stderr
