"""Label drift (probe/drift.py), the checkpoint probe around it, and the task-consistency loss."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax import losses, parallel, train, training
from simgan_jax.configs import default
from simgan_jax.data.sources import ArraySource
from simgan_jax.errors import ConfigError
from simgan_jax.probe import drift
from simgan_jax.simulators import sources as eye_sources


def test_task_is_chosen_from_the_labels():
  c = default.get_config("smoke")
  gaze = np.zeros((8, 3), np.float32)
  assert drift.choose_task(c, {"gaze": gaze, "pupil_center": np.zeros((8, 2))}) == ("gaze", "gaze")
  # image_folder stores a float vector `label`; integral values are classes.
  assert drift.choose_task(c, {"label": np.array([[0.], [3.], [1.]], np.float32)}) == ("classify", "label")
  assert drift.choose_task(c, {"label": np.array([0, 9, 2], np.int64)}) == ("classify", "label")
  assert drift.choose_task(c, {"label": np.array([[0.5, 1.], [2., 3.]], np.float32)}) == ("regress", "label")
  assert drift.choose_task(c, {}) is None
  c.drift.label = "size"
  with pytest.raises(ConfigError, match="config.drift.label: 'size' is not a numeric label"):
    drift.choose_task(c, {"label": np.zeros(3)})


def _blob_images(rng, n, size=16):
  """A bright square in the left (class 0) or right (class 1) half of a dark image."""
  labels = rng.integers(0, 2, n)
  images = np.full((n, size, size, 1), 20, np.uint8)
  for i, label in enumerate(labels):
    x = rng.integers(0, size // 2 - 4) + label * size // 2
    y = rng.integers(0, size - 4)
    images[i, y:y + 4, x:x + 4] = 230
  return images, labels


def test_classifier_drift_is_zero_for_identity_and_one_for_a_mirroring_refiner():
  c = default.get_config("smoke")
  c.drift.train_steps, c.drift.batch_size = 150, 32
  c.drift.conv_features = (8, 8, 8, 8, 8)
  images, labels = _blob_images(np.random.default_rng(0), 256)
  source = ArraySource(images, {"label": labels.astype(np.float32)[:, None]})
  task = drift.train_task_network(c, source, source.device_data(), (16, 16, 1), log=lambda _: None)
  assert task.kind == "classify" and task.label == "label"
  test, test_labels = _blob_images(np.random.default_rng(1), 200)
  before = drift.predict(task, test)
  assert drift.synthetic_error(task, before, test_labels[:, None]) < 0.1  # it learned the task
  # Identity keeps every class (catches a drift measured against the labels, not the predictions);
  # a mirror swaps left and right, so nearly every class flips.
  assert drift.measure(task, before, test)["label_drift"] == 0.0
  assert drift.measure(task, before, test[:, :, ::-1])["label_drift"] > 0.9


@pytest.fixture(scope="module")
def eye_probe(tmp_path_factory, optimized_xla):
  """The checkpoint probe of a smoke config on simulator eyes, with a gaze network trained for it."""
  with optimized_xla():  # 100 training steps: running, not compiling, dominates
    c = default.get_config("smoke")
    c.realism.num_images, c.realism.subset_size = 64, 32
    c.drift.train_steps, c.drift.batch_size = 100, 32
    c.drift.max_drift = 5.0
    shape = (35, 55, 1)
    synthetic = eye_sources.eyesim_source(c.synthetic_data, shape)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(9), i))(jnp.arange(64))
    real = ArraySource(np.asarray(synthetic.sample({}, keys)["image"]))
    setup = training.make_setup(c, synthetic, real, 1)
    mesh = parallel.make_mesh(1)
    data = parallel.put_replicated({"synthetic": {}, "real": real.device_data()}, mesh)
    workdir = str(tmp_path_factory.mktemp("drift"))
    task = drift.task_network(c, synthetic, {}, shape, workdir, log=lambda _: None)
    return c, train.make_realism_probe(c, setup, data, mesh, task=task), task, workdir


def test_gaze_drift_is_zero_for_identity_and_large_for_a_shifting_refiner(eye_probe):
  c, probe, task, workdir = eye_probe
  assert task.kind == "gaze" and task.info["unit"] == "deg"
  synthetic = probe.synthetic_u8
  identity = probe.evaluate(synthetic)
  # Catches a drift measured against the labels or against the float renders.
  assert identity["label_drift"] == 0.0 and identity["collapsed"] == 0.0
  assert identity["selection_score"] == identity["realism_kid"]
  # Moving the eye 6 px to the right moves the pupil: the gaze the network reads changes.
  shifted = probe.evaluate(np.roll(synthetic, 6, axis=2))
  print("drift of the shift", shifted["label_drift"], "network error", shifted["task_error_synthetic"])
  assert shifted["label_drift"] > 5.0 and shifted["task_error_synthetic"] < 10.0
  assert shifted["collapsed"] == 0.0 or shifted["label_drift"] > 15.0
  assert shifted["selection_score"] == float("inf")  # over max_drift = 5 degrees: never selected


def test_constant_refiner_is_flagged_and_never_selected(eye_probe):
  c, probe, _, _ = eye_probe
  black = probe.evaluate(np.zeros_like(probe.synthetic_u8))
  assert black["collapsed"] == 1.0 and black["selection_score"] == float("inf")
  lines = train.probe_lines(400, black, c, probe.max_drift, "deg")
  assert len(lines) == 2 and lines[1].startswith("WARNING: step 400: the refiner collapsed")
  assert "two-sample acc" in lines[0] and "label drift" in lines[0]


def test_task_network_is_saved_and_reused(eye_probe):
  c, _, task, workdir = eye_probe
  info = json.load(open(f"{workdir}/task_network/task_network.json"))
  assert info["kind"] == "gaze" and info["train_steps"] == 100
  again = drift.task_network(c, None, None, (35, 55, 1), workdir, log=lambda _: None)  # no data: read back
  for a, b in zip(jax.tree.leaves(task.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _MeanTask:
  """A fake task network: its output is the image mean; change is the squared difference."""

  def apply(self, images):
    return jnp.mean(images, axis=(1, 2, 3))[:, None]

  def change(self, after, before):
    return jnp.sum(jnp.square(after - before), axis=-1)


def test_task_consistency_loss_value_and_gradient_flow_to_the_refined_images():
  synthetic = jnp.zeros((2, 4, 4, 1))
  refined = synthetic.at[0].add(0.5).at[1].add(-0.25)
  loss = losses.get_loss("task_consistency_loss")
  assert float(loss(synthetic, synthetic, _MeanTask())) == 0.0
  np.testing.assert_allclose(float(loss(refined, synthetic, _MeanTask())), (0.25 + 0.0625) / 2)
  grad = jax.grad(lambda r: loss(r, synthetic, _MeanTask()))(refined)
  # d/dr of (mean r)^2 / 2 per image: mean / 16 pixels; none through the synthetic side.
  np.testing.assert_allclose(np.asarray(grad[0]), np.full((4, 4, 1), 0.5 / 16), rtol=1e-6)


def test_an_adversarial_step_with_the_task_consistency_loss_uses_it(eye_probe):
  from simgan_jax import parallel  # pylint: disable=g-import-not-at-top

  c, _, task, _ = eye_probe
  c = c.copy_and_resolve_references()
  c.loss.task_consistency_weight = 0.01
  synthetic = eye_sources.eyesim_source(c.synthetic_data, (35, 55, 1))
  real = ArraySource(np.full((8, 35, 55, 1), 128, np.uint8))
  mesh = parallel.make_mesh(1)
  setup = training.make_setup(c, synthetic, real, 1).with_task_network(task)
  state = training.create_state(setup, mesh)
  step = training.compile_step(training.adversarial_step, setup, mesh, training.state_specs(state))
  _, metrics = step(state, parallel.put_replicated({"synthetic": {}, "real": real.device_data()}, mesh))
  # Catches a weight that is read but never reaches the refiner's loss (no metric), and a
  # fresh refiner that moves no prediction (a loss of 0 would not train anything).
  assert float(metrics["task_consistency_loss"]) > 0.0
  with pytest.raises(ValueError, match="config.loss.task_consistency_weight: > 0 but no task network"):
    training.compile_step(training.adversarial_step, setup.with_task_network(None), mesh,
                          training.state_specs(state))(state, {"synthetic": {}, "real": real.device_data()})


def test_drift_calibration_prints_a_perfect_refiner_and_known_changes():
  """launch/drift_calibration.py at smoke size: every row, numbers, and the perfect-refiner
  row only where the eye simulator meets eyesim_target."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  from tests.conftest import REPO  # pylint: disable=g-import-not-at-top

  script = os.path.join(REPO, "launch", "drift_calibration.py")
  result = subprocess.run([sys.executable, script, "--config=simgan_jax/configs/default.py:smoke",
                           "--num_images=32"], capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in result.stdout.splitlines()
          if line.startswith("| ") and not line.startswith("| change")}
  assert list(rows)[0] == "the same scenes, target appearance (a perfect refiner)"
  assert {"shifted 2 px right", "flipped left-right", "constant (grey)", "shuffled (another image's)"} <= set(rows)
  assert all(np.isfinite(v) and v >= 0 for v in rows.values()) and rows["shuffled (another image's)"] > 0


