import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax import losses

# One image, a 1x2 patch map: patch 0 has equal logits, patch 1 favours "real" 3:1.
LOGITS = jnp.array([[[[0.0, 0.0], [math.log(3.0), 0.0]]]])


def test_adversarial_loss_sums_patch_cross_entropy():
  # -log(1/2) - log(3/4)
  assert float(losses.local_adversarial_loss(LOGITS)) == pytest.approx(math.log(2) + math.log(4 / 3), rel=1e-6)
  assert float(losses.local_adversarial_loss(LOGITS, reduction="mean")) == pytest.approx(
      (math.log(2) + math.log(4 / 3)) / 2, rel=1e-6)


def test_adversarial_loss_averages_over_images():
  batch = jnp.concatenate([LOGITS, jnp.zeros_like(LOGITS)])
  expected = ((math.log(2) + math.log(4 / 3)) + 2 * math.log(2)) / 2
  assert float(losses.local_adversarial_loss(batch)) == pytest.approx(expected, rel=1e-6)


def test_discriminator_loss_labels_real_and_refined():
  # Real images scored with LOGITS (label real): log2 + log(4/3).
  # Refined images scored with LOGITS (label refined): -log(1/2) - log(1/4).
  expected = (math.log(2) + math.log(4 / 3)) + (math.log(2) + math.log(4))
  assert float(losses.local_discriminator_loss(LOGITS, LOGITS)) == pytest.approx(expected, rel=1e-6)


def test_self_regularization_is_l1_against_the_synthetic_input():
  synthetic = jnp.zeros((2, 2, 2, 1))
  refined = jnp.array([[[[0.5], [-0.25]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[1.0], [1.0]]]])
  # image 0: 0.75, image 1: 4.0 -> mean 2.375; per-pixel mean: (0.1875 + 1.0) / 2
  assert float(losses.self_regularization_loss(refined, synthetic, psi=losses.identity)) == pytest.approx(2.375)
  assert float(losses.self_regularization_loss(refined, synthetic, psi=losses.identity,
                                               reduction="mean")) == pytest.approx(0.59375)


def test_channel_mean_psi_ignores_colour_shifts_that_keep_the_mean():
  synthetic = jnp.zeros((1, 1, 1, 3))
  refined = jnp.array([[[[0.3, -0.3, 0.0]]]])
  assert float(losses.self_regularization_loss(refined, synthetic, psi=losses.channel_mean)) == pytest.approx(0.0)
  assert float(losses.self_regularization_loss(refined + 0.3, synthetic, psi=losses.channel_mean)) == pytest.approx(
      0.3, rel=1e-6)


def test_free_missing_charges_nothing_for_a_dropped_pixel_and_passes_no_gradient_through_it():
  synthetic = jnp.full((1, 4, 4, 1), -0.5)
  refined = synthetic.at[0, 1, 1, 0].set(1.0).at[0, 2, 2, 0].set(-0.3)  # one dropped, one changed
  loss = lambda r: losses.self_regularization_loss(losses.free_missing(r, synthetic, 0.5), synthetic,  # noqa: E731
                                                   psi=losses.identity)
  assert float(loss(refined)) == pytest.approx(0.2)  # the changed pixel only
  assert float(losses.self_regularization_loss(refined, synthetic, psi=losses.identity)) == pytest.approx(1.7)
  grad = jax.grad(loss)(refined)[0, ..., 0]
  assert float(grad[1, 1]) == 0.0 and float(grad[2, 2]) == 1.0
  # A dropped pixel does not move low_pass_4's block mean either (no dark pixel needed to balance it).
  assert float(losses.self_regularization_loss(losses.free_missing(refined.at[0, 2, 2, 0].set(-0.5), synthetic, 0.5),
                                               synthetic, psi=losses.low_pass_4)) == 0.0
  # At the threshold counts as dropped; None is off; a synthetic pixel at 1.0 left at 1.0 costs 0 either way.
  assert float(loss(synthetic.at[0, 0, 0, 0].set(0.5))) == 0.0
  assert losses.free_missing(refined, synthetic, None) is refined


