"""SimGAN losses (SIMGAN.md "Losses"), each found by name from the config.

Patch logits are ``[B, h, w, 2]`` with class 0 = real and class 1 = refined. Per
image a loss is *summed* over patches (and pixels) as in the paper, or averaged
with ``reduction="mean"``; it is then averaged over the batch.

Adding a loss: write a function with the same signature as the one it replaces,
decorate it with ``@register_loss("my_loss")`` (in any module imported before
training), and set e.g. ``--config.loss.adversarial=my_loss``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

REAL, REFINED = 0, 1
_LOSSES: dict[str, Callable] = {}
_PSI: dict[str, Callable] = {}


def register_loss(name: str):
  """Registers a loss function under ``name`` for ``config.loss.*``."""

  def wrap(fn):
    _LOSSES[name] = fn
    return fn

  return wrap


def register_psi(name: str):
  """Registers a feature map ``psi(images_BHWC) -> features`` for self-regularisation.

  A learned feature extractor plugs in the same way: close over its frozen
  parameters, e.g. ``register_psi("vgg_conv3")(lambda x: vgg.apply(params, x))``;
  it runs inside the compiled step and receives no gradient updates.
  """

  def wrap(fn):
    _PSI[name] = fn
    return fn

  return wrap


def get_loss(name: str, field: str = "loss") -> Callable:
  if name not in _LOSSES:
    raise ValueError(f"config.{field}: unknown loss {name!r}; known: {', '.join(sorted(_LOSSES))}")
  return _LOSSES[name]


def get_psi(name: str, field: str = "loss.psi") -> Callable:
  if name not in _PSI:
    raise ValueError(f"config.{field}: unknown feature map {name!r}; known: {', '.join(sorted(_PSI))}")
  return _PSI[name]


def reduce_per_image(values_B_etc: jax.Array, reduction: str) -> jax.Array:
  """Reduces all but the batch axis by sum (paper) or mean."""
  axes = tuple(range(1, values_B_etc.ndim))
  if reduction == "sum":
    return jnp.sum(values_B_etc, axis=axes)
  if reduction == "mean":
    return jnp.mean(values_B_etc, axis=axes)
  raise ValueError(f"config.loss.reduction: {reduction!r} is not 'sum' or 'mean'")


def patch_cross_entropy(logits_BHW2: jax.Array, label: int, reduction: str = "sum") -> jax.Array:
  """Mean over images of the per-image reduced 2-way softmax cross-entropy."""
  labels_BHW = jnp.full(logits_BHW2.shape[:-1], label, jnp.int32)
  ce_BHW = optax.softmax_cross_entropy_with_integer_labels(logits_BHW2.astype(jnp.float32), labels_BHW)
  return jnp.mean(reduce_per_image(ce_BHW, reduction))


@register_loss("local_adversarial_loss")
def local_adversarial_loss(refined_logits_BHW2, *, reduction="sum"):
  """Refiner's realism loss: -sum_patches log D_real(R(x))."""
  return patch_cross_entropy(refined_logits_BHW2, REAL, reduction)


@register_loss("local_discriminator_loss")
def local_discriminator_loss(real_logits_BHW2, refined_logits_BHW2, *, reduction="sum"):
  """L_D = -sum log D_refined(R(x)) - sum log D_real(y), each averaged over its batch."""
  return (patch_cross_entropy(refined_logits_BHW2, REFINED, reduction)
          + patch_cross_entropy(real_logits_BHW2, REAL, reduction))


@register_loss("self_regularization_loss")
def self_regularization_loss(refined_BHWC, synthetic_BHWC, *, psi, reduction="sum"):
  """lambda-free L1 term: || psi(R(x)) - psi(x) ||_1 per image, averaged over the batch."""
  return jnp.mean(reduce_per_image(jnp.abs(psi(refined_BHWC) - psi(synthetic_BHWC)), reduction))


