"""The training loop through launch/train.py: files, resume after a kill, restore, errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.conftest import REPO, npz_flags, random_pool
from simgan_jax import train
from simgan_jax.configs import default
from simgan_jax.probe import selection

SMOKE = f"--config={REPO}/simgan_jax/configs/default.py:smoke"


def launch(workdir, *flags, wait=True):
  cmd = [sys.executable, os.path.join(REPO, "launch/train.py"), SMOKE, f"--workdir={workdir}", *flags]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  if not wait:
    return proc
  out, err = proc.communicate(timeout=600)
  return proc.returncode, out, err


def final_state(workdir, **overrides):
  config = default.get_config("smoke")
  config.update(overrides)
  return jax.device_get(train.restore_state(config, str(workdir)))


# A small realism probe, so that checkpoints are scored and one is selected.
PROBE = ["--config.realism.num_images=32", "--config.realism.subset_size=8", "--config.realism.num_subsets=2",
         "--config.checkpoint_every=3"]


def test_run_writes_metrics_samples_checkpoints_and_restores_in_a_fresh_process(tmp_path, npz_pools):
  code, out, err = launch(tmp_path, *npz_flags(npz_pools), *PROBE)
  assert code == 0, err
  assert "step 9/9 [adversarial]" in out and "img/s" in out and "ETA" in out
  assert f"Loading data (synthetic: npz {npz_pools['synthetic']}; real: npz {npz_pools['real']})" in out
  records = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "realism_kid" not in r]
  assert [r["step"] for r in records] == [2, 4, 6, 8, 9]
  # The closing block: the checkpoint best_checkpoint selects, with its scores, where, what next.
  config = default.get_config("smoke")
  config.update({"checkpoint_every": 3})
  best = selection.best_checkpoint(config, str(tmp_path))
  block = out[out.index("\ndone: ") + 1:].splitlines()
  assert block[0].startswith("done: trained 9 of 9 steps in ")
  # Keep-best follows --step=best: pretraining checkpoint 3 is no candidate once adversarial
  # ones exist, so only the newest 3 (5, 6, 9) stay.
  assert block[0].endswith("checkpoints at steps 5, 6, 9; 2 sample grids written")
  step = best["step"]
  assert block[1] == (f"selected checkpoint: step {step} (selection_score "
                      f"{best['selection_scores'][str(step)]:.4g}, realism_kid {best['scores'][str(step)]:.4g}, "
                      "two_sample_accuracy 0.5)")
  assert block[2].startswith(f"  runner-up: step {({6, 9} - {step}).pop()} (")
  assert block[3].startswith("  rule: lowest realism_kid")
  facts = json.loads((tmp_path / "summary.jsonl").read_text())
  assert facts["selected"]["step"] == step and facts["steps"] == 9
  for path in facts["outputs"].values():
    assert os.path.exists(path), path
  assert facts["outputs"]["samples"] == str(tmp_path / "samples" / "step_0000009.png")
  assert f"  python launch/refine.py --checkpoint={tmp_path} --step=best --data=npz:{npz_pools['synthetic']} " \
         f"--out={tmp_path}_refined" in block
  assert {"refiner_adversarial_loss", "self_regularization_loss", "discriminator_loss",
          "discriminator_accuracy_real", "discriminator_accuracy_refined", "kg",
          "steps_per_second", "refined_images_per_second"} <= set(records[-1])
  assert sorted(os.listdir(tmp_path / "samples")) == ["step_0000005.png", "step_0000009.png"]
  assert os.listdir(tmp_path / "tensorboard")
  # This pytest process never trained: the checkpoint restores here as a whole state.
  state = final_state(tmp_path)
  assert int(state.step) == 9 and int(state.history.filled_rows) == 4
  assert state.history.images.shape == (4, 8, 35, 55, 1)


STEPS = ["--config.num_iterations=12", "--config.checkpoint_every=3", "--config.sample_every=100"]


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
  """npz pools shared by the runs of this module (the same pixels as npz_pools)."""
  root = tmp_path_factory.mktemp("pools")
  paths = {name: str(root / f"{name}.npz") for name in ("synthetic", "real")}
  for name, seed in (("synthetic", 0), ("real", 1)):
    np.savez(paths[name], images=random_pool(seed))
  return paths


@pytest.fixture(scope="module")
def straight(pools, tmp_path_factory):
  """The final state of an uninterrupted 17-step run."""
  workdir = tmp_path_factory.mktemp("straight")
  code, _, err = launch(workdir, *npz_flags(pools), *STEPS)
  assert code == 0, err
  return final_state(workdir, num_iterations=12)


def test_killed_run_resumes_bitwise_equal_to_an_uninterrupted_run(tmp_path, pools, straight):
  proc = launch(tmp_path / "killed", *npz_flags(pools), *STEPS, wait=False)
  checkpoint = tmp_path / "killed" / "checkpoints" / "6"
  deadline = time.time() + 300
  while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert checkpoint.exists()
  code, out, err = launch(tmp_path / "killed", *npz_flags(pools), *STEPS)
  assert code == 0, err
  assert "resuming at step" in out and "resuming at step 0 " not in out

  resumed = final_state(tmp_path / "killed", num_iterations=12)
  assert int(resumed.step) == int(straight.step) == 17
  jax.tree.map(np.testing.assert_array_equal, resumed, straight)


def test_sigterm_mid_phase_saves_says_where_and_resumes_bitwise(tmp_path, pools, straight):
  # Old code: SIGTERM killed the run at once, nothing saved, nothing printed. Here
  # no checkpoint is due by step (checkpoint_every=100) after the phase end at 5.
  flags = [*npz_flags(pools), *STEPS, "--config.checkpoint_every=100"]
  proc = launch(tmp_path / "run", *flags, wait=False)
  for line in proc.stdout:
    if line.startswith("step 6/17"):
      break
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signal.SIGTERM, err
  last = err.strip().splitlines()[-1]
  match = re.fullmatch(r"stopped by SIGTERM at step (\d+); checkpoint saved in (\S+); run the same "
                       r"command to resume", last)
  assert match, err
  stopped = int(match[1])
  assert 6 < stopped < 17 and match[2] == str(tmp_path / "run" / "checkpoints" / str(stopped))
  assert "Traceback" not in err
  assert sorted(int(n) for n in os.listdir(tmp_path / "run" / "checkpoints")) == [3, 5, stopped]

  code, out, err = launch(tmp_path / "run", *flags)
  assert code == 0, err
  assert f"resuming at step {stopped} of 17" in out
  jax.tree.map(np.testing.assert_array_equal, final_state(tmp_path / "run", num_iterations=12), straight)


def test_trunk_start_step_freezes_the_trunk_in_the_train_loop_until_that_step(tmp_path, npz_pools):
  """refiner.trunk_start_step=7 on the smoke schedule (adversarial steps 5-8): the checkpoint
  of step 7 holds the initial trunk with moved light-stage parameters; step 9's trunk moved."""
  from simgan_jax import parallel, training
  from simgan_jax.refining import refine

  flags = ["--config.refiner.output_activation=residual", "--config.refiner.light_stage=True",
           "--config.refiner.trunk_start_step=7", "--config.checkpoint_every=7"]
  code, out, err = launch(tmp_path, *npz_flags(npz_pools), *flags)
  assert code == 0, err
  assert "compiling the adversarial (trunk frozen) step" in out
  config = refine.load_config(str(tmp_path))
  init = jax.device_get(training.create_state(training.make_setup(config, None, None, 1),
                                              parallel.make_mesh(1)).refiner_params)
  at7, _ = refine.restore_refiner(config, str(tmp_path), 7)
  at9, _ = refine.restore_refiner(config, str(tmp_path), 9)
  for name in init:
    if name != "light_stage":
      jax.tree.map(np.testing.assert_array_equal, jax.device_get(at7[name]), init[name])
  assert np.abs(np.asarray(at7["light_stage"]["magnitude"]) - init["light_stage"]["magnitude"]).max() > 0
  assert np.abs(np.asarray(at9["conv_out"]["kernel"]) - init["conv_out"]["kernel"]).max() > 0


