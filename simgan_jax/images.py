"""Image grids written as PNG: synthetic | refined | real, the authors' stopping signal."""

from __future__ import annotations

import numpy as np
from PIL import Image

from simgan_jax.data.sources import from_unit_range


def grid(columns: list[np.ndarray], scale: int = 3, gap: int = 2) -> np.ndarray:
  """Tiles ``columns`` (each [N, H, W, C] in [-1, 1]) side by side, one row per example."""
  columns = [from_unit_range(c) for c in columns]
  n, h, w, c = columns[0].shape
  out = np.full((n * (h + gap) - gap, len(columns) * (w + gap) - gap, c), 255, np.uint8)
  for j, images in enumerate(columns):
    for i in range(n):
      out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = images[i]
  out = out.repeat(scale, 0).repeat(scale, 1)
  return out[..., 0] if c == 1 else out


def save_png(path: str, image_HW_or_HWC: np.ndarray) -> None:
  Image.fromarray(image_HW_or_HWC).save(path)
