"""Hand simulator and Kinect-like target: camera maths, ray casting, factors off, cache."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax.data.builders import imaging
from simgan_jax.simulators import hand_sources, hands, hands_target

SMALL = hands.HandSimConfig(height=32, width=32)


def test_projection_against_hand_computed_camera_maths():
  # x = 100, y = 50 up (NYU xyz), z = 800 mm: u = 320 + 588.03 * 100 / 800,
  # v = 240 - 587.07 * 50 / 800. Catches a flipped y, swapped fx/fy or a missing cx.
  uvd = hands.project(jnp.array([[100.0, -50.0, 800.0]]))  # camera coordinates are y down
  np.testing.assert_allclose(uvd, [[393.50375, 203.308125, 800.0]], rtol=1e-6)
  np.testing.assert_allclose(hands.to_nyu_xyz(jnp.array([[100.0, -50.0, 800.0]])), [[100.0, 50.0, 800.0]])


def test_labels_follow_the_camera_and_the_builder_crop():
  params = hands.sample_params(jax.random.PRNGKey(1), SMALL)
  _, lab = jax.jit(lambda p: hands.render(p, SMALL))(params)
  lab = jax.tree.map(np.asarray, lab)
  x, y, z = lab["joints_xyz"].T.astype(np.float64)
  np.testing.assert_allclose(lab["joints_uvd"][:, 0], 320 + 588.03 * x / z, rtol=1e-5)
  np.testing.assert_allclose(lab["joints_uvd"][:, 1], 240 - 587.07 * y / z, rtol=1e-5)
  np.testing.assert_allclose(lab["centre_depth"], z.mean(), rtol=1e-5)
  x0, y0, bw, bh = lab["crop_box"]
  # The NYU builder's own mapping from frame to crop coordinates.
  expected = imaging.to_crop_coords(lab["joints_uvd"][:, :2].astype(np.float64), int(x0), int(y0), int(bw),
                                    int(bh), 32, 32)
  np.testing.assert_allclose(lab["joints"], expected, atol=1e-3)
  assert lab["joints"].min() > 0 and lab["joints"].max() < 32  # the 1.4x box keeps the joints inside


def test_renderer_depth_at_known_primitives():
  axis = jnp.array([[0.0, 0.0, 1.0]])
  # A capsule across the optical axis at 500 mm, radius 10: the front surface is at 490 mm.
  np.testing.assert_allclose(hands.capsule_hit(axis, jnp.array([-20.0, 0, 500]), jnp.array([20.0, 0, 500]), 10.0),
                             [490.0], rtol=1e-6)
  # A ray passing just beyond the end hits only the end cap: the sphere-ray formula by hand
  # (a capsule without caps, or with the cap at the wrong end, would miss or differ).
  c = jnp.array([20.0, 0, 500])
  d = np.array([25.0, 0, 500]) / np.linalg.norm([25.0, 0, 500])
  dc = float(d @ np.asarray(c))
  expected = dc - np.sqrt(dc**2 - float(c @ c) + 100.0)
  np.testing.assert_allclose(hands.capsule_hit(jnp.asarray(d, jnp.float32)[None], jnp.array([-20.0, 0, 500]), c,
                                               10.0), [expected], rtol=1e-5)
  assert np.isinf(hands.capsule_hit(jnp.array([[0.6, 0.0, 0.8]]), jnp.array([-20.0, 0, 500]), c, 10.0)[0])
  # The palm ellipsoid (half-axis 14 mm along z) at 600 mm: hit at 586 mm.
  np.testing.assert_allclose(hands.ellipsoid_hit(axis, jnp.array([0.0, 0, 600]), jnp.eye(3),
                                                 jnp.array([40.0, 48.0, 14.0])), [586.0], rtol=1e-6)
  # ray_depth returns z-depth: an off-axis ray to a plane-facing sphere pole.
  prims = {"ends": jnp.array([[[0.0, 0, 700], [0.0, 0, 700]]]), "radii": jnp.array([5.0]),
           "palm_centre": jnp.array([0.0, 0, 5000]), "palm_axes": jnp.eye(3), "palm_radii": jnp.ones(3)}
  depth = hands.ray_depth(jnp.array([[[0.0, 0.0, 1.0]]]), prims)
  np.testing.assert_allclose(depth, [[695.0]], rtol=1e-6)


def test_normalisation_matches_the_builder_levels():
  # Builder: uint8 round(((d - c) / 150 + 1) * 63.5), background 255 -> +1.
  depth = jnp.array([[700.0, 850.0, 550.0, 851.0, 0.0]])
  out = np.asarray(hands.normalise(depth, 700.0, SMALL))[0, :, 0]
  levels = (out + 1) * 127.5
  np.testing.assert_allclose(levels, [63.5, 127.0, 0.0, 255.0, 255.0], atol=1e-4)


def test_sensor_off_is_the_simulator_and_on_changes_the_image():
  scene = dataclasses.replace(hands_target.TARGET_SCENE, height=32, width=32)
  on = hands_target.HandTargetConfig(scene=scene)
  off = hands_target.sensor_off(on)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)

  @jax.jit
  def both(keys):
    params = jax.vmap(lambda k: hands_target.sample_params(k, on))(keys)
    sim = jax.vmap(lambda p: hands.render(p["scene"], scene))(params)
    return sim, jax.vmap(lambda p: hands_target.render(p, off))(params), jax.vmap(
        lambda p: hands_target.render(p, on))(params)

  (sim, sim_lab), (plain, plain_lab), (target, target_lab) = both(keys)
  # Catches a factor that is not switched off by 0 (any leaves differences of 1e-3 or more);
  # 1e-6 allows the last-bit rounding of XLA fusing x * 1 + 0 differently from x.
  np.testing.assert_allclose(plain, sim, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(target_lab["joints"], sim_lab["joints"])  # same geometry, same labels
  assert float(jnp.mean(jnp.abs(target - sim))) > 0.01


def test_sources_and_the_cached_target(tmp_path, capsys):
  from simgan_jax.configs import default
  from simgan_jax.data import sources

  sim = sources.make_source(default.data_config("handsim"), (32, 32, 1))
  batch = jax.jit(lambda k: sim.sample({}, k))(jax.random.split(jax.random.PRNGKey(0), 2))
  assert batch["image"].shape == (2, 32, 32, 1) and batch["joints"].shape == (2, 14, 2)
  section = default.data_config("handsim_target", split="test", cache_dir=str(tmp_path), num_train=8)
  section.num_validation, section.num_test = 8, 8
  images, labels = hand_sources.load_labelled_split(section, (32, 32, 1), "test")
  assert images.shape == (8, 32, 32, 1) and images.dtype == np.uint8
  assert set(labels) == set(hand_sources.LABEL_FIELDS)
  assert (tmp_path / "handsim_target").is_dir()
  # The rendering message names the hand target (it said eyesim_target for every domain).
  assert capsys.readouterr().err.startswith("handsim_target: rendering the test split (8 images)")
  pool = sources.make_source(default.data_config("handsim_target", cache_dir=str(tmp_path), num_train=8,
                                                 num_validation=8, num_test=8), (32, 32, 1))
  assert pool.images.shape == (8, 32, 32, 1) and not pool.labels  # the training pool is unlabelled
  with pytest.raises(ValueError, match="handsim config field 'gaze_yaw_deg': unknown"):
    sources.make_source(default.data_config("handsim", gaze_yaw_deg=(0, 1)), (32, 32, 1))