@pytest.mark.parametrize("psi,k", [(losses.low_pass_2, 2), (losses.low_pass_4, 4)])
def test_low_pass_psi_ignores_zero_mean_detail_and_charges_coarse_changes(psi, k):
  synthetic = jax.random.uniform(jax.random.PRNGKey(0), (2, 35, 55, 1), minval=-1, maxval=1)
  # A +-0.4 checkerboard has zero mean over every k x k block (35 and 55 end in partial
  # blocks, so keep it off the last partial row and column of blocks).
  ii, jj = jnp.meshgrid(jnp.arange(35), jnp.arange(55), indexing="ij")
  checker = 0.4 * jnp.where((ii + jj) % 2 == 0, 1.0, -1.0)
  full = (ii < 35 // k * k) & (jj < 55 // k * k)
  detail = jnp.where(full, checker, 0.0)[None, :, :, None]
  loss = lambda refined: float(losses.self_regularization_loss(refined, synthetic, psi=psi))
  assert loss(synthetic + detail) == pytest.approx(0.0, abs=1e-3)
  # identity charges the same detail in full; a brightness shift costs the same under both
  assert float(losses.self_regularization_loss(synthetic + detail, synthetic, psi=losses.identity)) \
      == pytest.approx(0.4 * float(full.sum()), rel=1e-4)
  assert loss(synthetic + 0.1) == pytest.approx(0.1 * 35 * 55, rel=1e-4)
  assert psi(synthetic).shape == synthetic.shape


def test_patch_accuracy():
  assert float(losses.patch_accuracy(LOGITS, losses.REAL)) == 1.0  # a tie counts as class 0, real
  assert float(losses.patch_accuracy(-LOGITS, losses.REFINED)) == 0.5


def test_registries_name_the_field_on_unknown_names():
  with pytest.raises(ValueError, match=r"config.loss.adversarial: unknown loss 'nope'"):
    losses.get_loss("nope", "loss.adversarial")
  with pytest.raises(ValueError, match=r"config.loss.psi: unknown feature map 'vgg'"):
    losses.get_psi("vgg")


def test_a_registered_loss_is_found_by_name():
  @losses.register_loss("test_hinge_adversarial")
  def hinge(refined_logits_BHW2, *, reduction="sum"):
    return jnp.mean(jnp.maximum(0.0, 1.0 - (refined_logits_BHW2[..., 0] - refined_logits_BHW2[..., 1])))

  assert losses.get_loss("test_hinge_adversarial") is hinge
  # patch 0: margin 0 -> 1; patch 1: margin log 3 > 1 -> 0
  assert float(hinge(LOGITS)) == pytest.approx(0.5)


BRIGHTNESS_FREE = ("gradients", "band_pass", "contrast_normalized", "normalized_low_pass_4", "normalized_band")


@pytest.mark.parametrize("psi", ("identity", *BRIGHTNESS_FREE))
def test_brightness_free_psi_ignore_a_global_shift_and_all_psi_charge_a_content_change(psi):
  x = jnp.asarray(np.random.default_rng(0).uniform(-0.8, 0.8, (2, 35, 55, 1)), jnp.float32)
  loss = lambda refined: float(losses.self_regularization_loss(refined, x, psi=losses.get_psi(psi)))  # noqa: E731
  shifted = loss(x + 0.2)
  if psi == "identity":
    assert shifted == pytest.approx(0.2 * 35 * 55, rel=1e-5)
  else:  # float32 rounding only, against ~10-1000 for the content change below
    assert shifted < 1e-3
  # A content change: a brighter square (an edge D could see), and one flipped image.
  assert loss(x.at[:, 10:20, 10:25].add(0.3)) > 1.0
  assert loss(x[:, ::-1]) > 10.0


def test_gradients_and_band_pass_by_hand():
  x = jnp.asarray(np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1) ** 2)
  d = np.asarray(x[0, ..., 0], np.float64)
  np.testing.assert_allclose(losses.gradients(x)[0], np.concatenate([np.diff(d, axis=1).ravel(),
                                                                      np.diff(d, axis=0).ravel()]))
  # Level 0 of the pyramid: the image minus its 2x2 block means (a partial last row of blocks
  # averages its own pixels), at full resolution; its sum over one 2 x 2 block is 0.
  means = np.array([[d[:2, :2].mean(), d[:2, 2:].mean()], [d[2:, :2].mean(), d[2:, 2:].mean()]])
  level0 = d - np.repeat(np.repeat(means, 2, 0), 2, 1)[:3, :4]
  np.testing.assert_allclose(losses.band_pass(x)[0, :12], level0.ravel(), rtol=1e-6)
  normalized = losses.contrast_normalized(x)
  np.testing.assert_allclose([normalized.mean(), normalized.std()], [0.0, 1.0], atol=1e-5)