def test_nan_loss_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, npz_pools):
  code, _, err = launch(tmp_path, *npz_flags(npz_pools), "--config.num_iterations=0")
  assert code == 0, err  # 5 steps, checkpoint at step 5
  # A NaN learning rate (NaN images are refused at start by the npz source).
  code, _, err = launch(tmp_path, *npz_flags(npz_pools), "--config.optimizer.learning_rate=nan")
  assert code == 1
  lines = err.strip().splitlines()
  assert lines[-1].startswith("error: step 6 (adversarial): ") and "is nan" in lines[-1]
  assert "Last good checkpoint: step 5" in lines[-1]
  assert "Traceback" not in err
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "5"]  # the end of each phase
  assert int(final_state(tmp_path).step) == 5


@pytest.mark.parametrize("flags, message", [
    (["--config.batch_size=12"], "error: config.batch_size: 12 is not divisible by 2 x 8 devices"),
    (["--config.num_iterations=-1"], "error: config.num_iterations: must be an integer >= 0, got -1"),
    (["--config.loss.psi=vgg"], "error: config.loss.psi: unknown feature map 'vgg'"),
    (["--config.loss.adversarial=wgan"], "error: config.loss.adversarial: unknown loss 'wgan'"),
    (["--config.image_width=60"], "error: config.synthetic_data: images are (35, 55, 1) (H, W, C) but"),
    (["--config.real_data.path=/nonexistent.npz"], "error: config.real_data.path=/nonexistent.npz: cannot read as .npz"),
    (["--config.real_data.name=mnist"], "error: config.real_data.name: unknown data source 'mnist'"),
])
def test_bad_input_gives_one_line_naming_the_field(tmp_path, npz_pools, flags, message):
  code, _, err = launch(tmp_path / "w", *npz_flags(npz_pools), *flags)
  assert code == 1
  assert err.strip().splitlines()[-1].startswith(message), err
  assert "Traceback" not in err


