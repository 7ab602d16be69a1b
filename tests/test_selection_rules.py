"""Label-free selection rules (simgan_jax/probe/rules.py) and how they are judged."""

import math

import numpy as np
import pytest

from simgan_jax.configs import default
from simgan_jax.errors import ConfigError
from simgan_jax.probe import rules


def test_judge_on_a_made_up_run():
  # Downstream error per checkpoint (lower is better): step 300 trains the best estimator.
  downstream = {100: 9.0, 200: 8.0, 300: 7.0, 400: 8.5}
  scores = {
      "right": {100: 4.0, 200: 2.0, 300: 1.0, 400: 3.0},  # orders them exactly
      "backwards": {100: 1.0, 200: 3.0, 300: 4.0, 400: 2.0},  # picks the worst
      "partial": {100: 2.0, 200: 1.0, 300: math.inf, 400: 3.0},  # refused the best
  }
  judged = rules.judge(scores, downstream)
  assert judged["right"]["pick"] == 300 and judged["right"]["regret"] == 0.0
  assert judged["right"]["spearman"] == pytest.approx(1.0)
  assert (judged["right"]["best"], judged["right"]["worst"]) == (7.0, 9.0)
  assert judged["backwards"]["pick"] == 100 and judged["backwards"]["regret"] == 1.0
  assert judged["backwards"]["spearman"] == pytest.approx(-1.0)
  # A refused (inf) checkpoint is not among the rule's candidates, but the rule is judged
  # against the best of all checkpoints: refusing step 300 costs it half the range.
  assert judged["partial"]["pick"] == 200 and judged["partial"]["checkpoints"] == 3
  assert judged["partial"]["best"] == 7.0 and judged["partial"]["best_step"] == 300
  assert judged["partial"]["regret"] == 0.5 and judged["partial"]["refused"] == 1
  assert judged["partial"]["refused_best"] and not judged["right"]["refused_best"]
  # A rule that scores only some checkpoints (the logged selection score skips pretraining)
  # is charged the same way.
  few = rules.judge({"few": {100: 1.0, 400: 2.0}}, downstream)["few"]
  assert (few["pick"], few["best"], few["refused"], few["regret"]) == (100, 7.0, 2, 1.0)
  # Accuracy (higher is better): the same rule ordering is now backwards.
  flipped = rules.judge({"right": scores["right"]}, downstream, higher_is_better=True)["right"]
  assert flipped["best"] == 9.0 and flipped["regret"] == 1.0 and flipped["spearman"] == pytest.approx(-1.0)
  assert rules.judge({"none": {1: 0.0}}, downstream)["none"]["pick"] is None


def test_spearman_ties_and_degenerate_cases():
  assert rules.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert rules.spearman([1, 1, 2], [5, 5, 9]) == pytest.approx(1.0)
  assert math.isnan(rules.spearman([1, 2], [2, 1])) and math.isnan(rules.spearman([1, 1, 1], [1, 2, 3]))


