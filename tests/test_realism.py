"""Realism score: unbiased MMD^2 against brute force, KID orders noise and blur, determinism."""

import jax
import numpy as np
import pytest

from simgan_jax.probe import pupil
from simgan_jax.probe import realism
from simgan_jax.simulators import eyes

SHAPE = (35, 55, 1)


def brute_force_mmd2(x, y):
  """Unbiased MMD^2 with k(a, b) = (a . b / d + 1)^3, by explicit loops."""
  d = x.shape[1]
  k = lambda a, b: (float(np.dot(a, b)) / d + 1.0)**3
  n, m = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return xx + yy - 2 * xy


def test_mmd2_matches_brute_force_and_can_be_negative():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(9, 5)), rng.normal(0.3, 1.2, size=(12, 5))
  np.testing.assert_allclose(realism.mmd2_unbiased(x, y), brute_force_mmd2(x, y), rtol=1e-10)
  # One subset as large as both sets is the whole-set estimate.
  x2 = rng.normal(size=(12, 5))
  mean, std = realism.kid(x2, y, subset_size=100, num_subsets=3)
  np.testing.assert_allclose(mean, brute_force_mmd2(x2, y), rtol=1e-10)
  assert std < 1e-12 * abs(mean) + 1e-15
  # Same distribution: unbiased, so some estimates fall below zero.
  same = [realism.mmd2_unbiased(rng.normal(size=(10, 5)), rng.normal(size=(10, 5)))
          for _ in range(20)]
  assert min(same) < 0 < max(same)
  neg_x, neg_y = rng.normal(size=(6, 4)), rng.normal(size=(7, 4))
  np.testing.assert_allclose(realism.mmd2_unbiased(neg_x, neg_y), brute_force_mmd2(neg_x, neg_y),
                             rtol=1e-10)


def test_kid_of_disjoint_halves_is_near_zero_against_a_shift():
  rng = np.random.default_rng(1)
  pool = rng.normal(size=(400, 16))
  real, fake = pool[:200], pool[200:]
  same, _ = realism.kid(real, fake, subset_size=100, num_subsets=10)
  shifted, shifted_std = realism.kid(real, fake + 0.5, subset_size=100, num_subsets=10)
  assert shifted > 5 * shifted_std
  assert abs(same) < 0.05 * shifted


@pytest.fixture(scope="module")
def renders():
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  images, _ = jax.jit(lambda k: eyes.render_batch(k, eyes.EyeSimConfig()))(keys)
  images = np.asarray(images)
  return images[:200], images[200:]


def test_kid_orders_noise_and_blur_on_renders(renders):
  real, other = renders
  scorer = realism.RealismScorer(real, SHAPE, subset_size=100, num_subsets=10, chunk_size=128)
  rng = np.random.default_rng(0)

  def noisy(sigma):
    return np.clip(other + rng.normal(0, sigma, other.shape), -1, 1).astype(np.float32)

  blurred = np.asarray(pupil.gaussian_blur(other[..., 0], 1.0))[..., None]
  clean, n1, n3, blur = (scorer.score(x)["kid"] for x in (other, noisy(0.1), noisy(0.3), blurred))
  assert clean < n1 < n3, (clean, n1, n3)
  assert clean < blur, (clean, blur)
  assert abs(clean) < 0.1 * min(n1, blur), (clean, n1, blur)
  assert np.abs(scorer.features(noisy(0.3))).max() <= 5.0  # soft-clipped standard scores


def test_features_are_deterministic_chunk_invariant_and_accept_uint8(renders):
  images = renders[0][:10]
  fn = realism.make_feature_fn(SHAPE, seed=3, chunk_size=4)
  a = fn(images)
  assert a.shape == (10, realism.feature_dim(1)) and np.all(np.isfinite(a))
  np.testing.assert_array_equal(a, realism.make_feature_fn(SHAPE, seed=3, chunk_size=4)(images))
  np.testing.assert_allclose(fn(images[:3]), a[:3], rtol=1e-6, atol=1e-6)
  other_seed = realism.make_feature_fn(SHAPE, seed=4, chunk_size=4)(images)
  assert not np.allclose(other_seed, a)
  as_uint8 = np.round((images + 1) * 127.5).astype(np.uint8)
  np.testing.assert_allclose(fn(as_uint8), fn(as_uint8.astype(np.float32) / 127.5 - 1), atol=1e-6)
  with pytest.raises(ValueError, match="expected images"):
    fn(images[..., 0])