def test_unwritable_workdir(tmp_path, npz_pools):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  code, _, err = launch(blocker / "run", *npz_flags(npz_pools))
  assert code == 1 and err.strip().splitlines()[-1].startswith(f"error: --workdir {blocker}/run: not writable")


def test_mismatched_synthetic_and_real_shapes(tmp_path, npz_pools):
  odd = tmp_path / "odd.npz"
  np.savez(odd, images=np.zeros((8, 36, 60, 1), np.uint8))
  code, _, err = launch(tmp_path / "w", *npz_flags(npz_pools), f"--config.real_data.path={odd}")
  assert code == 1
  assert err.strip().splitlines()[-1] == (
      "error: config.real_data: images are (36, 60, 1) (H, W, C) but config.image_height, "
      "image_width, channels say (35, 55, 1)")


def test_phases_follow_the_schedule():
  config = default.get_config("smoke")
  assert [train.phase_at(s, config) for s in range(10)] == (
      ["refiner_pretrain"] * 3 + ["discriminator_pretrain"] * 2 + ["adversarial"] * 4 + ["done"])


def test_camera_variant_is_the_eye_benchmarks_refiner_and_only_after_cpu_or_smoke():
  from simgan_jax import models, train
  from simgan_jax.configs import reproduce

  config = default.get_config("cpu,camera")
  train.validate_config(config, 1)
  assert config.refiner.output_activation == "identity" and config.refiner.noise_channels == 0
  assert all(config.refiner[f] for f in models.CAMERA_STAGE_FIELDS)
  assert config.refiner.light_stage_exposure and not config.refiner.light_stage_tone  # docs/ablation_val_exposure.md
  # selection.min_step leaves candidates: adversarial checkpoints at or after it up to the last step.
  last = config.refiner_pretrain_steps + config.discriminator_pretrain_steps + config.num_iterations
  assert train.phase_at(config.selection.min_step, config) == "adversarial"
  assert last - config.selection.min_step >= 5 * config.checkpoint_every
  # eyesim_gaze:cpu trains exactly this SimGAN (reproduce.py keeps every checkpoint on top).
  simgan = reproduce.get_config("eyesim_gaze:cpu").simgan
  simgan.max_checkpoints_to_keep = config.max_checkpoints_to_keep
  assert simgan.to_dict() == config.to_dict()
  assert default.get_config("smoke,camera").refiner.light_stage  # composes with smoke too
  with pytest.raises(ValueError, match=r"^--config variant 'camera,cpu': camera must come after cpu and smoke"):
    default.get_config("camera,cpu")


@pytest.mark.parametrize("field, value, message", [
    ("loss.self_regularization_free_above", float("nan"), "config.loss.self_regularization_free_above: nan is not"),
    ("refiner.dropout_value", float("inf"), "config.refiner.dropout_value: inf is not a finite number"),
    ("refiner.grid_phase_period", -8, "config.refiner.grid_phase_period: must be an integer >= 0 (0: off), got -8"),
    ("refiner.dropout_head_kernel", -3, "config.refiner.dropout_head_kernel: must be an integer >= 0 (0: off), got -3"),
    ("refiner.output_activation", "identity", "config.refiner.output_activation: 'identity' changes nothing without"),
    ("refiner.block_quantizer", -8, "config.refiner.block_quantizer: must be an integer >= 0 (0: off), got -8"),
    ("refiner.smooth_noise_cells", (1, 0), "config.refiner.smooth_noise_cells: must be integers >= 1"),
    ("selection.min_step", -100, "config.selection.min_step: must be an integer >= 0 (0: every adversarial"),
    ("refiner.trunk_start_step", -1, "config.refiner.trunk_start_step: must be an integer >= 0 (0: off)"),
    ("refiner.trunk_start_step", 500, "config.refiner.trunk_start_step: a frozen trunk must be the identity"),
])
def test_depth_and_grid_fields_are_checked_at_start(field, value, message):
  from simgan_jax import train
  from simgan_jax.configs import default
  from simgan_jax.errors import ConfigError

  config = default.get_config("smoke")
  train.validate_config(config, 1)  # the defaults pass
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    train.validate_config(config, 1)


