"""launch/reproduce.py --experiment=image_folder: your own folders end to end, the
classification / regression tasks, and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


def _folders(tmp_path, task="classification", num=64, size=16):
  from simgan_jax.simulators import shapes

  return shapes.write_dataset(str(tmp_path / "data"), num_synthetic=num, num_real=num, num_test=num // 2,
                              size=size, task=task, num_classes=2)


def test_labels_pick_the_task_and_regression_trains_on_a_prepared_folder(tmp_path):
  """Integer labels: classification; float labels: regression (also through the experiment's
  data stage); launch/train_estimator.py's path for --task=regression on an image_folder set."""
  from simgan_jax import tasks
  from simgan_jax.configs import image_folder as image_folder_config
  from simgan_jax.configs import classification
  from simgan_jax.errors import DataError
  from simgan_jax.experiments import image_folder
  from simgan_jax.tasks import labels

  assert labels.pick_kind(np.array([0, 1, 2, 1])) == "classification"
  assert labels.pick_kind(np.array([0.5, 1.25, 2.0])) == "regression"
  assert labels.pick_kind(np.array([[0, 1], [1, 0]])) == "regression"  # two columns
  assert labels.pick_kind(np.array([1.0, 2.0]), integer_columns=[False]) == "regression"  # written 1.0, 2.0

  paths = _folders(tmp_path, task="regression", num=16)
  config = image_folder_config.get_config("smoke", "image_folder:smoke")
  config.synthetic_dir, config.real_dir, config.real_test_dir = paths["synthetic"], paths["real"], paths["real_test"]
  info = image_folder.prepare(config, str(tmp_path / "w"), log=lambda line: None)
  assert info["kind"] == config.task_net.kind == "regression" and info["label_names"] == ["size"]
  assert info["shape"] == [16, 16, 1] and config.simgan.image_height == config.task_net.image_width == 16
  assert config.test_data.startswith("image_folder/16x16x1") and config.num_synthetic == 16
  config.task = "classification"  # the override wins over the labels
  config.test_data = ""
  assert image_folder.prepare(config, str(tmp_path / "w"), log=lambda line: None)["kind"] == "classification"

  c = classification.get_config("smoke")
  c.image_height = c.image_width = 16
  c.data_dir = config.data_dir
  with pytest.raises(DataError, match="^train data: the classification task needs one column of integer"):
    tasks.train_and_evaluate("classification", c, str(tmp_path / "cls"), config.synthetic_data, config.synthetic_data)

  result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "train_estimator.py"), "--task=regression",
                           f"--config={REPO}/simgan_jax/configs/regression.py:smoke", "--config.image_height=16",
                           "--config.image_width=16", f"--config.data_dir={config.data_dir}",
                           f"--train_data={config.synthetic_data}", f"--eval_data={config.synthetic_data}",
                           f"--workdir={tmp_path / 'reg'}"], capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  results = json.load(open(tmp_path / "reg" / "results.json"))
  saved = json.load(open(tmp_path / "reg" / "config.json"))
  assert results["steps"] == 4 and saved["num_outputs"] == 1 and len(saved["label_mean"]) == 1
  test = results["eval"][config.synthetic_data]
  assert test["num_images"] == 16 and np.isfinite(test["mean_abs_error"]) and test["rmse"] >= test["mean_abs_error"]
  assert f"{config.synthetic_data}: mean absolute error " in result.stdout


def test_missing_folder_or_labels_is_one_line_naming_the_flag(tmp_path):
  from simgan_jax.configs import image_folder as image_folder_config
  from simgan_jax.errors import ConfigError, DataError
  from simgan_jax.experiments import image_folder

  paths = _folders(tmp_path, num=4)
  config = image_folder_config.get_config("smoke", "image_folder:smoke")
  with pytest.raises(ConfigError, match="^--synthetic: required"):
    image_folder.check_folders(config)
  config.synthetic_dir, config.real_dir = paths["synthetic"], str(tmp_path / "nope")
  with pytest.raises(DataError, match=f"^--real={tmp_path / 'nope'}: no such folder$"):
    image_folder.check_folders(config)
  config.real_dir = paths["real"]
  image_folder.check_folders(config)  # no --real_test: fine
  assert image_folder.image_shape(config) == (16, 16, 1)  # read from the data
  from PIL import Image
  Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(os.path.join(paths["real"], "colour.png"))
  assert image_folder.image_shape(config) == (16, 16, 3)  # one colour image among the first real ones
  config.channels, config.image_height = 1, 12  # the config wins
  assert image_folder.image_shape(config) == (12, 16, 1)

  os.remove(os.path.join(paths["real_test"], "labels.csv"))
  result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "reproduce.py"),
                           "--experiment=image_folder:smoke", f"--synthetic={paths['synthetic']}",
                           f"--real={paths['real']}", f"--real_test={paths['real_test']}",
                           f"--workdir={tmp_path}/w"], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 1 and not os.path.exists(tmp_path / "w")
  assert result.stderr.strip().splitlines() == [
      f"error: --real_test={paths['real_test']}: no labels.csv or labels.json; expected "
      "'filename,<label>' and one row per image"]


