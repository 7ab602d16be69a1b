"""probe/texture.py: oriented streaks are measured, isotropic grain is not, and the report says so."""

import re

import numpy as np
import pytest

from simgan_jax.probe import texture


def _stripes(angle_deg, n=16, h=35, w=55, period=3.0, seed=0):
  """Stripes whose intensity gradient points at ``angle_deg`` (image x right, y down)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  a = np.radians(np.broadcast_to(angle_deg, (n,)))[:, None, None]
  phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
  return 128 + 60 * np.sin(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period + phase)


@pytest.mark.parametrize("angle", [0.0, 45.0, 90.0, 135.0])
def test_parallel_stripes_are_coherent_and_their_angle_is_found(angle):
  s = texture.summary(_stripes(angle)[..., None])
  assert s["coherence"] > 0.9 and s["shared"] > 0.9
  assert min(abs(s["angle_deg"] - angle), 180 - abs(s["angle_deg"] - angle)) < 3


def test_isotropic_grain_and_spread_orientations():
  rng = np.random.default_rng(1)
  noise = texture.summary(rng.normal(128, 20, (64, 35, 55)))
  assert noise["coherence"] < 0.15 and noise["shared"] < 0.05
  spread = texture.summary(_stripes(rng.uniform(0, 180, 64), n=64))  # each oriented, not alike
  assert spread["coherence"] > 0.9 and spread["shared"] < 0.3


def test_the_caveat_fires_on_streaks_only():
  rng = np.random.default_rng(2)
  grain = texture.summary(rng.normal(128, 20, (32, 35, 55)))
  streaky = texture.summary(0.5 * _stripes(45.0, n=32) + 0.5 * rng.normal(128, 20, (32, 35, 55)))
  line = texture.streak_line({"refined": streaky, "oracle": grain})
  assert line is not None and "streaks at one orientation" in line
  angle = float(re.search(r"gradients at (\d+)°", line).group(1))
  assert abs(angle - 45) <= 3
  assert texture.streak_line({"refined": grain, "oracle": grain}) is None
  assert texture.streak_line({"refined": streaky}) is None  # no reference: no claim


def test_the_report_prints_the_measures_and_the_caveat():
  from simgan_jax.experiments import report
  rng = np.random.default_rng(3)
  t = {"synthetic": texture.summary(rng.normal(128, 5, (8, 35, 55))),
       "refined": texture.summary(_stripes(45.0, n=8)),
       "oracle": texture.summary(rng.normal(128, 20, (8, 35, 55)))}
  text = "\n".join(report.texture_lines({"texture": t}))
  assert re.search(r"refined 0\.9\d / 0\.9\d", text) and "perfect refiner" in text
  assert "streaks at one orientation" in text
  t["refined"] = t["oracle"]
  assert "streaks at one orientation" not in "\n".join(report.texture_lines({"texture": t}))
  assert report.texture_lines({}) == []


def test_bad_shape_is_refused():
  with pytest.raises(ValueError, match="texture: images of shape"):
    texture.summary(np.zeros((35, 55)))
