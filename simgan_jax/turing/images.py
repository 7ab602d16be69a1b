"""The image sets of a visual Turing test, read from data specs, and their PNGs.

A set is named like any other data in the project (``tasks.data``):
``eyesim_target:test``, ``eyesim`` (fixed simulator renders), ``npz:PATH``,
``tfds:DIR[:SPLIT]`` (e.g. the output of ``launch/refine.py``), a prepared TFDS
name such as ``mpiigaze:test`` or ``unityeyes/35x55``, or a folder of image files
(``.png/.jpg/...``, sorted by path, read as grey when they are grey, else RGB).
Each set keeps its first ``num`` images (the TFDS builders shuffle on write, so
these are a fixed random subset; a folder's are its first files by name).

Every set of a study must have the same (H, W, C): a subject could otherwise
tell real from refined by size alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os

import ml_collections
import numpy as np
from PIL import Image

from simgan_jax.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
# Scaled up by a whole factor (nearest neighbour: every pixel stays exact) to about
# this many pixels on the long side.
DEFAULT_DISPLAY_SIZE = 440


@dataclasses.dataclass(frozen=True)
class ImageSet:
  """``images`` uint8 [N, H, W, C] read from ``spec``."""

  spec: str
  images: np.ndarray

  def __post_init__(self):
    if self.images.ndim != 4 or self.images.dtype != np.uint8 or self.images.shape[-1] not in (1, 3):
      raise DataError(f"{self.spec}: expected uint8 images [N, H, W, 1 or 3], got "
                      f"{self.images.dtype} {self.images.shape}")
    if not len(self.images):
      raise DataError(f"{self.spec}: no images")

  def __len__(self) -> int:
    return len(self.images)

  def digest(self, index: int) -> str:
    """sha256 of image ``index``'s shape and pixels: a database remembers which images it shows."""
    image = np.ascontiguousarray(self.images[index])
    return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()


def _spec_config(num: int, data_dir: str, cache_dir: str) -> ml_collections.ConfigDict:
  # The fields tasks.data reads; the eye shape is the simulators' render size.
  return ml_collections.ConfigDict({
      "image_height": 35, "image_width": 55, "channels": 1, "data_dir": data_dir,
      "cache_dir": cache_dir, "max_examples": num, "num_simulator_eval": num})


def _to_uint8(images: np.ndarray, spec: str) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype == np.uint8:
    return images
  if np.issubdtype(images.dtype, np.floating):  # the project's [-1, 1] range
    # jax-backed module: a study served from folders of files never loads jax.
    from simgan_jax.data.sources import from_unit_range  # pylint: disable=g-import-not-at-top

    return from_unit_range(images)
  raise DataError(f"{spec}: images of dtype {images.dtype}; expected uint8 or float in [-1, 1]")


def _read_folder(path: str, num: int) -> np.ndarray:
  files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                 if f.lower().endswith(IMAGE_SUFFIXES))
  if not files:
    raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
  arrays = []
  for file in files[:num] if num else files:
    try:
      with Image.open(file) as image:
        grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
        if image.mode in ("I", "I;16"):
          image = image.point(lambda v: v / 257)  # 16-bit grey, as the image_folder builder does
        arrays.append(np.asarray(image.convert("L" if grey else "RGB"), np.uint8))
    except OSError as e:
      raise DataError(f"{file}: cannot read as an image ({e})") from None
  shapes = {a.shape for a in arrays}
  if len(shapes) > 1:
    raise DataError(f"{path}: images of different sizes {sorted(shapes)}; a study shows one size")
  return _to_uint8(np.stack(arrays), path)


def load_images(spec: str, num: int, data_dir: str = "", cache_dir: str = "") -> np.ndarray:
  """The first ``num`` images (0 = all) of the set ``spec`` names, uint8 [N, H, W, C]."""
  if not spec:
    raise ConfigError("image set: empty data spec")
  if os.path.isdir(spec) and not os.path.exists(os.path.join(spec, "dataset_info.json")):
    return _read_folder(spec, num)
  if os.path.isdir(spec):
    spec = "tfds:" + spec
  # Data specs need jax (and TFDS for prepared sets): loaded only here, so that a study
  # served from folders of image files starts without them.
  # pylint: disable=g-import-not-at-top
  from simgan_jax.data import sources as sources_lib
  from simgan_jax.data import tfds_sources
  from simgan_jax.tasks import data as data_lib
  from simgan_jax.simulators import sources as eye_sources

  config = _spec_config(num, data_dir, cache_dir)
  if spec == "eyesim" and not num:
    raise ConfigError("image set 'eyesim': the simulator is endless; give a number of images")
  section = data_lib.data_config(spec, config, training=False)
  shape = data_lib.image_shape(config)
  if section.name == "eyesim":
    images, _ = data_lib.render_simulator_set(sources_lib.make_source(section, shape), num)
  elif section.name == "eyesim_target":
    images, _ = eye_sources.load_labelled_split(section, shape, section.split)
  elif section.name == "npz":
    images = sources_lib.npz_source(section, shape).images
  elif section.name == "tfds_dir":
    images, _ = tfds_sources.load_directory(section.path, split=section.split, max_examples=num,
                                            labels="none")
  else:
    images, _ = tfds_sources.load_split(section.name, data_dir=section.data_dir or None,
                                        builder_config=section.builder_config or None,
                                        split=section.split, max_examples=num, labels="none")
  images = _to_uint8(images, spec)
  return images[:num] if num else images


def load_sets(specs: dict[str, str], num: int, data_dir: str = "", cache_dir: str = ""
              ) -> dict[str, ImageSet]:
  """``{set name: spec}`` -> ``{set name: ImageSet}``, all of one (H, W, C)."""
  sets = {name: ImageSet(spec, load_images(spec, num, data_dir, cache_dir))
          for name, spec in specs.items() if spec}
  check_same_shape(sets)
  return sets


def check_same_shape(sets: dict[str, ImageSet]) -> None:
  shapes = {name: tuple(s.images.shape[1:]) for name, s in sets.items()}
  if len(set(shapes.values())) > 1:
    listed = ", ".join(f"{name} ({sets[name].spec}) {shape}" for name, shape in shapes.items())
    raise DataError(f"image sets differ in (H, W, C): {listed}; subjects could tell them apart "
                    "by size; prepare them at one size")


def display_scale(height: int, width: int, size: int = DEFAULT_DISPLAY_SIZE) -> int:
  """The whole factor that brings the long side closest to ``size`` without passing it (>= 1)."""
  return max(1, size // max(height, width))


def png_bytes(image_HWC: np.ndarray, scale: int) -> bytes:
  """``image_HWC`` (uint8) as a PNG, each pixel repeated ``scale`` x ``scale`` times."""
  image = image_HWC.repeat(scale, 0).repeat(scale, 1)
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
  return buffer.getvalue()
