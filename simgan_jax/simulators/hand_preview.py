"""Labelled sample grids of the built-in hand datasets (depth with the 14 joints drawn)."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from PIL import Image, ImageDraw

from simgan_jax.data.sources import from_unit_range
from simgan_jax.simulators import hand_sources, hands, hands_target

DATASETS = ("handsim", "handsim_target")
# Bones between the 14 joints (NYU order: pinky/ring/middle/index tip and PIP, thumb
# tip, IP, MCP, two wrist points, palm centre); fingers in different colours.
_BONES = ((0, 1), (1, 13), (2, 3), (3, 13), (4, 5), (5, 13), (6, 7), (7, 13), (8, 9), (9, 10), (10, 13),
          (11, 13), (12, 13), (11, 12))
_COLOURS = ((255, 80, 80), (255, 80, 80), (255, 190, 60), (255, 190, 60), (90, 220, 90), (90, 220, 90),
            (80, 160, 255), (80, 160, 255), (220, 90, 255), (220, 90, 255), (220, 90, 255), (200, 200, 200),
            (200, 200, 200), (200, 200, 200))


def sample_images(dataset: str, num: int, image_shape=(128, 128, 1), seed: int = 0):
  """(uint8 images [num, H, W, 1], labels) rendered from ``seed`` (no cache is built)."""
  keys = jax.random.split(jax.random.PRNGKey(seed), num)
  h, w, _ = image_shape
  if dataset == "handsim":
    config = hands.HandSimConfig(height=h, width=w)
    images, labels = jax.jit(lambda k: hands.render_batch(k, config))(keys)
  elif dataset == "handsim_target":
    config = hands_target.HandTargetConfig(scene=dataclasses.replace(hands_target.TARGET_SCENE, height=h,
                                                                     width=w))
    images, labels = hand_sources._render(keys, config)  # pylint: disable=protected-access
  else:
    raise ValueError(f"dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
  return from_unit_range(images), jax.tree.map(np.asarray, labels)


def draw_grid(images: np.ndarray, labels: dict, scale: int = 2, columns: int = 8) -> Image.Image:
  """Tiles with the skeleton drawn and the hand's centre depth as a caption."""
  n, h, w, _ = images.shape
  rows, caption = math.ceil(n / columns), 12
  grid = Image.new("RGB", (columns * w * scale, rows * (h * scale + caption)), "black")
  for i in range(n):
    tile = Image.fromarray(np.repeat(images[i], 3, -1)).resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(tile)
    # Pixel centres are at integers in label coordinates.
    points = (labels["joints"][i] + 0.5) * scale
    for a, b in _BONES:
      draw.line([tuple(points[a]), tuple(points[b])], fill=_COLOURS[a], width=1)
    for j, (x, y) in enumerate(points):
      draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=_COLOURS[j])
    x0, y0 = (i % columns) * w * scale, (i // columns) * (h * scale + caption)
    grid.paste(tile, (x0, y0))
    ImageDraw.Draw(grid).text((x0 + 2, y0 + h * scale), f"{labels['centre_depth'][i]:.0f} mm",
                              fill=(220, 220, 220))
  return grid


def write_preview(dataset: str, out: str, num: int = 32, seed: int = 0, scale: int = 2, columns: int = 8,
                  image_shape=(128, 128, 1)) -> None:
  if num < 1 or scale < 1 or columns < 1:
    raise ValueError(f"num, scale and columns must be >= 1, got {num}, {scale}, {columns}")
  images, labels = sample_images(dataset, num, image_shape, seed)
  draw_grid(images, labels, scale, columns).save(out)