def score_function_surrogate(per_example_loss_B, log_density_B):
  """A term worth 0 whose gradient is the score-function (REINFORCE) estimate of the
  gradient of mean(loss) with respect to the parameters of the distribution the examples'
  random draws came from: mean_b (L_b - mean L) * grad log p_b (the batch mean as the
  baseline; the losses carry no gradient here). Add it to a loss that is averaged over the
  batch. For parameters whose effect passes through a non-differentiable step (a JPEG
  stage's rounding, models.JpegQuantizer)."""
  advantage = jax.lax.stop_gradient(per_example_loss_B - jnp.mean(per_example_loss_B))
  term = jnp.mean(advantage * log_density_B)
  return term - jax.lax.stop_gradient(term)


def local_score_function_surrogate(loss_with_BHW, loss_without_BHW, log_density_BHW, reduction="sum",
                                   radius: int = 0):
  """A term worth 0 whose gradient is a local score-function estimate of the gradient of
  a loss given per location ([B, h, w] cells, e.g. D's patches) with respect to the
  parameters of per-pixel binary draws (a drop-out head's,
  models.Refiner.dropout_gradient="score_function").

  ``loss_with``: each cell's loss on the image with the draws applied; ``loss_without``:
  the same cell on the image without them (a baseline no draw depends on);
  ``log_density`` [B, H, W]: each pixel's log probability of its draw. Pixel (i, j)
  lies in cell (i * h // H, j * w // W) and is credited with the summed advantage
  (with - without) of the cells within ``radius`` cells of it (a square window: the
  cells whose loss it can move, e.g. about half D's receptive field in patch strides);
  the draws of other pixels in that window add variance, not bias, and cells outside
  it that the pixel moves are ignored. Per image the credited terms are summed over
  pixels (divided by h * w under ``reduction="mean"``, as the loss is), then averaged
  over the batch."""
  advantage = jax.lax.stop_gradient(loss_with_BHW - loss_without_BHW).astype(jnp.float32)
  if radius:
    size = 2 * radius + 1
    advantage = jax.lax.reduce_window(advantage, 0.0, jax.lax.add, (1, size, size), (1, 1, 1),
                                      ((0, 0), (radius, radius), (radius, radius)))
  b, h, w = advantage.shape
  big_h, big_w = log_density_BHW.shape[1:]
  rows = (jnp.arange(big_h) * h) // big_h
  cols = (jnp.arange(big_w) * w) // big_w
  credited = advantage[:, rows][:, :, cols] * log_density_BHW
  per_image = jnp.sum(credited, axis=(1, 2))
  if reduction == "mean":
    per_image = per_image / (h * w)
  elif reduction != "sum":
    raise ValueError(f"config.loss.reduction: {reduction!r} is not 'sum' or 'mean'")
  term = jnp.mean(per_image)
  return term - jax.lax.stop_gradient(term)


