"""A label-free realism score for choosing refiner checkpoints: KID on random features.

What it measures: how far the distribution of a set of (refined) images is from
a fixed reference set of real images, as the Kernel Inception Distance of
Binkowski et al. 2018 ("Demystifying MMD GANs"): the unbiased estimate of the
squared MMD with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3``
between per-image feature vectors. It needs no labels of any kind (no gaze, no
landmarks), only unlabelled real images, so it can rank refiner checkpoints on
the target domain's unlabelled split. Lower is more realistic; 0 means the two
feature distributions agree up to the kernel's third moments.

Use::

  scorer = realism.RealismScorer(real_images, (35, 55, 1), subset_size=1000)
  scorer.score(refined_images)   # {"kid": 2.9, "kid_std": 0.4}; below ~0.1: no difference

or, by parts, ``feature_fn = make_feature_fn((35, 55, 1))`` then
``kid(real_features, fake_features)``, after ``standardize`` with the real
set's ``reference_statistics`` (the scorer does all three). Images are
``[B, H, W, C]`` float32 in [-1, 1] or uint8 in [0, 255].

The features (``feature_dim`` of them: 246 for grey images, 22 per channel +
224) replace Inception, whose pretrained weights are not available offline:

* low-level statistics per channel: mean and std of intensity, an 8-bin soft
  intensity histogram, mean gradient magnitude and its 8-bin soft histogram (on
  a log scale, so both sensor noise and fine texture register), mean absolute
  Laplacian, and gradient / Laplacian means again at half resolution: noise,
  blur, contrast and brightness changes all move these;
* a fixed random CNN (seeded He-normal 3x3 convolutions of widths 16, 32, 64,
  strides 1, 2, 2, ReLU; the first layer's filters are zero-mean, so they
  respond to structure rather than brightness), each layer pooled globally to
  its spatial mean and std: texture and shape statistics at three scales.

The scorer standardises every feature with the reference set's mean and std
(the std floored at 1% of the median std, so a feature that is constant on the
real set cannot dominate), so all features count alike in ``x . y / d``, then
soft-clips it, ``z -> c * tanh(z / c)`` with ``c = clip = 5``: a set far outside
the reference (heavy noise moves some features by tens of stds) still scores
higher, but its score stays bounded and is not the sixth power of one feature.
Scale, measured with 200 clean simulator renders as the reference, 200 others
scored, subsets of 100: clean -0.07 (std 0.06 across subsets), Gaussian noise
sigma 0.03 / 0.1 / 0.3: 3.9 / 134 / 4400, Gaussian blur sigma 0.7 / 1 / 2 px:
6 / 18 / 89, contrast x0.8: 2.9, brightness +0.1: 0.3 (weak: the renders'
own brightness varies more than that).

Caveats:

* The features are random, not learned: the score registers the statistics
  above, not semantic realism (a refiner that matches noise and texture but
  draws a wrong eye shape is penalised only as far as the random CNN's pooled
  responses change). Compare scores only with the same seed and image shape.
* The estimator is unbiased (no sample-size bias, unlike FID), so it can be
  slightly negative when the sets match, but it has variance: its std shrinks
  about as 1/sqrt(m) for subsets of m images (as 1/m when the sets match).
  ``kid_std`` is the spread over the ``num_subsets`` random subsets. Rank
  checkpoints on the same number of fake images; the scorer draws the same
  subset indices for every call (common random numbers), which makes
  differences between checkpoints less noisy than each score.
* The reference set defines the standardisation: scores against different
  reference sets are not comparable.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

CNN_FEATURES = (16, 32, 64)
CNN_STRIDES = (1, 2, 2)
HISTOGRAM_BINS = 8
LOW_LEVEL_PER_CHANNEL = 2 + HISTOGRAM_BINS + 1 + HISTOGRAM_BINS + 1 + 2
# Gradient magnitudes are binned on log1p(g / GRAD_SCALE) / log1p(GRAD_MAX / GRAD_SCALE).
GRAD_SCALE = 0.01
GRAD_MAX = 2.0 * np.sqrt(2.0)
_EPS = 1e-6


def feature_dim(channels: int) -> int:
  """Length of the feature vector ``make_feature_fn`` returns for C channels."""
  return LOW_LEVEL_PER_CHANNEL * channels + 2 * sum(CNN_FEATURES)


def _soft_histogram(u, bins: int):
  """Triangular-kernel histogram of values u in [0, 1] over axes (1, 2): [B, C, bins]."""
  centres = jnp.linspace(0.0, 1.0, bins)
  weights = jnp.maximum(0.0, 1.0 - jnp.abs(u[..., None] - centres) * (bins - 1))
  return jnp.mean(weights, axis=(1, 2))


def _grad_magnitude(x):
  dx = x[:, :-1, 1:] - x[:, :-1, :-1]
  dy = x[:, 1:, :-1] - x[:, :-1, :-1]
  return jnp.sqrt(dx * dx + dy * dy + _EPS)


def _abs_laplacian(x):
  centre = x[:, 1:-1, 1:-1]
  lap = 4 * centre - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
  return jnp.abs(lap)


def _low_level(x):
  """Per-image, per-channel statistics of [B, H, W, C] in [-1, 1]: [B, 22 * C]."""
  b = x.shape[0]
  grad = _grad_magnitude(x)
  u = jnp.clip(jnp.log1p(grad / GRAD_SCALE) / np.log1p(GRAD_MAX / GRAD_SCALE), 0.0, 1.0)
  h2, w2 = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  half = x[:, :h2, :w2].reshape(b, h2 // 2, 2, w2 // 2, 2, -1).mean(axis=(2, 4))
  parts = [
      jnp.mean(x, axis=(1, 2))[..., None],
      jnp.std(x, axis=(1, 2))[..., None],
      _soft_histogram((x + 1.0) * 0.5, HISTOGRAM_BINS),
      jnp.mean(grad, axis=(1, 2))[..., None],
      _soft_histogram(u, HISTOGRAM_BINS),
      jnp.mean(_abs_laplacian(x), axis=(1, 2))[..., None],
      jnp.mean(_grad_magnitude(half), axis=(1, 2))[..., None],
      jnp.mean(_abs_laplacian(half), axis=(1, 2))[..., None],
  ]
  return jnp.concatenate(parts, axis=-1).reshape(b, -1)  # [B, C * 22]


def init_cnn(key: jax.Array, channels: int) -> list[jax.Array]:
  """The random CNN's HWIO kernels: He-normal, the first layer's zero-mean."""
  kernels = []
  cin = channels
  for i, (k, cout) in enumerate(zip(jax.random.split(key, len(CNN_FEATURES)), CNN_FEATURES)):
    w = jax.random.normal(k, (3, 3, cin, cout), jnp.float32)
    if i == 0:
      w = w - jnp.mean(w, axis=(0, 1, 2), keepdims=True)
    kernels.append(w * np.sqrt(2.0 / (9 * cin)))
    cin = cout
  return kernels


def _cnn(kernels, x):
  """Global mean and std of every layer's ReLU output: [B, 2 * sum(CNN_FEATURES)]."""
  parts = []
  for w, stride in zip(kernels, CNN_STRIDES):
    x = lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jax.nn.relu(x)
    parts += [jnp.mean(x, axis=(1, 2)), jnp.sqrt(jnp.var(x, axis=(1, 2)) + _EPS)]
  return jnp.concatenate(parts, axis=-1)