def test_normalized_low_pass_4_frees_contrast_and_detail_and_keeps_the_layout():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(-0.8, 0.8, (2, 35, 55, 1)), jnp.float32)
  psi = losses.get_psi("normalized_low_pass_4")
  # By hand: each image at zero mean and unit std, then 4 x 4 block means (partial last blocks).
  d = np.asarray(x[0, ..., 0], np.float64)
  z = (d - d.mean()) / d.std()
  blocks = np.array([[z[i:i + 4, j:j + 4].mean() for j in range(0, 55, 4)] for i in range(0, 35, 4)])
  np.testing.assert_allclose(psi(x)[0, ..., 0], np.repeat(np.repeat(blocks, 4, 0), 4, 1)[:35, :55],
                             rtol=1e-4, atol=1e-5)
  loss = lambda refined: float(losses.self_regularization_loss(refined, x, psi=psi))  # noqa: E731
  assert loss(0.4 * x - 0.3) < 1e-2  # darker and flatter: free
  # Detail inside the 4 x 4 blocks (zero mean in each block) is free too; identity charges it.
  detail = jnp.asarray(np.tile([[1.0, -1.0], [-1.0, 1.0]], (18, 28))[:35, :55, None] * 0.1, jnp.float32)
  assert loss(x + detail) < 0.1 * float(losses.self_regularization_loss(x + detail, x, psi=losses.identity))
  assert loss(x[:, ::-1]) > 100.0 and loss(-x) > 100.0  # moved or inverted content is charged


def test_normalized_band_frees_slow_illumination_and_keeps_the_eye():
  """A smooth gain across the image (uneven light, as the eye target draws it) is nearly
  free under normalized_band and charged by normalized_low_pass_4 (whose block means
  turn it into a staircase); a pupil moved by 2 px is charged by both; the blur is a
  normalised Gaussian that keeps constants and ramps."""
  yy, xx = np.mgrid[:35, :55].astype(np.float32)
  eye = 0.6 - 1.2 * np.exp(-((yy - 17)**2 + (xx - 27)**2) / (2 * 3.0**2))  # a dark pupil on light skin
  moved = 0.6 - 1.2 * np.exp(-((yy - 17)**2 + (xx - 29)**2) / (2 * 3.0**2))
  gain = np.exp(0.35 * (xx / 55 * 2 - 1) + 0.2 * (yy / 35 * 2 - 1))  # the target's tilt, x and y
  lit = (eye + 1.0) * gain - 1.0
  as_batch = lambda a: jnp.asarray(a[None, :, :, None], jnp.float32)  # noqa: E731
  band, lp4 = losses.get_psi("normalized_band"), losses.get_psi("normalized_low_pass_4")
  loss = lambda psi, refined: float(losses.self_regularization_loss(as_batch(refined), as_batch(eye), psi=psi))  # noqa: E731
  assert loss(band, lit) < 0.1 * loss(lp4, lit)  # measured: 56 vs 1716
  assert loss(band, moved) > 3 * loss(band, lit)  # 356
  assert loss(band, moved) > 0.5 * loss(lp4, moved)  # lp4: 249
  flat = jnp.full((1, 35, 55, 1), 0.3, jnp.float32)
  np.testing.assert_allclose(losses._gaussian_blur(flat, losses.BAND_SIGMA), flat, rtol=1e-6)  # pylint: disable=protected-access
  ramp = as_batch(xx)
  np.testing.assert_allclose(losses._gaussian_blur(ramp, losses.BAND_SIGMA), ramp, rtol=1e-4, atol=1e-3)  # pylint: disable=protected-access


def test_score_function_surrogate_is_zero_valued_with_the_reinforce_gradient():
  """Value 0; gradient mean_b (L_b - mean L) d log p_b / d theta, the losses held fixed:
  for log p_b = -(x_b - mu)^2 / 2 (unit Gaussian draws x_b), d/dmu = mean (L_b - Lbar)(x_b - mu)."""
  x = jnp.asarray([0.3, -1.2, 2.0, 0.5])
  per_example = jnp.asarray([1.0, 4.0, -2.0, 0.5])

  def f(mu, scale):
    logp = -0.5 * (x - mu)**2
    return losses.score_function_surrogate(per_example * scale, logp)

  assert float(f(0.1, 1.0)) == 0.0
  g_mu, g_scale = jax.grad(f, argnums=(0, 1))(0.1, 1.0)
  expected = np.mean((np.asarray(per_example) - np.mean(per_example)) * (np.asarray(x) - 0.1))
  np.testing.assert_allclose(float(g_mu), expected, rtol=1e-6)
  assert float(g_scale) == 0.0  # no gradient through the losses themselves


