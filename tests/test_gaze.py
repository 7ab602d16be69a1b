"""Gaze estimator: layer arithmetic, metrics by hand, 1 vs 8 devices, the launcher."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import REPO
from simgan_jax import parallel
from simgan_jax.configs import gaze as gaze_config
from simgan_jax.data import sources
from simgan_jax.data.sources import ArraySource
from simgan_jax.tasks import data
from simgan_jax.tasks import gaze_net as gaze
from simgan_jax.tasks import gaze as gaze_task
from simgan_jax.tasks import loop
from simgan_jax.simulators import eyes
from tests.test_training import assert_same_updates


def count(params):
  return sum(x.size for x in jax.tree.leaves(params))


def conv(k, cin, cout):
  return k * k * cin * cout + cout


def test_paper_network_parameter_count_and_feature_size():
  assert gaze.feature_shape(35, 55) == (5, 10, 192)  # 35x55 -> 33x53 -> 31x51 -> 29x49 -> 14x24
  # -> 12x22 -> 10x20 -> 5x10: 5 * 10 * 192 = 9600 features (SIMGAN.md "FC 9600")
  expected = (conv(3, 1, 32) + conv(3, 32, 32) + conv(3, 32, 64) + conv(3, 64, 80) + conv(3, 80, 192)
              + 9600 * 1000 + 1000 + 1000 * 3 + 3)
  assert expected == 9_816_659
  params = jax.eval_shape(gaze.GazeEstimator().init, jax.random.PRNGKey(0), jnp.zeros((1, 35, 55, 1)))
  assert count(params) == expected
  assert params["params"]["fc1"]["kernel"].shape == (9600, 1000)


def test_other_input_sizes_compute_the_flattened_size():
  model = gaze.GazeEstimator(conv_features=(4, 4, 4, 4, 6), hidden_features=8)
  assert gaze.feature_shape(36, 60, model.conv_features) == (5, 11, 6)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 36, 60, 3)))
  assert params["params"]["fc1"]["kernel"].shape == (5 * 11 * 6, 8)
  assert model.apply(params, jnp.zeros((2, 36, 60, 3))).shape == (2, 3)
  with pytest.raises(ValueError, match="too small"):
    gaze.feature_shape(12, 55)


def test_angular_error_hand_computed_cases():
  s = math.sqrt(3) / 2
  pred = np.array([[0, 0, -1], [1, 0, 0], [0.5, s, 0], [2, 0, 0], [0, 0, 1], [1, 1, 0]], np.float32)
  true = np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0], [0, 0, -3], [0, 0, -1], [1, 0, 0]], np.float32)
  # identical, orthogonal, 60 degrees, orthogonal (lengths ignored), opposite, 45 degrees
  np.testing.assert_allclose(gaze.angular_error_deg(pred, true), [0, 90, 60, 90, 180, 45], atol=1e-4)
  assert float(gaze.angular_error_deg(pred[:1], true[:1])[0]) == 0.0  # exactly, not 0.02 (arccos)
  assert gaze.mean_angular_error(np.array([0.0, 90.0, 60.0])) == pytest.approx(50.0)


def test_within_curve_on_a_known_set():
  errors = np.array([0.0, 1.0, 5.0, 7.0, 7.5, 30.0])
  assert gaze.within_curve(errors, (0, 5, 7, 25)) == {0: 1 / 6, 5: 3 / 6, 7: 4 / 6, 25: 5 / 6}
  curve = gaze.within_curve(errors)
  assert list(curve) == list(range(26)) and curve[25] == pytest.approx(5 / 6)


def test_l2_loss_hand_computed():
  pred = np.array([[1.0, 0, 0], [0, 0, 0]], np.float32)
  true = np.array([[0, 1.0, 0], [0, 0, -1.0]], np.float32)
  assert float(gaze.gaze_l2_loss(pred, true)) == pytest.approx((2.0 + 1.0) / 2)


@pytest.mark.parametrize("spec, training, expected", [
    ("eyesim", True, {"name": "eyesim"}),
    ("eyesim_target", True, {"name": "eyesim_target", "split": "validation"}),
    ("eyesim_target", False, {"name": "eyesim_target", "split": "test"}),
    ("npz:/d/a:b.npz", True, {"name": "npz", "path": "/d/a:b.npz"}),
    ("mpiigaze:test", False, {"name": "mpiigaze", "split": "test", "builder_config": "crop"}),
    ("unityeyes/64x96:train[:10%]", True,
     {"name": "unityeyes", "split": "train[:10%]", "builder_config": "64x96"}),
])
def test_data_specs(spec, training, expected):
  section = data.data_config(spec, gaze_config.get_config(), training)
  assert {k: section[k] for k in expected} == expected


def _gaze_pool(n=32):
  """Random images with plausible gaze labels (MPIIGaze-like pitch and yaw)."""
  rng = np.random.default_rng(0)
  pitch, yaw = np.radians(rng.uniform(-25, 10, n)), np.radians(rng.uniform(-30, 30, n))
  g = np.asarray(eyes.gaze_vector(jnp.asarray(pitch), jnp.asarray(yaw)), np.float32)
  return ArraySource(rng.integers(0, 256, (n, 35, 55, 1), dtype=np.uint8), {"gaze": g})


def _train(config, source, num_devices, num_steps):
  mesh = parallel.make_mesh(num_devices)
  s = loop.make_setup(gaze_task.TASK, config, source, num_devices)
  state = loop.create_state(s, mesh)
  data, data_specs = sources.place(source, mesh)
  step_fn = loop.compile_train_step(s, mesh, loop.state_specs(state), data_specs)
  losses = []
  for _ in range(num_steps):
    state, metrics = step_fn(state, data)
    losses.append(float(metrics["loss"]))
  return jax.device_get(state), losses


def test_sgd_on_eight_devices_takes_the_one_device_step():
  # SGD's update is the gradient: an 8x gradient on 8 devices would move 8x as far.
  config = gaze_config.get_config("smoke")
  config.optimizer.name, config.optimizer.learning_rate, config.optimizer.momentum = "sgd", 1e-2, 0.0
  source = _gaze_pool()
  s = loop.make_setup(gaze_task.TASK, config, source, 1)
  init = jax.device_get(loop.init_state(s)).params
  state1, losses1 = _train(config, source, 1, 4)
  # ... and a pool sharded over the 8 devices (4 rows each) must give the same batches.
  sharded = ArraySource(source.images, source.labels, shard_pool="true")
  state8, losses8 = _train(config, sharded, 8, 4)
  np.testing.assert_allclose(losses8, losses1, rtol=1e-4)
  assert_same_updates(init, state1.params, state8.params)


def test_training_reduces_the_loss_and_eight_devices_match_one():
  config = gaze_config.get_config("smoke")
  source = _gaze_pool()
  state1, losses1 = _train(config, source, 1, 12)
  state8, losses8 = _train(config, source, 8, 12)
  np.testing.assert_allclose(losses8, losses1, rtol=1e-4)
  # Adam divides by sqrt(v): where a gradient is ~0, float rounding of the 8-way mean can
  # move a weight by a fraction of one update (lr 1e-3), so params agree to 2e-4, not 1e-6.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-4), state1.params, state8.params)
  assert int(state8.step) == 12
  # Starts near E|g|^2 = 1 (outputs near 0); learning the mean gaze alone takes it far lower.
  assert losses1[0] > 0.5 and np.mean(losses1[-3:]) < 0.5 * losses1[0]

  # Evaluation through the mesh equals a direct forward pass.
  mesh = parallel.make_mesh(8)
  s = loop.make_setup(gaze_task.TASK, config, source, 8)
  predict_fn = gaze_task.make_predict_fn(s.model, mesh)
  params = parallel.put_replicated(state8.params, mesh)
  pred = loop.predict(predict_fn, params, source.images[:21], mesh, chunk=12)  # padded chunk
  direct = s.model.apply({"params": state1.params}, source.images[:21].astype(np.float32) / 127.5 - 1)
  np.testing.assert_allclose(pred, direct, rtol=1e-3, atol=1e-5)
  result = gaze_task.evaluate(predict_fn, params, source.images[:21], source.labels["gaze"][:21],
                                  mesh, chunk=12)
  errors = np.asarray(gaze.angular_error_deg(direct, source.labels["gaze"][:21]))
  assert result["num_images"] == 21
  assert result["mean_angular_error_deg"] == pytest.approx(errors.mean(), rel=1e-3)
  assert result["within_deg"]["25"] == pytest.approx(np.mean(errors <= 25))


def launch(workdir, *flags):
  cmd = [sys.executable, os.path.join(REPO, "launch/train_gaze.py"),
         f"--config={REPO}/simgan_jax/configs/gaze.py:smoke", f"--workdir={workdir}", *flags]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
  return proc.returncode, proc.stdout, proc.stderr


def test_launcher_trains_evaluates_writes_results_and_resumes(tmp_path):
  pool = _gaze_pool(48)
  path = str(tmp_path / "eyes.npz")
  np.savez(path, images=pool.images, gaze=pool.labels["gaze"])
  flags = [f"--train_data=npz:{path}", f"--eval_data=npz:{path},eyesim"]
  code, out, err = launch(tmp_path / "run", *flags)
  assert code == 0, err
  assert f"npz:{path}: mean angular error" in out and "within 7 deg" in out
  # The closing block and its JSON line: what was done, each test line, where, what next.
  block = out[out.index("\ndone: ") + 1:].splitlines()
  assert block[0].startswith(f"done: trained the gaze estimator on npz:{path} for 4 steps in ")
  assert f"  results: {tmp_path / 'run' / 'results.json'}" in block and block[-2] == "next:"
  summary = [json.loads(line) for line in open(tmp_path / "run" / "summary.jsonl")]
  assert summary[-1]["command"] == "train_estimator" and summary[-1]["steps"] == 4
  assert set(summary[-1]["eval"]) == {f"npz:{path}", "eyesim"}
  results = json.load(open(tmp_path / "run" / "results.json"))
  assert results["steps"] == 4 and set(results["eval"]) == {f"npz:{path}", "eyesim"}
  assert results["eval"]["eyesim"]["num_images"] == 64
  assert len(results["eval"]["eyesim"]["within_deg"]) == 26
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["2", "4"]
  # A longer rerun resumes from step 4.
  code, out, err = launch(tmp_path / "run", *flags, "--config.num_steps=6")
  assert code == 0, err
  assert "resuming at step 4 of 6" in out
  assert json.load(open(tmp_path / "run" / "results.json"))["steps"] == 6


def test_launcher_errors_are_one_line(tmp_path):
  code, _, err = launch(tmp_path, "--train_data=eyesim_target:train")
  assert code == 1 and "Traceback" not in err
  assert err.strip().splitlines()[-1].startswith("error: data spec 'eyesim_target:train': the target "
                                                 "train split is unlabelled")
