"""probe/dropout.py: where a depth refiner drops pixels (silhouette ring, inside, single-pixel speckle)."""

import numpy as np
import pytest

from simgan_jax.probe import dropout

BACKGROUND, DEPTH = 255, 60


def _hand():
  """One 12x12 image with a 6x6 'hand' at rows/cols 3..8: ring 20 pixels, inside 16 (4x4 at 4..7)."""
  x = np.full((1, 12, 12, 1), BACKGROUND, np.uint8)
  x[:, 3:9, 3:9] = DEPTH
  return x


def test_ring_inside_and_speckle_are_told_apart():
  synthetic = _hand()
  assert dropout.summary(synthetic, synthetic) == {"ring": 0.0, "interior": 0.0, "isolated": 0.0}

  ring_only = synthetic.copy()  # the silhouette eroded by one pixel, as a sensor's grazing drop-out
  ring_only[:, 3, 3:9] = ring_only[:, 8, 3:9] = ring_only[:, 3:9, 3] = ring_only[:, 3:9, 8] = BACKGROUND
  assert dropout.summary(synthetic, ring_only) == {"ring": 1.0, "interior": 0.0, "isolated": 0.0}

  speckle = synthetic.copy()  # 4 single inside pixels, no two neighbours: all isolated
  for r, c in [(4, 4), (4, 6), (6, 5), (7, 7)]:
    speckle[:, r, c] = BACKGROUND
  assert dropout.summary(synthetic, speckle) == pytest.approx({"ring": 0.0, "interior": 4 / 16, "isolated": 1.0})

  band = synthetic.copy()  # a 1-pixel band across the inside: connected, no pixel alone
  band[:, 5, 4:8] = BACKGROUND
  assert dropout.summary(synthetic, band) == pytest.approx({"ring": 0.0, "interior": 4 / 16, "isolated": 0.0})

  # An inside drop next to the background (the ring removed beside it) is not single either.
  edge = ring_only.copy()
  edge[:, 4, 4] = BACKGROUND
  assert dropout.summary(synthetic, edge)["isolated"] == 0.0


def test_report_flags_speckle_only_against_band_like_reference():
  speckled = {"ring": 0.5, "interior": 0.15, "isolated": 0.7}
  bands = {"ring": 0.98, "interior": 0.2, "isolated": 0.05}
  lines = dropout.report_lines({"dropout": {"refined": speckled, "oracle": bands}})
  assert "refined 50% of the silhouette ring, 15% of the inside, 70%" in lines[0]
  assert "perfect refiner 98% of the silhouette ring" in lines[0]
  assert lines[1].startswith("**The refined hands are speckled:** 70%") and "against 5%" in lines[1]
  assert not any("speckled" in line for line in dropout.report_lines({"dropout": {"refined": bands, "oracle": bands}}))
  assert dropout.report_lines({}) == []


def test_shapes_must_match():
  with pytest.raises(ValueError, match="differ in shape"):
    dropout.summary(_hand(), _hand()[:, :10])
