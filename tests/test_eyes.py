"""Tests of the eye simulator: determinism, conventions, labels agree with pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax.simulators import eyes

CONFIG = eyes.EyeSimConfig()
_render_batch = jax.jit(eyes.render_batch, static_argnums=1)


@jax.jit
def _render_params(params):
  image, labels = jax.vmap(lambda p: eyes.render(p, CONFIG))(params)
  pupil = jax.vmap(lambda p: eyes.render_layers(p, CONFIG)["pupil"])(params)
  return image, labels, pupil


def _keys(n, seed=0):
  return jax.random.split(jax.random.PRNGKey(seed), n)


def _params(n, seed=0):
  return jax.vmap(lambda k: eyes.sample_params(k, CONFIG))(_keys(n, seed))


def _centroid(weights_BHW):
  w = np.asarray(weights_BHW, np.float64)
  h, wd = w.shape[1:]
  ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(wd) + 0.5, indexing="ij")
  total = w.sum((1, 2))
  return np.stack([(w * xs).sum((1, 2)) / total, (w * ys).sum((1, 2)) / total], -1)


def test_shapes_range_and_determinism():
  images, labels = _render_batch(_keys(8), CONFIG)
  again, _ = _render_batch(_keys(8), CONFIG)
  other, _ = _render_batch(_keys(8, seed=1), CONFIG)
  assert images.shape == (8, 35, 55, 1) and images.dtype == jnp.float32
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
  np.testing.assert_array_equal(images, again)
  assert float(jnp.abs(images - other).mean()) > 0.05
  assert labels["iris_landmarks"].shape == (8, 8, 2)
  assert labels["eyelid_landmarks"].shape == (8, 8, 2)
  np.testing.assert_allclose(jnp.linalg.norm(labels["gaze"], axis=-1), 1.0, atol=1e-6)


def test_gaze_convention():
  gaze = eyes.gaze_vector(jnp.array([0.0, 0.3, -0.2]), jnp.array([0.0, -0.4, 0.5]))
  np.testing.assert_allclose(gaze[0], [0.0, 0.0, -1.0], atol=1e-7)
  np.testing.assert_allclose(eyes.pitch_yaw(gaze), [[0, 0], [0.3, -0.4], [-0.2, 0.5]], atol=1e-6)
  _, labels = _render_batch(_keys(4), CONFIG)
  np.testing.assert_allclose(eyes.pitch_yaw(labels["gaze"]), labels["pitchyaw"], atol=1e-5)


def test_pupil_centroid_matches_label():
  params = _params(16)
  _, labels, pupil = _render_params(params)
  error = np.linalg.norm(_centroid(pupil) - np.asarray(labels["pupil_center"]), axis=-1)
  assert error.max() < 0.2, error

  # Visible pixels, found by rendering twice with a different pupil tone, on the
  # examples whose pupil the lids do not cover.
  brighter = dict(params, pupil_tone=params["pupil_tone"] + 0.3, glint_strength=0 * params["glint_strength"])
  dark = dict(params, glint_strength=brighter["glint_strength"])
  image_a, _, _ = _render_params(dark)
  image_b, _, _ = _render_params(brighter)
  visible = np.asarray(image_b - image_a)[..., 0]
  full = np.asarray(pupil).sum((1, 2)) * 0.6
  unoccluded = visible.sum((1, 2)) > 0.95 * full * 0.55  # lid shadow darkens up to 45 %
  assert unoccluded.sum() >= 8
  error = np.linalg.norm(_centroid(visible) - np.asarray(labels["pupil_center"]), axis=-1)
  assert error[unoccluded].max() < 1.0, error


def test_pupil_moves_with_gaze():
  base = jax.tree.map(lambda x: jnp.repeat(x[:1], 4), _params(1))
  pitch = jnp.array([0.0, 0.0, 0.25, -0.25])
  yaw = jnp.array([0.35, -0.35, 0.0, 0.0])
  params = dict(base, gaze_pitch=pitch, gaze_yaw=yaw, lid_upper=jnp.full(4, 1.2),
                lid_lower=jnp.full(4, 0.9))
  _, labels, pupil = _render_params(params)
  centre = np.asarray(labels["pupil_center"])
  np.testing.assert_allclose(_centroid(pupil), centre, atol=0.2)
  # Positive yaw moves the pupil left (smaller x), positive pitch moves it up.
  assert centre[0, 0] < centre[1, 0] - 5
  assert centre[2, 1] < centre[3, 1] - 4
  # Orthographic projection: the shift is (depth of the iris plane) * g_xy.
  radius = float(base["eyeball_radius"][0]) * CONFIG.width
  depth = radius * np.sqrt(1 - float(base["iris_radius"][0])**2)
  expected = -depth * np.cos(0.0) * np.sin(0.35) * 2
  np.testing.assert_allclose(centre[0, 0] - centre[1, 0], expected, rtol=1e-4)


def test_rgb_and_other_sizes():
  config = eyes.EyeSimConfig(height=64, width=64, channels=3)
  images, labels = _render_batch(_keys(2), config)
  assert images.shape == (2, 64, 64, 3)
  assert float(jnp.abs(images[..., 0] - images[..., 2]).max()) > 0.05
  with pytest.raises(ValueError, match="channels"):
    eyes.EyeSimConfig(channels=2)
