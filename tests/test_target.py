"""Tests of the target domain: factors switch off exactly, the gap is real, the cache."""

import dataclasses
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax.simulators import eyes, target, target_dataset

CONFIG = target.TargetConfig()
OFF = target.appearance_off(CONFIG)
TINY = target_dataset.TargetDatasetConfig(num_train=32, num_validation=32, num_test=32, seed=3)


# Batches of 32, like the tiny cache's chunks, so the staged renderer compiles once.
BATCH = 32


def _keys(seed=0):
  return jax.random.split(jax.random.PRNGKey(seed), BATCH)


def _params(keys):
  return jax.vmap(lambda k: target.sample_params(k, CONFIG))(keys)


@jax.jit
def _render_both(params):
  simulator, sim_labels = jax.vmap(lambda p: eyes.render(p["scene"], CONFIG.scene))(params)
  plain, plain_labels = jax.vmap(lambda p: target.render(p, OFF))(params)
  return simulator, plain, sim_labels, plain_labels


def test_all_factors_off_is_the_simulator_and_on_is_far_from_it():
  assert set(target.APPEARANCE_FACTORS) == {
      f.name for f in dataclasses.fields(OFF) if f.name != "scene"}
  assert all(getattr(OFF, name) == 0 for name in target.APPEARANCE_FACTORS)
  simulator, plain, sim_labels, plain_labels = _render_both(_params(_keys()))
  full, _ = target.render_batch_staged(_keys(), CONFIG)
  np.testing.assert_array_equal(plain, simulator)
  jax.tree.map(np.testing.assert_array_equal, plain_labels, sim_labels)
  assert float(full.min()) >= -1 and float(full.max()) <= 1
  assert float(jnp.abs(full - simulator).mean()) > 0.15

  # Texture, noise and blocking: much more high-frequency energy than the
  # simulator's smooth shading.
  def roughness(images):
    lap = 4 * images[:, 1:-1, 1:-1] - images[:, :-2, 1:-1] - images[:, 2:, 1:-1] \
        - images[:, 1:-1, :-2] - images[:, 1:-1, 2:]
    return float(jnp.abs(lap).mean())
  assert roughness(full) > 1.5 * roughness(simulator)


def test_deterministic_and_staged_equals_one_program():
  keys = _keys(5)
  a, labels_a = jax.jit(target.render_batch, static_argnums=1)(keys, CONFIG)
  b, labels_b = target.render_batch_staged(keys, CONFIG)
  c, _ = target.render_batch_staged(keys, CONFIG)
  np.testing.assert_array_equal(b, c)
  # Fusion differs between the two programs: allow float rounding only.
  np.testing.assert_allclose(a, b, atol=2e-3)
  np.testing.assert_array_equal(labels_a["pupil_center"], labels_b["pupil_center"])


def test_target_scene_distribution_differs():
  params = jax.jit(_params)(jax.random.split(jax.random.PRNGKey(0), 1024))["scene"]
  pitch, yaw = np.degrees(np.asarray(params["gaze_pitch"])), np.degrees(np.asarray(params["gaze_yaw"]))
  assert -25 <= pitch.min() and pitch.max() <= 5 and abs(pitch.mean() + 10) < 1
  # The simulator's yaw is uniform on [-30, 30] (std 17.3 deg).
  assert np.abs(yaw).max() <= 22 and yaw.std() < 0.6 * 60 / np.sqrt(12)


def test_cache_builds_once_and_reloads(tmp_path, monkeypatch):
  calls = []
  generate = target_dataset.generate_split
  monkeypatch.setattr(target_dataset, "generate_split",
                      lambda *a, **k: calls.append(a[1]) or generate(*a, **k))
  images, labels = target_dataset.load_split("test", TINY, cache_dir=tmp_path)
  assert images.shape == (32, 35, 55, 1) and images.dtype == np.uint8
  assert labels["pupil_center"].shape == (32, 2) and labels["gaze"].shape == (32, 3)
  directory = target_dataset.cache_directory(TINY, tmp_path)
  assert directory == tmp_path / "eyesim_target" / target_dataset.config_hash(TINY)
  mtime = (directory / "test.npz").stat().st_mtime_ns
  again, _ = target_dataset.load_split("test", TINY, cache_dir=tmp_path)
  np.testing.assert_array_equal(again, images)
  assert calls == ["test"] and (directory / "test.npz").stat().st_mtime_ns == mtime

  # The train pool is unlabelled; a changed config is a new cache.
  train, train_labels = target_dataset.load_split("train", TINY, cache_dir=tmp_path)
  assert train.shape == (32, 35, 55, 1) and train_labels == {}
  other = dataclasses.replace(TINY, seed=4)
  assert target_dataset.config_hash(other) != target_dataset.config_hash(TINY)
  other_images, _ = target_dataset.load_split("test", other, cache_dir=tmp_path)
  assert calls == ["test", "train", "test"]
  assert not np.array_equal(other_images, images)

  # The environment variable sets the root when no argument is given.
  monkeypatch.setenv("SIMGAN_JAX_CACHE", str(tmp_path))
  target_dataset.load_split("test", TINY)
  assert calls == ["test", "train", "test"]