def _scenes(rng, n, size=16):
  """Square positions: left half (class 0) or right half (class 1)."""
  labels = rng.integers(0, 2, n)
  corners = [(rng.integers(0, size - 4), rng.integers(0, size // 2 - 4) + label * size // 2)
             for label in labels]
  return labels, corners


def _render(corners, background, square, noise, rng, size=16, mirror=False):
  images = np.full((len(corners), size, size, 1), float(background))
  for i, (y, x) in enumerate(corners):
    x = size - 4 - x if mirror else x
    images[i, y:y + 4, x:x + 4] = square
  images += rng.normal(0, noise, images.shape)
  return np.clip(images, 0, 255).astype(np.uint8)


def test_rules_prefer_refined_data_that_keeps_labels_and_looks_real():
  config = default.get_config("smoke")
  config.drift.train_steps, config.drift.batch_size = 150, 32
  config.drift.conv_features = (8, 8, 8, 8, 8)
  rng = np.random.default_rng(0)
  labels, corners = _scenes(rng, 256)
  real_labels, real_corners = _scenes(rng, 256)
  real = _render(real_corners, 80, 190, 12, rng)  # unlabelled: grey background, dimmer square, noise
  held_labels, held_corners = _scenes(rng, 200)
  heldout = _render(held_corners, 20, 230, 0, rng)  # the simulator's own look
  candidates = {
      "keeps_labels": _render(corners, 80, 190, 12, rng),  # the real look, same scenes
      "noise": rng.integers(0, 256, (256, 16, 16, 1)).astype(np.uint8),  # content destroyed
      "mirrored": _render(corners, 80, 190, 12, rng, mirror=True),  # looks real, labels wrong
  }
  y = {"label": labels.astype(np.float32)[:, None]}
  held = {"label": held_labels.astype(np.float32)[:, None]}
  scores = {name: rules.score_all(config, images, y, real, heldout, held) for name, images in candidates.items()}
  rv = {name: s["reverse_validation"] for name, s in scores.items()}
  # Right labels round-trip through the real pool (measured 0.0); destroyed content gives
  # random pseudo-labels (0.33); mirrored content comes back mirrored (1.0: every class wrong).
  assert rv["keeps_labels"] < 0.1 and rv["noise"] > 0.2 and rv["mirrored"] > 0.85, rv
  assert min(rv, key=rv.get) == "keeps_labels"
  # Two networks trained on label-keeping data agree on real images; on noise they do not
  # (measured 0.0 vs 0.42 flip rate). Agreement is blind to labels changed consistently
  # (mirrored: 0.0), which reverse validation catches.
  assert scores["keeps_labels"]["agreement"] < scores["noise"]["agreement"], scores
  assert scores["keeps_labels"]["entropy"] < scores["noise"]["entropy"], scores
  del real_labels


def test_entropy_needs_classes_and_unknown_rules_are_one_line():
  config = default.get_config("smoke")
  images = np.zeros((8, 16, 16, 1), np.uint8)
  with pytest.raises(ConfigError, match="^selection rule 'entropy': needs class labels; 'label' is a regress"):
    rules.entropy(config, images, {"label": np.linspace(0, 1, 16).reshape(8, 2)}, images)
  with pytest.raises(ConfigError, match="^selection rule 'best_guess': unknown; known: reverse_validation, "):
    rules.score_all(config, images, {"label": np.zeros((8, 1))}, images, images, {"label": np.zeros((8, 1))},
                    rules=("best_guess",))
  with pytest.raises(ConfigError, match="^selection rules: the synthetic data has no numeric label"):
    rules.agreement(config, images, {}, images)


def test_compare_judges_every_checkpoint_against_its_downstream_error(monkeypatch, tmp_path):
  """Plumbing of probe/compare.py with two stand-in refiners: checkpoint 1 keeps the
  images (so its downstream error is exactly the unrefined one), checkpoint 2 blanks them."""
  from simgan_jax.probe import compare

  config = default.get_config("smoke")
  config.drift.train_steps, config.drift.batch_size = 30, 32
  shape = (config.image_height, config.image_width, config.channels)
  downstream = compare.draw(config.synthetic_data, shape, 128, seed=7, where="test")
  monkeypatch.setattr(compare.refine_lib, "restore_refiner", lambda config, workdir, step: (step, step))
  monkeypatch.setattr(compare.refine_lib, "refine_arrays",
                      lambda config, step, images: images if step == 1 else np.full_like(images, 128))
  for step in (1, 2):
    (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "realism_kid": 0.5, "selection_score": 0.5}\n'
                                          '{"step": 2, "realism_kid": 0.1, "selection_score": 0.1}\n')
  result = compare.compare(config, str(tmp_path), (downstream.pop("image"), downstream), num_images=128,
                           num_real=64, num_heldout=64, steps=[1, 2], rules=("reverse_validation",),
                           noise_seeds=(1001, 1002), log=lambda _: None)
  assert result["kind"] == "gaze" and result["steps"] == [1, 2]
  assert result["downstream"][1] == result["unrefined"]  # the same images, the same seeds
  # Degrees: blank images teach nothing (30 steps: 17.0 vs 13.6; seed noise 0.4).
  assert result["downstream"][2] > result["downstream"][1] + 2
  # The logged KID preferred the blank checkpoint; reverse validation does not.
  assert result["judged"]["realism_kid"]["pick"] == 2 and result["judged"]["realism_kid"]["regret"] == 1.0
  assert result["judged"]["reverse_validation"]["pick"] == 1, result["scores"]
  # --step=best's own ranking (probe/selection.py) is judged too, first: it follows the KID here.
  assert list(result["scores"])[0] == "step=best" and result["scores"]["step=best"] == {2: 0.0, 1: 1.0}
  assert result["judged"]["step=best"]["pick"] == 2
  assert set(result["scores"]) == {"step=best", "realism_kid", "selection_score", "reverse_validation"}
  # The measure's own seed noise: the unrefined images with two other seeds differ.
  noise = result["downstream_noise"]
  assert len(noise["errors"]) == 2 and noise["std"] > 0 and noise["std"] == pytest.approx(np.std(noise["errors"], ddof=1))
  table = compare.table(result)
  assert table[2].startswith("| rule | pick |") and table[4].startswith("| step=best | 2 |")
  assert [line.split(" | ")[:2] for line in table if line.startswith(("| 1 |", "| 2 |"))] == [
      ["| 1", f"{result['downstream'][1]:.4g}"], ["| 2", f"{result['downstream'][2]:.4g}"]]
  # A rerun reads the saved result back (JSON keys are strings) to the same table.
  path = tmp_path / "compare.json"
  compare.save_result(str(path), result)
  assert compare.table(compare.load_result(str(path))) == table


def test_compare_refuses_a_test_split():
  from simgan_jax.probe import compare

  config = default.get_config("smoke")
  with pytest.raises(ConfigError, match="^--downstream_data=eyesim_target:test: a test split; decide on a "
                     "validation split$"):
    compare.load_downstream("eyesim_target:test", config, "")


def test_compare_reads_a_labelled_image_folder_as_downstream_data(tmp_path):
  """A prepared image_folder set judges the checkpoints of a folder run by its own labels
  (it was read for 'gaze' labels, which such a set does not have)."""
  from simgan_jax.data.builders.prepare import prepare
  from simgan_jax.probe import compare
  from simgan_jax.simulators import shapes

  paths = shapes.write_dataset(str(tmp_path / "folders"), num_synthetic=4, num_real=4, num_test=6, size=8,
                               task="classification", num_classes=2)
  summary = prepare("image_folder", paths["real_test"], str(tmp_path / "data"),
                    overrides={"height": 8, "width": 8, "channels": 1})
  config = default.get_config("smoke")
  config.image_height, config.image_width, config.channels = 8, 8, 1
  images, labels = compare.load_downstream(f"image_folder/{summary.builder_config}:train", config,
                                           str(tmp_path / "data"))
  assert images.shape == (6, 8, 8, 1) and images.dtype == np.uint8
  assert labels["label"].shape[0] == 6 and set(np.unique(labels["label"])) <= {0.0, 1.0}


def test_summary_judges_rules_over_several_runs():
  from simgan_jax.probe import compare

  def run(downstream, scores, unrefined):
    return {"kind": "gaze", "label": "gaze", "unrefined": unrefined, "downstream": downstream,
            "judged": rules.judge(scores, downstream)}

  # Run 0: "good" picks the best (7), "bad" the worst (9); run 1: "good" picks the
  # middle checkpoint (8 of 6..10), "bad" refuses the best and picks the worst.
  runs = [run({1: 9.0, 2: 7.0}, {"good": {1: 1.0, 2: 0.0}, "bad": {1: 0.0, 2: 1.0}}, unrefined=10.0),
          run({1: 10.0, 2: 8.0, 3: 6.0}, {"good": {1: 2.0, 2: 0.0, 3: 1.0}, "bad": {1: 0.0, 2: 1.0}},
              unrefined=8.0)]
  lines = compare.summary(runs, ["a", "b"])
  row = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines if line.startswith("| ")}
  # good: regrets 0 and 0.5; gain kept (10-7)/(10-7) = 100% and (8-8)/(8-6) = 0%.
  assert row["good"][1:4] == ["2, 2", "7.5", "0.25 ± 0.25"] and row["good"][4:7] == ["1/2", "0/2", "50%"]
  # bad: regret 1 both times, refused run 1's best, gain kept (10-9)/3 and (8-10)/2.
  assert row["bad"][1:4] == ["1, 1", "9.5", "1.00 ± 0.00"] and row["bad"][4:7] == ["0/2", "1/2", "-33%"]
  assert lines[-1].startswith("Lowest mean regret: good (0.25 ± 0.25 over 2 runs); next bad (1.00 ± 0.00): "
                              "the difference exceeds the spread")
  # A measure whose own noise exceeds the best checkpoint's gain says it cannot rank anything.
  assert not any("cannot tell the checkpoints apart" in line for line in lines)
  for r, std in zip(runs, (2.0, 3.0)):  # best's gains over unrefined: 3 and 2, mean 2.5 = mean noise
    r["downstream_noise"] = {"errors": [], "std": std}
  assert not any("cannot tell" in line for line in compare.summary(runs, ["a", "b"]))
  runs[1]["downstream_noise"]["std"] = 3.5  # mean noise 2.75 > mean gain 2.5
  assert compare.summary(runs, ["a", "b"])[-1].startswith("The best checkpoint gains 2.5 over unrefined images, less than")