def test_smoke_end_to_end_without_then_with_real_test(tmp_path):
  """Without --real_test: SimGAN (two seeds), selection and refining, and a report that
  cannot tell. The same command with --real_test then resumes (no SimGAN step, no
  refining) and adds the task networks, their rows over both refiners and the verdict."""
  paths = _folders(tmp_path)
  workdir = tmp_path / "w"
  command = [sys.executable, os.path.join(REPO, "launch", "reproduce.py"), "--experiment=image_folder:smoke",
             f"--synthetic={paths['synthetic']}", f"--real={paths['real']}", f"--workdir={workdir}",
             "--set", "simgan_seeds=0,1"]
  first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert first.returncode == 0, first.stderr[-3000:]
  report = (workdir / "report.md").read_text()
  assert "verdict: cannot tell whether refinement helped: no --real_test" in report
  assert "verdict: cannot tell" in first.stdout and not (workdir / "estimators").exists()
  selection = json.load(open(workdir / "selection.json"))
  assert f"| {selection['step']} |" in report and "selected |" in report and "![samples](samples.png)" in report
  steps = len(open(workdir / "simgan" / "metrics.jsonl").readlines())

  second = subprocess.run(command + [f"--real_test={paths['real_test']}"], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  assert len(open(workdir / "simgan" / "metrics.jsonl").readlines()) == steps  # SimGAN not rerun
  assert "is already done" in second.stderr + second.stdout  # nor the refining
  report = (workdir / "report.md").read_text()
  assert "## Classification on `--real_test`" in report
  assert "| synthetic | " in report and "| refined | " in report
  verdict = [line for line in report.splitlines() if line.startswith("verdict: ")]
  assert len(verdict) == 1 and ("refined beats synthetic beyond the spread" in verdict[0]
                                or "refined does not beat synthetic beyond the spread" in verdict[0])
  assert verdict[0] in second.stdout and "synthetic: accuracy " in second.stdout
  for run in ("estimators/synthetic", "estimators/refined", "simgan_seed1/estimators/refined"):
    for seed in (0, 1):
      results = json.load(open(workdir / run / f"seed_{seed}" / "results.json"))
      assert results["eval"]["test"]["num_images"] == 32
  assert not (workdir / "simgan_seed1" / "estimators" / "synthetic").exists()  # trained once
  assert "refined: 4 runs: 2 SimGAN seeds x 2 estimator seeds" in verdict[0]
  assert "over 2 SimGAN seeds x 2 task-network seeds (4 runs" in report
  preservation = json.load(open(workdir / "preservation.json"))
  assert 0.0 <= preservation["changed_answers"] <= 1.0 and preservation["num_pairs"] == 32
  # Each SimGAN seed's selected refiner, with its own preservation and two-sample test.
  assert "| SimGAN seed | selected step |" in report and "share of answers changed" in report
  assert sorted(preservation["simgan_seeds"]) == ["0", "1"]
  assert 0.0 <= preservation["simgan_seeds"]["1"]["changed_answers"] <= 1.0


def test_train_launcher_trains_on_two_folders_at_their_own_size(tmp_path):
  """launch/train.py --synthetic=DIR --real=DIR: no config overrides; the size comes from the images."""
  paths = _folders(tmp_path, num=32, size=16)
  workdir = tmp_path / "w"
  command = [sys.executable, os.path.join(REPO, "launch", "train.py"),
             f"--config={os.path.join(REPO, 'simgan_jax/configs/default.py')}:smoke",
             f"--synthetic={paths['synthetic']}", f"--real={paths['real']}", f"--workdir={workdir}"]
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  config = json.load(open(workdir / "config.json"))
  assert (config["image_height"], config["image_width"], config["channels"]) == (16, 16, 1)
  for section in ("synthetic_data", "real_data"):
    assert config[section]["name"] == "image_folder" and config[section]["data_dir"] == str(workdir / "data")
  assert config["synthetic_data"]["builder_config"] != config["real_data"]["builder_config"]
  assert "prepared at 16x16x1" in result.stdout and os.listdir(workdir / "checkpoints")
  # The next step it suggests is the folder experiment, not the eye benchmark.
  assert "--experiment=image_folder:cpu --synthetic=" in result.stdout and "eyesim_gaze" not in result.stdout
  alone = subprocess.run(command[:3] + [f"--real={paths['real']}", f"--workdir={tmp_path / 'x'}"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
  assert alone.returncode != 0 and "--synthetic and --real go together" in alone.stderr