def test_truncated_or_corrupt_cache_is_rebuilt_with_a_warning(tmp_path):
  images, _ = target_dataset.load_split("validation", TINY, cache_dir=tmp_path)
  path = target_dataset.cache_directory(TINY, tmp_path) / "validation.npz"
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.warns(UserWarning, match="validation.npz is truncated or corrupt"):
    rebuilt, _ = target_dataset.load_split("validation", TINY, cache_dir=tmp_path)
  np.testing.assert_array_equal(rebuilt, images)

  flipped = bytearray(path.read_bytes())
  flipped[-100] ^= 0xFF
  path.write_bytes(bytes(flipped))
  with pytest.warns(UserWarning, match="validation.npz is truncated or corrupt"):
    target_dataset.load_split("validation", TINY, cache_dir=tmp_path)

  (path.parent / "manifest.json").write_text("{not json")
  with pytest.warns(UserWarning, match="manifest.json is corrupt"):
    target_dataset.load_split("validation", TINY, cache_dir=tmp_path)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    np.testing.assert_array_equal(
        target_dataset.load_split("validation", TINY, cache_dir=tmp_path)[0], images)


def test_cache_build_says_so_at_once_and_reports_progress(tmp_path, capsys):
  # Building the target cache used to print nothing for minutes.
  seen = []
  images, _ = target_dataset.generate_split(TINY, "test", progress=seen.append)
  assert seen == [32] and len(images) == 32
  capsys.readouterr()
  target_dataset.load_split("test", TINY, cache_dir=tmp_path)
  err = capsys.readouterr().err.splitlines()
  directory = target_dataset.cache_directory(TINY, tmp_path)
  assert err[0] == f"eyesim_target: rendering the test split (32 images) into {directory} (first use only)"
  assert err[-1].startswith("eyesim_target test: 32 images in ")
  target_dataset.load_split("test", TINY, cache_dir=tmp_path)
  assert capsys.readouterr().err == ""  # cached: silent


def test_target_eval_examples_renders_the_first_images_of_the_full_target_splits(tmp_path, monkeypatch):
  """An estimator's target_eval_examples cuts a built-in target's labelled split to its
  first N examples (eyes and hands), rendering only those: the same images and labels as
  rows [0, N) of the full-size split rendered in bigger chunks."""
  from simgan_jax.configs import gaze, pose
  from simgan_jax.errors import ConfigError
  from simgan_jax.simulators import hand_sources, sources as eye_sources
  from simgan_jax.tasks import data as data_lib, pose_data

  rendered = []
  generate = target_dataset.generate_split
  monkeypatch.setattr(target_dataset, "generate_split",
                      lambda *a, **k: (lambda out: rendered.append(len(out[0])) or out)(generate(*a, **k)))
  for module, eval_set, sources, spec, label in (
      (gaze, data_lib.eval_set, eye_sources, "eyesim_target:test", "gaze"),
      (pose, pose_data.eval_set, hand_sources, "handsim_target:validation", "joints")):
    config = module.get_config("smoke")
    config.cache_dir, config.target_eval_examples = str(tmp_path), 5
    rendered.clear()
    images, labels = eval_set(spec, config)
    assert images.shape[0] == 5 and labels.shape[0] == 5 and rendered == [5]  # only those 5 rendered
    sizes = data_lib.data_config(spec, config, False)
    assert (sizes.num_validation, sizes.num_test) == (5, 5)
    config.target_eval_examples, config.max_examples = 0, 7  # off; max_examples is for TFDS sets only
    assert "num_test" not in data_lib.data_config(spec, config, False)
    full = sources.dataset_config(data_lib.data_config(spec, config, False), data_lib.image_shape(config))
    assert full.num_test >= 2000 and full.num_validation >= 2000
    full_images, full_labels = generate(full, spec.split(":")[1], num=64)  # one chunk of 64, not of 5
    np.testing.assert_array_equal(images, full_images[:5])
    np.testing.assert_allclose(labels, full_labels[label][:5], rtol=1e-6, atol=1e-6)  # float32 ulps: chunk sizes differ
    config.target_eval_examples = -1
    with pytest.raises(ConfigError, match="^config.target_eval_examples: expected an integer >= 0"):
      data_lib.data_config(spec, config, False)