def test_launcher_judges_several_runs_and_writes_one_report(tmp_path):
  """launch/compare_selection.py over two finished comparisons (read back, nothing trained):
  run<k>/ per workdir, the summary over runs, --step=best's pick from each run's metrics."""
  import json
  import os
  import subprocess
  import sys

  from simgan_jax.probe import compare

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = default.get_config("smoke")  # pretraining ends at step 5: steps 6 and 8 compete
  workdirs, out = [], tmp_path / "out"
  for k, (kid6, kid8) in enumerate(((0.2, 0.1), (0.1, 0.2))):
    workdir = tmp_path / f"seed{k}"
    for step in (2, 6, 8):
      (workdir / "checkpoints" / str(step)).mkdir(parents=True)
    (workdir / "config.json").write_text(config.to_json())
    (workdir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "realism_kid": v, "selection_score": v}) + "\n"
        for s, v in ((2, 0.05), (6, kid6), (8, kid8))))
    downstream = {2: 9.0, 6: 8.0, 8: 7.0}  # step 8 helps most in both runs
    result = {"kind": "gaze", "label": "gaze", "steps": [2, 6, 8], "downstream": downstream, "unrefined": 9.5,
              "scores": {"realism_kid": {2: 0.05, 6: kid6, 8: kid8}}, "seconds": 60.0,
              "downstream_noise": {"errors": [9.4, 9.5, 9.6], "std": 0.1}}
    if k == 1:  # saved before the noise was measured: filled in from run0 (same setting), not retrained
      del result["downstream_noise"]
    (out / f"run{k}").mkdir(parents=True)
    compare.save_result(str(out / f"run{k}" / "compare.json"), result, settings={
        "workdir": str(workdir), "downstream_data": "eyesim_target:validation", "num_images": 1024,
        "num_real": 1024, "downstream_seeds": ["0"]})
    workdirs.append(str(workdir))
  report = tmp_path / "docs" / "selection.md"
  report.parent.mkdir()
  run = subprocess.run([sys.executable, os.path.join(repo, "launch", "compare_selection.py"),
                        f"--workdir={','.join(workdirs)}", f"--out={out}", f"--report={report}",
                        f"--data_dir={tmp_path / 'prepared'}"],
                       capture_output=True, text=True, cwd=repo, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  text = report.read_text()
  assert text == (out / "compare.md").read_text()
  assert "2 SimGAN runs (run0, run1)" in text and "seed noise of the downstream measure" in text.lower()
  assert f" --data_dir={tmp_path / 'prepared'} " in text.splitlines()[2]  # the command says where the data is
  # --step=best: the lowest KID after pretraining, 8 then 6 (gain kept 100% and 60%); the
  # raw KID picks pretraining step 2 both times.
  assert "| step=best | 8, 6 | 7.5 | 0.25 ± 0.25 | 1/2 | 0/2 | 80% |" in text
  assert "| realism_kid | 2, 2 | 9 | 1.00 ± 0.00 | 0/2 | 0/2 | 20% |" in text
  assert f"## run1: `{workdirs[1]}`" in text and "Lowest mean regret: step=best" in text
  assert compare.load_result(str(out / "run1" / "compare.json"))["downstream_noise"] == {
      "errors": [9.4, 9.5, 9.6], "std": 0.1}
