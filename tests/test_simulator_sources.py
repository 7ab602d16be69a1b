"""Tests of the registered eye sources."""

import jax
import ml_collections
import numpy as np
import pytest

from simgan_jax.data import sources

SHAPE = (35, 55, 1)


def _target_config(tmp_path, **fields):
  base = dict(name="eyesim_target", cache_dir=str(tmp_path), num_train=32, num_validation=32,
              num_test=32, seed=3)
  return ml_collections.ConfigDict({**base, **fields})


def test_eyesim_source_samples_on_device():
  source = sources.make_source(ml_collections.ConfigDict({"name": "eyesim"}), SHAPE)
  assert source.image_shape == SHAPE and source.device_data() == {}
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  batch = jax.jit(source.sample)({}, keys)
  assert batch["image"].shape == (4, 35, 55, 1)
  assert batch["gaze"].shape == (4, 3) and batch["pupil_center"].shape == (4, 2)
  np.testing.assert_array_equal(jax.jit(source.sample)({}, keys)["image"], batch["image"])


def test_eyesim_target_source_and_labelled_split(tmp_path):
  source = sources.make_source(_target_config(tmp_path), SHAPE, "real_data")
  assert source.image_shape == SHAPE and source.images.dtype == np.uint8
  batch = source.sample(source.device_data(), jax.random.split(jax.random.PRNGKey(0), 4))
  assert batch["image"].shape == (4, 35, 55, 1)
  assert -1 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1

  from simgan_jax.simulators import sources as eye_sources
  images, labels = eye_sources.load_labelled_split(_target_config(tmp_path), SHAPE, "test")
  assert images.shape == (32, 35, 55, 1) and labels["pitchyaw"].shape == (32, 2)
  test_source = sources.make_source(_target_config(tmp_path, split="test"), SHAPE)
  np.testing.assert_array_equal(test_source.images, images)


@pytest.mark.parametrize("fields, message", [
    ({"split": "dev"}, "'split'"),
    ({"num_train": 0}, "'num_train'"),
    ({"colour": 1}, "'colour'"),
])
def test_bad_fields_raise(tmp_path, fields, message):
  with pytest.raises(ValueError, match=message):
    sources.make_source(_target_config(tmp_path, **fields), SHAPE)


def test_eyesim_overrides_and_bad_fields():
  config = ml_collections.ConfigDict({"name": "eyesim", "gaze_yaw_deg": (-5.0, 5.0)})
  source = sources.make_source(config, SHAPE)
  batch = source.sample({}, jax.random.split(jax.random.PRNGKey(0), 8))
  assert np.abs(np.degrees(batch["pitchyaw"][:, 1])).max() <= 5.0
  with pytest.raises(ValueError, match="'foo'"):
    sources.make_source(ml_collections.ConfigDict({"name": "eyesim", "foo": 1}), SHAPE)
  with pytest.raises(ValueError, match="image_shape"):
    sources.make_source(ml_collections.ConfigDict({"name": "eyesim"}), (35, 55, 2))