def test_block_quantizer_needs_a_trunk_and_camera_stages_do_not():
  from simgan_jax import train
  from simgan_jax.errors import ConfigError

  config = default.get_config("smoke")
  config.refiner.output_activation, config.refiner.dropout_value = "identity", 1.0
  config.refiner.dropout_head_kernel = 5
  train.validate_config(config, 1)  # drop-only is allowed
  config.refiner.block_quantizer = 8
  with pytest.raises(ConfigError, match="config.refiner.block_quantizer: quantises the trunk's output"):
    train.validate_config(config, 1)
  config.refiner.block_quantizer, config.refiner.smooth_noise_cells = 0, (1, 4)
  with pytest.raises(ConfigError, match="config.refiner.smooth_noise_cells: feeds the trunk"):
    train.validate_config(config, 1)
  config.refiner.smooth_noise_cells = ()
  # The camera stages act on the input itself without a trunk (a camera-only refiner),
  # with or without the drop-out head.
  for stage in ("light_stage", "sensor_stage", "jpeg_quantizer"):
    config.refiner[stage] = True
    train.validate_config(config, 1)
    config.refiner.dropout_value, config.refiner.dropout_head_kernel = None, 0
    train.validate_config(config, 1)
    config.refiner.dropout_value, config.refiner.dropout_head_kernel = 1.0, 5
    config.refiner[stage] = False
  config.refiner.light_stage_tone = True  # the light stage's mean tone needs the light stage
  with pytest.raises(ConfigError, match="config.refiner.light_stage_tone: the mean tone is the light stage's"):
    train.validate_config(config, 1)
  config.refiner.light_stage = True
  train.validate_config(config, 1)
  config.refiner.light_stage = config.refiner.light_stage_tone = False
  config.refiner.light_stage_exposure = True  # so does its mean exposure
  with pytest.raises(ConfigError, match="config.refiner.light_stage_exposure: the mean exposure is the light"):
    train.validate_config(config, 1)
  config.refiner.light_stage_exposure = False
  config.refiner.jpeg_quantizer = True
  config.refiner.output_activation, config.refiner.block_quantizer = "residual", 8
  with pytest.raises(ConfigError, match="config.refiner.jpeg_quantizer: R's output is quantised either"):
    train.validate_config(config, 1)


def test_slope_head_is_a_local_head_and_excludes_the_kxk_one():
  from simgan_jax import train
  from simgan_jax.errors import ConfigError

  config = default.get_config("smoke")
  config.refiner.output_activation, config.refiner.dropout_value = "identity", 1.0
  with pytest.raises(ConfigError, match="'identity' has no trunk for the 1x1 drop-out head"):
    train.validate_config(config, 1)
  config.refiner.sensor_stage = True  # a camera stage does not give the 1x1 head a trunk
  with pytest.raises(ConfigError, match="'identity' has no trunk for the 1x1 drop-out head"):
    train.validate_config(config, 1)
  config.refiner.sensor_stage = False
  config.refiner.dropout_slope_head = True
  train.validate_config(config, 1)
  config.refiner.dropout_head_kernel = 5
  with pytest.raises(ConfigError, match="config.refiner.dropout_slope_head: the drop-out head reads either"):
    train.validate_config(config, 1)
  config.refiner.dropout_head_kernel = 0
  config.refiner.dropout_gradient = "score_function"
  train.validate_config(config, 1)
  config.refiner.dropout_gradient = "reinforce"
  with pytest.raises(ConfigError, match="config.refiner.dropout_gradient: 'reinforce' is not one of"):
    train.validate_config(config, 1)
  config.refiner.dropout_gradient, config.refiner.dropout_value = "score_function", None
  config.refiner.output_activation, config.refiner.dropout_slope_head = "residual", False
  with pytest.raises(ConfigError, match="config.refiner.dropout_gradient: 'score_function' is how a drop-out head"):
    train.validate_config(config, 1)