def make_feature_fn(image_shape: Sequence[int], seed: int = 0, chunk_size: int = 256
                    ) -> Callable[[np.ndarray], np.ndarray]:
  """A fixed feature extractor: images [B, H, W, C] -> float32 numpy features [B, D].

  D is ``feature_dim(C)``. Images are float in [-1, 1] or uint8 in [0, 255]. The
  computation is jitted on one shape, [chunk_size, H, W, C]: inputs are run in
  chunks on a host loop, the last chunk padded, so any B compiles once. The same
  ``seed`` gives the same features, bit for bit on one backend.
  """
  image_shape = tuple(int(s) for s in image_shape)
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f"realism: image_shape must be (H, W, C), got {image_shape}")
  if image_shape[0] < 4 or image_shape[1] < 4:
    raise ValueError(f"realism: images of {image_shape[0]}x{image_shape[1]} are below 4x4")
  if chunk_size < 1:
    raise ValueError(f"realism: chunk_size must be >= 1, got {chunk_size}")
  kernels = init_cnn(jax.random.PRNGKey(seed), image_shape[2])

  @jax.jit
  def features(x):
    return jnp.concatenate([_low_level(x), _cnn(kernels, x)], axis=-1)

  def feature_fn(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != image_shape:
      raise ValueError(f"realism: expected images [B, {', '.join(map(str, image_shape))}], "
                       f"got shape {images.shape}")
    if images.dtype == np.uint8:
      images = images.astype(np.float32) / 127.5 - 1.0
    images = images.astype(np.float32, copy=False)
    out = []
    for start in range(0, images.shape[0], chunk_size):
      chunk = images[start:start + chunk_size]
      n = chunk.shape[0]
      if n < chunk_size:
        chunk = np.concatenate([chunk, np.zeros((chunk_size - n, *image_shape), np.float32)])
      out.append(np.asarray(features(chunk))[:n])
    if not out:
      return np.zeros((0, feature_dim(image_shape[2])), np.float32)
    return np.concatenate(out)

  return feature_fn


def standardize(features, mean, scale, clip: float | None = 5.0) -> np.ndarray:
  """z = (features - mean) / scale in float64, soft-clipped to clip * tanh(z / clip)."""
  z = (np.asarray(features, np.float64) - mean) / scale
  return z if clip is None else clip * np.tanh(z / clip)


def reference_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean and std of reference features, the std floored at 1% of its median."""
  features = np.asarray(features, np.float64)
  mean, std = features.mean(axis=0), features.std(axis=0)
  return mean, np.maximum(std, 0.01 * np.median(std) + 1e-12)


def polynomial_kernel(x, y) -> np.ndarray:
  """KID's kernel matrix (x . y / d + 1)^3 of [N, d] and [M, d]: [N, M]."""
  return (x @ y.T / x.shape[1] + 1.0)**3


def mmd2_unbiased(x, y) -> float:
  """Unbiased MMD^2 with the cubic polynomial kernel between samples [N, d] and [M, d]."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n, m = x.shape[0], y.shape[0]
  if n < 2 or m < 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f"realism: MMD needs >= 2 samples of equal dimension, "
                     f"got {x.shape} and {y.shape}")
  k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
  within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within_x + within_y - 2.0 * k_xy.mean())


def kid(real_features, fake_features, *, subset_size: int = 1000, num_subsets: int = 10,
        seed: int = 0) -> tuple[float, float]:
  """KID: mean and std of ``mmd2_unbiased`` over random subsets, as in Binkowski et al.

  Each of ``num_subsets`` subsets draws m = min(subset_size, N_real, N_fake)
  rows of each set without replacement (numpy generator seeded with ``seed``).
  Features are used as given: standardise them first (``RealismScorer`` does).
  """
  real = np.asarray(real_features, np.float64)
  fake = np.asarray(fake_features, np.float64)
  if subset_size < 2 or num_subsets < 1:
    raise ValueError(f"realism: need subset_size >= 2 and num_subsets >= 1, "
                     f"got {subset_size} and {num_subsets}")
  m = min(subset_size, real.shape[0], fake.shape[0])
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    r = real[rng.choice(real.shape[0], m, replace=False)]
    f = fake[rng.choice(fake.shape[0], m, replace=False)]
    values.append(mmd2_unbiased(r, f))
  return float(np.mean(values)), float(np.std(values))


class RealismScorer:
  """KID against a fixed reference set of real images (no labels); lower is more realistic."""

  def __init__(self, real_images, image_shape: Sequence[int], seed: int = 0,
               subset_size: int = 1000, num_subsets: int = 10, chunk_size: int = 256,
               clip: float | None = 5.0):
    self.feature_fn = make_feature_fn(image_shape, seed=seed, chunk_size=chunk_size)
    self.seed, self.subset_size, self.num_subsets = seed, subset_size, num_subsets
    self.clip = clip
    raw = self.feature_fn(real_images)
    if raw.shape[0] < 2:
      raise ValueError(f"realism: the reference set needs >= 2 images, got {raw.shape[0]}")
    self.mean, self.scale = reference_statistics(raw)
    self.real_features = standardize(raw, self.mean, self.scale, clip)

  def features(self, images) -> np.ndarray:
    """Standardised, soft-clipped features [B, D] on the reference set's statistics."""
    return standardize(self.feature_fn(images), self.mean, self.scale, self.clip)

  def score(self, fake_images) -> dict[str, float]:
    """{"kid": mean, "kid_std": std over subsets} of fake images against the reference."""
    mean, std = kid(self.real_features, self.features(fake_images), subset_size=self.subset_size,
                    num_subsets=self.num_subsets, seed=self.seed)
    return {"kid": mean, "kid_std": std}
