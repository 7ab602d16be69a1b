"""Labelled sample grids of the built-in eye datasets (for eyeballing the data)."""

from __future__ import annotations

import math

import jax
import numpy as np
from PIL import Image, ImageDraw

from simgan_jax.data.sources import from_unit_range
from simgan_jax.simulators import eyes, target

DATASETS = ("eyesim", "eyesim_target", "handsim", "handsim_target")


def sample_images(dataset: str, num: int, image_shape=(35, 55, 1), seed: int = 0):
  """(uint8 images [num, H, W, C], labels) rendered from ``seed``.

  ``eyesim_target`` is rendered with the same generator and scene distribution
  as the cached dataset, without building the cache.
  """
  keys = jax.random.split(jax.random.PRNGKey(seed), num)
  h, w, c = image_shape
  if dataset == "eyesim":
    images, labels = eyes.render_batch(keys, eyes.EyeSimConfig(height=h, width=w, channels=c))
  elif dataset == "eyesim_target":
    scene = eyes.EyeSimConfig(**{**target.TARGET_SCENE.__dict__, "height": h, "width": w,
                                 "channels": c})
    images, labels = target.render_batch_staged(keys, target.TargetConfig(scene=scene))
  else:
    raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
  return from_unit_range(images), jax.tree.map(np.asarray, labels)


def draw_grid(images: np.ndarray, labels: dict, scale: int = 4, columns: int = 8) -> Image.Image:
  """Upscaled tiles with the pupil centre (green dot), gaze (red line) and pitch/yaw."""
  n, h, w, _ = images.shape
  rows = math.ceil(n / columns)
  caption = 12
  grid = Image.new("RGB", (columns * w * scale, rows * (h * scale + caption)), "black")
  for i in range(n):
    tile = images[i] if images.shape[-1] == 3 else np.repeat(images[i], 3, -1)
    tile = Image.fromarray(tile).resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(tile)
    # Pixel centres are at integer + 0.5 in label coordinates.
    px, py = labels["pupil_center"][i] * scale
    gx, gy, _ = labels["gaze"][i]
    length = 0.4 * w * scale
    draw.line([(px, py), (px + length * gx, py + length * gy)], fill=(255, 40, 40), width=2)
    draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(40, 255, 40))
    x0, y0 = (i % columns) * w * scale, (i // columns) * (h * scale + caption)
    grid.paste(tile, (x0, y0))
    pitch, yaw = np.degrees(labels["pitchyaw"][i])
    ImageDraw.Draw(grid).text((x0 + 2, y0 + h * scale), f"p{pitch:+.0f} y{yaw:+.0f}",
                              fill=(220, 220, 220))
  return grid


def write_preview(dataset: str, out: str, num: int = 32, seed: int = 0, scale: int = 4,
                  columns: int = 8, image_shape=(35, 55, 1)) -> None:
  """Writes a labelled grid of ``num`` samples of ``dataset`` to the image file ``out``."""
  if num < 1 or scale < 1 or columns < 1:
    raise ValueError(f"num, scale and columns must be >= 1, got {num}, {scale}, {columns}")
  if dataset.startswith("hand"):  # depth hands: their own renderer and drawing
    from simgan_jax.simulators import hand_preview  # pylint: disable=g-import-not-at-top

    return hand_preview.write_preview(dataset, out, num, seed, max(1, scale // 2), columns)
  images, labels = sample_images(dataset, num, image_shape, seed)
  draw_grid(images, labels, scale, columns).save(out)
