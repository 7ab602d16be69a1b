"""The two-sample classifier test (probe/two_sample.py)."""

import numpy as np
import pytest

from simgan_jax.probe import two_sample


def test_wilson_interval_matches_the_papers_turing_test():
  # SIMGAN.md: 517 of 1,000 answers correct -> Wilson 95% interval 48.6-54.8%.
  low, high = two_sample.wilson_interval(517, 1000)
  assert round(100 * low, 1) == 48.6 and round(100 * high, 1) == 54.8
  low, high = two_sample.wilson_interval(10, 10)  # all correct: the interval still has width
  assert high == pytest.approx(1.0) and round(low, 3) == 0.722


def _smooth_images(rng, n, shape=(20, 30)):
  """Blurred noise with random brightness: a stand-in image distribution, uint8."""
  x = rng.normal(size=(n, shape[0] + 4, shape[1] + 4))
  x = sum(x[:, i:i + shape[0], j:j + shape[1]] for i in range(5) for j in range(5)) / 5.0
  x += rng.normal(scale=0.5, size=(n, 1, 1))
  return np.clip(128 + 40 * x, 0, 255).astype(np.uint8)[..., None]


@pytest.fixture(scope="module")
def tester():
  real = _smooth_images(np.random.default_rng(0), 500)
  return two_sample.TwoSampleTest(real, num_test=150, steps=150, batch_size=32, features=(8, 16, 16))


def test_one_distribution_gives_chance_and_a_framed_copy_gives_near_certainty(tester):
  same = tester.score(_smooth_images(np.random.default_rng(1), 500))
  # Held-out accuracy: a classifier that overfits its training images still reads ~50% here
  # (catches scoring on the training images, which would read far above chance).
  assert abs(same["two_sample_accuracy"] - 0.5) < 0.08
  assert same["two_sample_low"] < 0.5 < same["two_sample_high"]
  # The artefact: a 1-px bright frame along the border of every refined image.
  framed = _smooth_images(np.random.default_rng(1), 500)
  framed[:, [0, -1], :] = 250
  framed[:, :, [0, -1]] = 250
  different = tester.score(framed)
  assert different["two_sample_accuracy"] > 0.95 and different["two_sample_low"] > 0.9


def test_the_same_call_gives_the_same_score(tester):
  images = _smooth_images(np.random.default_rng(2), 500)
  assert tester.score(images) == tester.score(images)  # a fixed init and batch order per call


def test_mismatched_sets_are_refused(tester):
  with pytest.raises(ValueError, match="do not match the real set"):
    tester.score(_smooth_images(np.random.default_rng(3), 499))
  with pytest.raises(ValueError, match="num_test must be in"):
    two_sample.TwoSampleTest(np.zeros((10, 8, 8, 1), np.uint8), num_test=10)
