"""The paper's gaze estimator and its metrics (SIMGAN.md "Downstream evaluation").

The estimator follows Zhang et al. (CVPR 2015) as the SimGAN paper lists it for
35x55 eyes: VALID conv3x3 32, conv3x3 32, conv3x3 64, maxpool 3x3/2, conv3x3 80,
conv3x3 192, maxpool 2x2/2, flatten (5 x 10 x 192 = 9600 features at 35x55),
FC 1000, FC 3, with ReLUs between. The flattened size follows from the input
size (``feature_shape``), so other crops work too.

Output: the *raw* 3-vector, trained with an L2 loss against the unit gaze vector
(the paper: "L2 loss" on the "gaze vector"). It is not normalised inside the
network, so the loss keeps a gradient along the vector's length; the metrics
normalise it (``unit_vectors``), so a prediction's length never changes its error.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from simgan_jax import layers

# Widths of the five convolutions and of the hidden fully connected layer.
PAPER_CONV_FEATURES = (32, 32, 64, 80, 192)
PAPER_HIDDEN_FEATURES = 1000
WITHIN_THRESHOLDS_DEG = tuple(range(26))  # the paper's curve spans 0..25 degrees


def feature_shape(height: int, width: int, conv_features: Sequence[int] = PAPER_CONV_FEATURES
                  ) -> tuple[int, int, int]:
  """(H, W, C) of the last pooled map, whose product is the flattened size."""

  def conv(n):  # 3x3 VALID
    return n - 2

  def pool(n, window, stride):  # VALID max pooling
    return (n - window) // stride + 1

  h, w = height, width
  h, w = conv(conv(conv(h))), conv(conv(conv(w)))
  h, w = pool(h, 3, 2), pool(w, 3, 2)
  h, w = conv(conv(h)), conv(conv(w))
  h, w = pool(h, 2, 2), pool(w, 2, 2)
  if h < 1 or w < 1:
    raise ValueError(f"GazeEstimator: a {height}x{width} input is too small (needs at least 15x15)")
  return h, w, conv_features[-1]


class GazeEstimator(nn.Module):
  """Eye image [B, H, W, C] in [-1, 1] -> raw gaze vector [B, 3] (not normalised)."""

  conv_features: Sequence[int] = PAPER_CONV_FEATURES
  hidden_features: int = PAPER_HIDDEN_FEATURES
  conv_impl: str = "matmul"  # layers.Conv: "matmul" or "xla"
  dtype: Any = jnp.float32  # compute dtype; the output is float32

  @nn.compact
  def __call__(self, images_BHWC):
    if len(self.conv_features) != 5:
      raise ValueError(f"GazeEstimator.conv_features: expected 5 widths, got {self.conv_features}")
    feature_shape(images_BHWC.shape[1], images_BHWC.shape[2], self.conv_features)  # size check
    f = self.conv_features
    conv = lambda i: layers.Conv(f[i], 3, padding="VALID", impl=self.conv_impl, dtype=self.dtype,  # noqa: E731
                                 relu=True, name=f"conv{i + 1}")
    x = images_BHWC
    for i in range(3):
      x = conv(i)(x)
    x = layers.max_pool(x, 3, 2, "VALID", impl=self.conv_impl)
    for i in range(3, 5):
      x = conv(i)(x)
    x = layers.max_pool(x, 2, 2, "VALID", impl=self.conv_impl)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden_features, dtype=self.dtype, name="fc1")(x))
    return nn.Dense(3, dtype=self.dtype, name="fc2")(x).astype(jnp.float32)


def make_gaze_estimator(config) -> GazeEstimator:
  """The estimator a config's ``model`` section describes."""
  return GazeEstimator(conv_features=tuple(config.model.conv_features),
                       hidden_features=config.model.hidden_features,
                       conv_impl=layers.resolve_impl(config.get("conv_impl", "auto")),
                       dtype=layers.resolve_dtype(config.get("compute_dtype", "float32")))


# ----------------------------------------------------------------------------- metrics
# Pure functions of arrays; they work on numpy or jax arrays alike.


def unit_vectors(v_B3):
  """Rows scaled to unit length (a zero row stays zero)."""
  norm = jnp.linalg.norm(v_B3, axis=-1, keepdims=True)
  return v_B3 / jnp.maximum(norm, 1e-12)


def angular_error_deg(pred_B3, true_B3):
  """Angle in degrees between each predicted and true gaze vector [B] (any lengths)."""
  a, b = unit_vectors(pred_B3), unit_vectors(true_B3)
  # atan2(|a x b|, a . b) rather than arccos(a . b): arccos loses all precision
  # near 0 degrees in float32 (arccos(1 - 6e-8) is already 0.02 degrees).
  sin = jnp.linalg.norm(jnp.cross(a, b), axis=-1)
  return jnp.degrees(jnp.arctan2(sin, jnp.sum(a * b, axis=-1)))


def mean_angular_error(errors_deg) -> float:
  return float(np.mean(np.asarray(errors_deg)))


def within_curve(errors_deg, thresholds=WITHIN_THRESHOLDS_DEG) -> dict[float, float]:
  """Share of images whose error is <= d degrees, for each threshold d."""
  errors = np.asarray(errors_deg, np.float64)
  return {d: float(np.mean(errors <= d)) for d in thresholds}


def gaze_l2_loss(pred_B3, true_B3):
  """Mean over the batch of the squared Euclidean distance between gaze vectors."""
  return jnp.mean(jnp.sum(jnp.square(pred_B3 - true_B3), axis=-1))
