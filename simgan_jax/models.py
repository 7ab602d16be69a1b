"""Refiner and local discriminator (SIMGAN.md "Networks").

Both are flax.linen modules used through pure ``init``/``apply``. Presets give the
paper's eye (35x55) and hand (224x224) architectures; every width, kernel and
block count is a field so other image sizes and channel counts work too.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _padded(x, kernel_size: int, padding: str):
  """Input for a stride-1 VALID conv giving SAME-sized output: zero ("SAME") or mirror
  ("REFLECT") padding. Zero padding lets the refiner tell where the image border is,
  which a local discriminator then sees as frame artefacts."""
  if padding == "SAME":
    return x, "SAME"
  if padding == "REFLECT":
    lo, hi = (kernel_size - 1) // 2, kernel_size // 2
    return jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode="reflect"), "VALID"
  raise ValueError(f"config.refiner.padding: {padding!r} is not 'SAME' or 'REFLECT'")


class ResnetBlock(nn.Module):
  """conv k x k, ReLU, conv k x k, + skip, ReLU (the paper's ResNet block)."""

  features: int
  kernel_size: int
  padding: str = "SAME"

  @nn.compact
  def __call__(self, x):
    k = (self.kernel_size, self.kernel_size)
    y, pad = _padded(x, self.kernel_size, self.padding)
    y = nn.relu(nn.Conv(self.features, k, padding=pad, name="conv1")(y))
    y, pad = _padded(y, self.kernel_size, self.padding)
    y = nn.Conv(self.features, k, padding=pad, name="conv2")(y)
    return nn.relu(x + y)


class Refiner(nn.Module):
  """R: synthetic image -> refined image of the same shape; no normalisation."""

  channels: int = 1
  features: int = 64
  num_blocks: int = 4
  kernel_size: int = 3
  output_activation: str = "tanh"
  padding: str = "SAME"

  @nn.compact
  def __call__(self, images_BHWC):
    k = (self.kernel_size, self.kernel_size)
    x, pad = _padded(images_BHWC, self.kernel_size, self.padding)
    x = nn.relu(nn.Conv(self.features, k, padding=pad, name="conv_in")(x))
    for i in range(self.num_blocks):
      x = ResnetBlock(self.features, self.kernel_size, self.padding, name=f"block{i}")(x)
    x = nn.Conv(self.channels, (1, 1), name="conv_out")(x)
    # Our choice (SIMGAN.md): tanh keeps the output in the input's [-1, 1] range.
    if self.output_activation == "tanh":
      return jnp.tanh(x)
    if self.output_activation == "linear":
      return x
    raise ValueError(
        f"config.refiner.output_activation: {self.output_activation!r} is not 'tanh' or 'linear'")


# (kind, kernel, stride, features); "pool" rows are max pooling with no features.
DISCRIMINATOR_PRESETS = {
    "eye": (
        ("conv", 3, 2, 96),
        ("conv", 3, 2, 64),
        ("pool", 3, 1, 0),
        ("conv", 3, 1, 32),
        ("conv", 1, 1, 32),
    ),
    "hand": (
        ("conv", 7, 4, 96),
        ("conv", 5, 2, 64),
        ("pool", 3, 2, 0),
        ("conv", 3, 2, 32),
        ("conv", 1, 1, 32),
    ),
}


class LocalDiscriminator(nn.Module):
  """D: image -> per-patch 2-way logits [B, h, w, 2] (index 0 real, 1 refined).

  ReLU follows every hidden convolution; the final 1x1 conv gives raw logits
  (SIMGAN.md notes peers that dropped the ReLUs or put one on the logits).
  """

  layers: Sequence[tuple[str, int, int, int]] = DISCRIMINATOR_PRESETS["eye"]
  width_multiplier: float = 1.0
  batch_norm: bool = False

  @nn.compact
  def __call__(self, images_BHWC, train: bool = True):
    x = images_BHWC
    for i, (kind, kernel, stride, features) in enumerate(self.layers):
      if kind == "pool":
        x = nn.max_pool(x, (kernel, kernel), strides=(stride, stride), padding="SAME")
        continue
      width = max(1, int(round(features * self.width_multiplier)))
      x = nn.Conv(width, (kernel, kernel), strides=(stride, stride), padding="SAME",
                  use_bias=not self.batch_norm, name=f"conv{i}")(x)
      if self.batch_norm:
        # Statistics are averaged over the whole data-parallel batch.
        x = nn.BatchNorm(use_running_average=not train, axis_name="batch" if train else None,
                         momentum=0.9, name=f"bn{i}")(x)
      x = nn.relu(x)
    return nn.Conv(2, (1, 1), name="logits")(x)


def make_refiner(config) -> Refiner:
  return Refiner(
      channels=config.channels,
      features=config.refiner.features,
      num_blocks=config.refiner.num_blocks,
      kernel_size=config.refiner.kernel_size,
      output_activation=config.refiner.output_activation,
      padding=config.refiner.get("padding", "SAME"),
  )


def make_discriminator(config) -> LocalDiscriminator:
  preset = config.discriminator.preset
  if preset not in DISCRIMINATOR_PRESETS:
    raise ValueError(f"config.discriminator.preset: unknown {preset!r}; "
                     f"known: {', '.join(DISCRIMINATOR_PRESETS)}")
  return LocalDiscriminator(
      layers=DISCRIMINATOR_PRESETS[preset],
      width_multiplier=config.discriminator.width_multiplier,
      batch_norm=config.discriminator.batch_norm,
  )


def patch_map_shape(discriminator: LocalDiscriminator, image_shape) -> tuple[int, int]:
  """(h, w) of D's patch map for an (H, W, C) image, without running it."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  out = jax.eval_shape(lambda: discriminator.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros(x.shape), train=False)[0])
  return tuple(out.shape[1:3])
