"""Differentiable augmentation of the discriminator's inputs (DiffAugment: Zhao et al.,
NeurIPS 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

``config.augment.policy`` names transforms separated by commas ("" = off, the identity):
``translation``, ``cutout``, ``brightness``, ``contrast``. The same policy is applied to
real and refined images before D, in the discriminator's update and in the refiner's
adversarial loss; every transform is differentiable in the image, so the refiner's
gradient flows through it.

Randomness: each image's transform is a pure function of the image and its own key
(``augment(images, keys, policy)``; transform ``t`` of the policy folds in its index in
``TRANSFORMS``), so two images given the same key get the same translation, cutout
square, brightness and contrast; different keys give independent draws, as DiffAugment
draws per image. The training step passes per-example keys from the global example
index (``parallel.example_keys``), so a batch is augmented the same on 1 or N devices.
Magnitudes are DiffAugment's, for images in [-1, 1]; vacated and cut pixels are 0.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from simgan_jax import parallel

TRANSLATION_RATIO = 0.125  # shift up to 1/8 of the height / width (DiffAugment)
CUTOUT_RATIO = 0.5  # a square of half the height x half the width (DiffAugment)


def _brightness(image_HWC, key):
  """Adds one uniform offset in [-0.5, 0.5) to every pixel."""
  return image_HWC + (jax.random.uniform(key, ()) - 0.5)


def _contrast(image_HWC, key):
  """Scales the deviation from the image mean by a factor in [0.5, 1.5)."""
  mean = jnp.mean(image_HWC)
  return (image_HWC - mean) * (jax.random.uniform(key, ()) + 0.5) + mean


def _translation(image_HWC, key):
  """Shifts by whole pixels, up to TRANSLATION_RATIO of each side, filling with 0."""
  h, w, _ = image_HWC.shape
  sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
  kh, kw = jax.random.split(key)
  dy = jax.random.randint(kh, (), -sh, sh + 1)
  dx = jax.random.randint(kw, (), -sw, sw + 1)
  padded = jnp.pad(image_HWC, ((sh, sh), (sw, sw), (0, 0)))
  # Output pixel (i, j) reads input (i - dy, j - dx): a slice of the padded image.
  return lax.dynamic_slice(padded, (sh - dy, sw - dx, 0), image_HWC.shape)


def _cutout(image_HWC, key):
  """Sets a CUTOUT_RATIO-sized rectangle at a uniform centre to 0 (clipped at the border)."""
  h, w, _ = image_HWC.shape
  ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
  kh, kw = jax.random.split(key)
  top = jax.random.randint(kh, (), 0, h + (1 - ch % 2)) - ch // 2
  left = jax.random.randint(kw, (), 0, w + (1 - cw % 2)) - cw // 2
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
  return image_HWC * (~inside)[..., None].astype(image_HWC.dtype)


# Order fixes each transform's key (its index) whatever order a policy names them in.
TRANSFORMS: dict[str, Callable] = {
    "translation": _translation,
    "cutout": _cutout,
    "brightness": _brightness,
    "contrast": _contrast,
}


def parse_policy(policy: str, field: str = "augment.policy") -> tuple[str, ...]:
  """The transform names of a comma-separated policy ("" -> ()); raises on unknown names."""
  names = tuple(n.strip() for n in policy.split(",") if n.strip())
  unknown = [n for n in names if n not in TRANSFORMS]
  if unknown:
    raise ValueError(f"config.{field}: unknown transform(s) {', '.join(unknown)}; "
                     f"known: {', '.join(TRANSFORMS)}")
  return names


def augment(images_BHWC: jax.Array, keys_B: jax.Array, policy: tuple[str, ...] | str) -> jax.Array:
  """The policy's transforms, in the policy's order, each image with its own key."""
  names = parse_policy(policy) if isinstance(policy, str) else policy
  if not names:
    return images_BHWC

  def one(image_HWC, key):
    for name in names:
      image_HWC = TRANSFORMS[name](image_HWC, jax.random.fold_in(key, list(TRANSFORMS).index(name)))
    return image_HWC

  return jax.vmap(one)(images_BHWC, keys_B)


def augment_examples(images_BHWC: jax.Array, key: jax.Array, policy: tuple[str, ...] | str) -> jax.Array:
  """``augment`` with one key per example from its global batch index under ``key``
  (``parallel.example_keys``: call inside ``shard_map``), the identity for an empty policy."""
  if not policy:
    return images_BHWC
  return augment(images_BHWC, parallel.example_keys(key, images_BHWC.shape[0]), policy)