def self_regularization_cells(refined_BHWC, synthetic_BHWC, *, psi, reduction, cells_hw):
  """The L1 self-regularisation of each image split over a [h, w] grid of cells
  ([B, h, w]; summed over the grid it is ``self_regularization_loss``'s per-image
  value): for a psi with a per-pixel output (identity, low_pass_k, channel_mean) the
  per-pixel terms summed over each cell; for any other psi (flat features) one cell,
  the whole image ([B, 1, 1]). For crediting drop-out draws
  (local_score_function_surrogate)."""
  diff = jnp.abs(psi(refined_BHWC) - psi(synthetic_BHWC))
  b, big_h, big_w = refined_BHWC.shape[:3]
  h, w = cells_hw
  if diff.ndim != 4 or diff.shape[1:3] != (big_h, big_w) or big_h % h or big_w % w:
    return reduce_per_image(diff, reduction)[:, None, None]
  per_pixel = jnp.sum(diff, axis=-1)
  if reduction == "mean":
    per_pixel = per_pixel / diff[0].size
  elif reduction != "sum":
    raise ValueError(f"config.loss.reduction: {reduction!r} is not 'sum' or 'mean'")
  return per_pixel.reshape(b, h, big_h // h, w, big_w // w).sum(axis=(2, 4))


def free_missing(refined_BHWC, synthetic_BHWC, above: float | None):
  """``refined`` with its pixels at or above ``above`` replaced by the synthetic input's.

  Applied before self-regularisation when ``config.loss.self_regularization_free_above``
  is set: a depth sensor's "no measurement" pixels (normalised to 1.0 in the hand
  images) carry no label, so a refiner may drop a pixel to that value without paying
  the L1 term, and the dropped pixel does not move psi's block means (which low-pass
  psi would otherwise balance with a dark pixel beside it). Those pixels get no
  self-regularisation gradient; every other pixel is regularised as before.
  """
  if above is None:
    return refined_BHWC
  return jnp.where(refined_BHWC >= above, synthetic_BHWC, refined_BHWC)


@register_loss("task_consistency_loss")
def task_consistency_loss(refined_BHWC, synthetic_BHWC, task_network, *, reduction="sum"):
  """How far refining moves a frozen synthetic-trained task network's predictions (issue 11).

  ``task_network`` (``probe.drift.TaskNetwork``) gives ``apply(images)`` and the
  per-image squared drift ``change(after, before)``: degrees^2 for gaze, KL for a
  classifier, label stds^2 for a regressor. Its parameters are constants here: only
  the refiner learns. Weighted by ``config.loss.task_consistency_weight``.
  """
  before = jax.lax.stop_gradient(task_network.apply(synthetic_BHWC))
  change = task_network.change(task_network.apply(refined_BHWC), before)
  return jnp.mean(reduce_per_image(change[:, None], reduction))


@register_psi("identity")
def identity(images_BHWC):
  return images_BHWC


@register_psi("channel_mean")
def channel_mean(images_BHWC):
  """The article's colour example: compare the mean of the channels only."""
  return jnp.mean(images_BHWC, axis=-1, keepdims=True)


def _block_mean(images_BHWC, k: int):
  """Each pixel replaced by the mean of its k x k block (blocks from the top left; the
  last row and column of blocks are partial where the size is not a multiple of k)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  b, h, w, c = images_BHWC.shape
  means = nn.avg_pool(images_BHWC, (k, k), strides=(k, k),
                      padding=((0, -h % k), (0, -w % k)), count_include_pad=False)
  return jnp.repeat(jnp.repeat(means, k, axis=1), k, axis=2)[:, :h, :w]


@register_psi("low_pass_2")
def low_pass_2(images_BHWC):
  """2 x 2 block means, at pixel resolution (so lambda keeps identity's scale): the
  refiner may add zero-mean detail (sensor noise, texture, compression blocks) that
  the identity L1 charges for, and is held to the image's coarse content."""
  return _block_mean(images_BHWC, 2)


@register_psi("low_pass_4")
def low_pass_4(images_BHWC):
  """``low_pass_2`` with 4 x 4 blocks."""
  return _block_mean(images_BHWC, 4)


# Feature maps that leave global brightness free: a constant added to the whole image
# changes none of their features, so the refiner may relight the image (the target's
# illumination) and is held to its structure only.


def _flat(*features):
  """Feature arrays of different shapes as one [B, N] array."""
  return jnp.concatenate([f.reshape(f.shape[0], -1) for f in features], axis=1)


@register_psi("gradients")
def gradients(images_BHWC):
  """Horizontal and vertical finite differences (x[i, j+1] - x[i, j], x[i+1, j] - x[i, j])."""
  return _flat(images_BHWC[:, :, 1:] - images_BHWC[:, :, :-1], images_BHWC[:, 1:] - images_BHWC[:, :-1])


def _half(images_BHWC):
  """2 x 2 block means at half resolution (a partial last block averages its own pixels)."""
  b, h, w, c = images_BHWC.shape
  pads = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
  sums = jnp.pad(images_BHWC, pads).reshape(b, (h + 1) // 2, 2, (w + 1) // 2, 2, c).sum(axis=(2, 4))
  counts = jnp.pad(jnp.ones((1, h, w, 1), images_BHWC.dtype), pads).reshape(
      1, (h + 1) // 2, 2, (w + 1) // 2, 2, 1).sum(axis=(2, 4))
  return sums / counts


BAND_PASS_LEVELS = 3


@register_psi("band_pass")
def band_pass(images_BHWC):
  """The detail levels of a Laplacian pyramid, G_k - up(G_k+1) for k < BAND_PASS_LEVELS
  (G_0 the image, G_k+1 = 2x2 block means of G_k, up = nearest neighbour), without the
  lowest level G_3, which holds the brightness (DC) and the slow illumination. Finer
  levels have more pixels, so the L1 weighs fine structure most, like identity's L1."""
  levels, g = [], images_BHWC
  for _ in range(BAND_PASS_LEVELS):
    low = _half(g)
    up = jnp.repeat(jnp.repeat(low, 2, axis=1), 2, axis=2)[:, :g.shape[1], :g.shape[2]]
    levels.append(g - up)
    g = low
  return _flat(*levels)


@register_psi("contrast_normalized")
def contrast_normalized(images_BHWC, eps: float = 1e-6):
  """Each image at zero mean and unit standard deviation (over pixels and channels):
  brightness and contrast are free. Features are in units of the image's std, so
  lambda needs its own value (a [-1, 1] image's std is about 0.3 to 0.5)."""
  axes = tuple(range(1, images_BHWC.ndim))
  mean = jnp.mean(images_BHWC, axis=axes, keepdims=True)
  var = jnp.var(images_BHWC, axis=axes, keepdims=True)
  return (images_BHWC - mean) * jax.lax.rsqrt(var + eps)


@register_psi("normalized_low_pass_4")
def normalized_low_pass_4(images_BHWC):
  """``low_pass_4`` of ``contrast_normalized``: brightness and contrast are free (as in
  ``contrast_normalized``) and so is detail finer than 4 x 4 blocks (as in ``low_pass_4``:
  blur, grain, compression blocks), for a target that is darker, flatter and blurrier than
  the simulator; the refiner is held to the image's coarse layout (where the pupil and the
  lids are). Units of the image's std, like ``contrast_normalized``."""
  return _block_mean(contrast_normalized(images_BHWC), 4)


def patch_accuracy(logits_BHW2: jax.Array, label: int) -> jax.Array:
  """Share of patches D assigns to ``label``."""
  return jnp.mean((jnp.argmax(logits_BHW2, axis=-1) == label).astype(jnp.float32))


# normalized_band's band: Gaussian sigmas (pixels) of its fine and its coarse blur.
BAND_FINE_SIGMA = 2.0
BAND_SIGMA = 6.0


def _gaussian_blur(images_BHWC, sigma: float):
  """A separable Gaussian blur, channel by channel; the image is continued past its edges
  by odd reflection (2 * edge - mirror image), so a linear ramp is kept exactly."""
  r = int(math.ceil(3 * sigma))
  t = jnp.arange(-r, r + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (t / sigma)**2)
  k = k / jnp.sum(k)
  c = images_BHWC.shape[-1]
  x = jnp.pad(images_BHWC, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect", reflect_type="odd")
  for kernel in (k.reshape(-1, 1, 1, 1), k.reshape(1, -1, 1, 1)):
    x = jax.lax.conv_general_dilated(x, jnp.tile(kernel, (1, 1, 1, c)).astype(x.dtype), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
  return x


@register_psi("normalized_band")
def normalized_band(images_BHWC):
  """A difference of Gaussians (sigma BAND_FINE_SIGMA minus sigma BAND_SIGMA) at zero
  mean and unit std. Free: brightness, contrast, detail finer than about 2 sigma_fine
  (grain, blur, 8x8 blocks partly) and changes slower than about 2 sigma (uneven
  illumination, a soft cast shadow: the target's, which normalized_low_pass_4 charges);
  held: the structure in between (pupil, iris, lids). Smooth blurs, not block means: a
  block mean turns a smooth light gradient into a staircase, which a band keeps.
  Units of the band's std. Eye :cpu validation, 3 SimGAN x 2 estimator seeds: 7.69 +-
  0.21 deg, as normalized_low_pass_4 (7.66 +- 0.13); the refiners leave the light even
  (docs/ablation_val_normalized_band.md)."""
  band = _gaussian_blur(images_BHWC, BAND_FINE_SIGMA) - _gaussian_blur(images_BHWC, BAND_SIGMA)
  return contrast_normalized(band)