def test_selecting_by_label_drift_without_a_drift_stops_before_training():
  """Hand images carry several numeric labels and no drift network: :cpu's eye default
  (selection by label drift) failed at the first checkpoint, 100 steps in; it must stop
  at the start, and the hand configs select by realism KID."""
  from simgan_jax.configs import handsim, reproduce as reproduce_config
  from simgan_jax.data import sources
  from simgan_jax.probe import checkpoint

  c = handsim.get_config("smoke")
  c.realism.num_images, c.realism.subset_size = 16, 8  # the probe on, as at :cpu size
  shape = (c.image_height, c.image_width, c.channels)
  synthetic = sources.make_source(c.synthetic_data, shape)
  real = ArraySource(np.zeros((8, *shape), np.uint8))
  setup = training.make_setup(c, synthetic, real, 1)
  data = parallel.put_replicated({"synthetic": synthetic.device_data(), "real": real.device_data()},
                                 parallel.make_mesh(1))
  c.selection.metric = "label_drift"
  with pytest.raises(ConfigError, match="^config.selection.metric: 'label_drift' is not measured: the "
                     "synthetic data has no numeric label to choose"):
    checkpoint.task_network(c, setup, data, "", is_chief=True)
  c.drift.enabled = False
  with pytest.raises(ConfigError, match="not measured: config.drift.enabled is false"):
    checkpoint.task_network(c, setup, data, "", is_chief=True)
  c.selection.metric = "realism_kid"
  assert checkpoint.task_network(c, setup, data, "", is_chief=True) is None
  for experiment in ("handsim_pose:cpu", "handsim_pose", "nyu_hand:cpu"):
    assert reproduce_config.get_config(experiment).simgan.selection.metric == "realism_kid", experiment
