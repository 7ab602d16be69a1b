"""Pupil localiser: sub-pixel on drawn disks, < 1 px on simulator renders, shifts."""

import jax
import numpy as np
import pytest

from simgan_jax.probe import pupil
from simgan_jax.simulators import eyes


def drawn_eye(cx, cy, pupil_r=3.0, iris_r=6.0, glint=None, shape=(35, 55), supersample=8):
  """A [-1, 1] image [1, H, W, 1]: skin 0.6, iris disk 0.35, pupil disk 0.05, area-sampled."""
  h, w = shape
  t = (np.arange(supersample) + 0.5) / supersample
  ys = (np.arange(h)[:, None] + t[None]).reshape(-1)
  xs = (np.arange(w)[:, None] + t[None]).reshape(-1)
  y, x = np.meshgrid(ys, xs, indexing="ij")
  r2 = (x - cx)**2 + (y - cy)**2
  tone = np.where(r2 <= pupil_r**2, 0.05, np.where(r2 <= iris_r**2, 0.35, 0.6))
  if glint is not None:  # a bright 2x2 px spot, as a corneal reflection
    tone = np.where((np.abs(x - glint[0]) < 1) & (np.abs(y - glint[1]) < 1), 1.0, tone)
  grey = tone.reshape(h, supersample, w, supersample).mean(axis=(1, 3))
  return (grey * 2 - 1)[None, :, :, None].astype(np.float32)


@pytest.mark.parametrize("cx, cy, glint", [(27.3, 17.6, None), (20.75, 14.1, None),
                                           (31.1, 19.45, (32.0, 18.5))])
def test_drawn_pupil_is_found_to_a_hundredth_of_a_pixel(cx, cy, glint):
  found = np.asarray(pupil.localize_pupil(drawn_eye(cx, cy, glint=glint)))[0]
  np.testing.assert_allclose(found, [cx, cy], atol=0.02 if glint is None else 0.15)


@pytest.fixture(scope="module")
def renders():
  keys = jax.random.split(jax.random.PRNGKey(7), 128)
  images, labels = jax.jit(lambda k: eyes.render_batch(k, eyes.EyeSimConfig()))(keys)
  return np.asarray(images), np.asarray(labels["pupil_center"])


def test_error_on_noise_free_simulator_renders_is_below_one_pixel(renders):
  images, centres = renders
  errors = np.asarray(pupil.localisation_error_px(images, centres))
  assert errors.mean() < 1.0 and np.median(errors) < 0.6, (errors.mean(), np.median(errors))


def test_shift_of_a_rolled_image_is_the_roll(renders):
  images, _ = renders
  assert np.all(np.asarray(pupil.pupil_shift(images, images)) == 0.0)
  for axis, shift in ((2, 2), (1, -2)):  # 2 px right; 2 px up
    rolled = np.roll(images, shift, axis=axis)
    shifts = np.asarray(pupil.pupil_shift(images, rolled))
    assert np.median(np.abs(shifts - 2.0)) < 0.02 and np.mean(shifts) == pytest.approx(2.0, abs=0.15)
