"""Image decoding, channel conversion, padded crops and resizing for the builders."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from simgan_jax.data.builders.base import BadFileError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def load_image(path) -> Image.Image:
  """Opens and fully decodes an image, turning any decoder error into BadFileError."""
  try:
    with open(path, "rb") as f:
      image = Image.open(f)
      image.load()  # decode now: a truncated file fails here, not later
  except FileNotFoundError:
    raise BadFileError(path, "file not found") from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise BadFileError(path, f"cannot decode image ({e}); expected a valid PNG or JPEG") from None
  return image


def check_size(image: Image.Image, path, height: int, width: int, what: str = "") -> None:
  """Raises BadFileError unless ``image`` is ``width`` x ``height`` pixels."""
  if image.size != (width, height):
    raise BadFileError(path, f"image is {image.size[0]}x{image.size[1]} (WxH); expected "
                       f"{width}x{height}{' ' + what if what else ''}")


def to_channels(image: Image.Image, channels: int) -> Image.Image:
  """Converts to grey (``L``, ITU-R 601 luma as PIL computes it) or ``RGB``."""
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):
    # PIL clips 16-bit values when converting to L; scale to 8 bits instead.
    array = np.asarray(image, dtype=np.uint32) // 257
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
  if image.mode in ("P", "PA"):
    image = image.convert("RGBA")
  mode = {1: "L", 3: "RGB"}[channels]
  return image if image.mode == mode else image.convert(mode)


def resize(image: Image.Image, height: int, width: int) -> Image.Image:
  """Bilinear resize with PIL's antialiasing (its filter widens when shrinking)."""
  if image.size == (width, height):
    return image
  return image.resize((width, height), Image.BILINEAR)


def as_hwc(image: Image.Image) -> np.ndarray:
  """uint8 [H, W, C] array of an L or RGB image."""
  array = np.asarray(image, dtype=np.uint8)
  return array[..., None] if array.ndim == 2 else array


def round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))


def centred_box(cx: float, cy: float, box_width: int, box_height: int) -> tuple[int, int]:
  """Top-left pixel (x0, y0) of an integer box centred on (cx, cy).

  Coordinates put pixel i's centre at i (NumPy / OpenCV convention), so a box of
  width w centred on cx covers continuous [cx - w/2 + 0.5, ...) and starts at
  pixel cx - (w - 1) / 2, rounded.
  """
  return round_half_up(cx - (box_width - 1) / 2), round_half_up(cy - (box_height - 1) / 2)


def crop_padded(array: np.ndarray, x0: int, y0: int, width: int, height: int, fill=0) -> np.ndarray:
  """``array[y0:y0+height, x0:x0+width]`` with ``fill`` where the box leaves the image."""
  out = np.full((height, width) + array.shape[2:], fill, dtype=array.dtype)
  h, w = array.shape[:2]
  sy0, sx0 = max(y0, 0), max(x0, 0)
  sy1, sx1 = min(y0 + height, h), min(x0 + width, w)
  if sy1 > sy0 and sx1 > sx0:
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = array[sy0:sy1, sx0:sx1]
  return out


def to_crop_coords(points_N2: np.ndarray, x0: int, y0: int, box_width: int, box_height: int,
                   out_width: int, out_height: int) -> np.ndarray:
  """Maps image pixel coordinates into the resized crop (pixel centres at integers).

  A resize by s maps continuous coordinate c to c * s, and pixel i's centre is at
  i + 0.5 in continuous coordinates, hence ``(p - x0 + 0.5) * s - 0.5``.
  """
  scale = np.array([out_width / box_width, out_height / box_height])
  return ((points_N2 - np.array([x0, y0]) + 0.5) * scale - 0.5).astype(np.float32)