def test_local_score_function_surrogate_credits_each_pixel_with_its_patch():
  """Value 0; gradient sum_pixels (with - without)[nearest patch] d log p_pixel / d theta,
  averaged over images, / (h * w) under "mean"; no gradient through either loss map."""
  rng = np.random.default_rng(0)
  with_map = jnp.asarray(rng.normal(size=(2, 2, 3)), jnp.float32)
  without = jnp.asarray(rng.normal(size=(2, 2, 3)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(2, 4, 6)), jnp.float32)

  def f(theta, scale, reduction="sum"):
    return losses.local_score_function_surrogate(with_map * scale, without * scale, theta * x, reduction)

  assert float(f(0.7, 1.0)) == 0.0
  g_theta, g_scale = jax.grad(f, argnums=(0, 1))(0.7, 1.0)
  adv = np.asarray(with_map - without)
  # Pixel (i, j) of a 4 x 6 image lies in patch (i // 2, j // 2) of the 2 x 3 map.
  credit = adv.repeat(2, axis=1).repeat(2, axis=2)
  expected = np.mean(np.sum(credit * np.asarray(x), axis=(1, 2)))
  np.testing.assert_allclose(float(g_theta), expected, rtol=1e-5)
  assert float(g_scale) == 0.0
  np.testing.assert_allclose(float(jax.grad(f)(0.7, 1.0, "mean")), expected / 6, rtol=1e-5)
  with pytest.raises(ValueError, match="config.loss.reduction: 'max'"):
    f(0.7, 1.0, "max")
  # radius 1: each pixel's credit is the summed advantage of the 3 x 3 cells around its
  # own (zero beyond the map's edge).
  g_radius = jax.grad(lambda t: losses.local_score_function_surrogate(with_map, without, t * x, radius=1))(0.7)
  padded = np.pad(adv, ((0, 0), (1, 1), (1, 1)))
  boxed = sum(padded[:, i:i + 2, j:j + 3] for i in range(3) for j in range(3))
  credit = boxed.repeat(2, axis=1).repeat(2, axis=2)
  np.testing.assert_allclose(float(g_radius), np.mean(np.sum(credit * np.asarray(x), axis=(1, 2))), rtol=1e-5)


def test_self_regularization_cells_split_the_loss_over_cells():
  """Summed over the cells, the per-image self-regularisation; each cell holds its own
  pixels' terms (a change in one cell moves only it); a flat psi gives one cell."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.uniform(-1, 1, (3, 8, 12, 1)), jnp.float32)
  r = jnp.asarray(rng.uniform(-1, 1, (3, 8, 12, 1)), jnp.float32)
  for name in ("identity", "low_pass_4"):
    for reduction in ("sum", "mean"):
      psi = losses.get_psi(name)
      cells = losses.self_regularization_cells(r, x, psi=psi, reduction=reduction, cells_hw=(2, 3))
      assert cells.shape == (3, 2, 3)
      per_image = [float(losses.self_regularization_loss(r[i:i + 1], x[i:i + 1], psi=psi, reduction=reduction))
                   for i in range(3)]
      np.testing.assert_allclose(np.asarray(cells).sum(axis=(1, 2)), per_image, rtol=1e-5)
  moved = r.at[1, 4:8, 8:12].add(0.5)  # the cell (1, 2) of image 1 only
  psi = losses.get_psi("low_pass_4")
  delta = np.asarray(losses.self_regularization_cells(moved, x, psi=psi, reduction="sum", cells_hw=(2, 3))
                     - losses.self_regularization_cells(r, x, psi=psi, reduction="sum", cells_hw=(2, 3)))
  assert delta[1, 1, 2] != 0 and np.count_nonzero(delta) == 1
  flat = losses.self_regularization_cells(r, x, psi=losses.get_psi("gradients"), reduction="sum", cells_hw=(2, 3))
  assert flat.shape == (3, 1, 1)
