"""Image sources: what the training loop samples synthetic and real images from.

A source is sampled *inside* the compiled train step, so no batch ever crosses from
the host during training. It has two parts:

* ``device_data()``: a pytree of arrays placed once, replicated, on every device
  (an image pool, or ``{}`` for a simulator that renders from parameters);
* ``sample(data, keys_B)``: a pure, traceable function from one PRNG key per example
  to a dict with at least ``"image"`` (float32 ``[B, H, W, C]`` in [-1, 1]) and any
  label fields.

Keys are per example and derived from the example's *global* index in the batch
(see ``parallel.example_keys``), so a batch is the same whether it is computed on
1 device or split across 8: this is what makes multi-device runs reproduce
single-device runs.

Sources are looked up by name in a registry, so a config says
``config.synthetic_data.name = "eyesim"`` and a new dataset plugs in with
``@register_source("my_data")`` on a factory ``(config, image_shape) -> source``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np


class ImageSource(Protocol):
  """What the training loop needs from a data source."""

  image_shape: tuple[int, int, int]  # (H, W, C)

  def device_data(self) -> Any:
    ...

  def sample(self, data: Any, keys_B: jax.Array) -> dict[str, jax.Array]:
    ...


def to_unit_range(images_uint8: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1], the range the refiner works in (SIMGAN.md)."""
  return images_uint8.astype(jnp.float32) * (2.0 / 255.0) - 1.0


def from_unit_range(images: np.ndarray | jax.Array) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255], rounding and clipping."""
  images = np.asarray(images, np.float32)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """An in-memory pool of images (and optional labels), sampled with replacement.

  The pool lives on every device (uint8 when given uint8, to save memory), and
  each example draws a uniform random index from its own key. Sampling with
  replacement keeps a batch a pure function of (key, step), so a resumed run sees
  exactly the batches an uninterrupted run would have seen.
  """

  images: np.ndarray  # [N, H, W, C], uint8 in [0, 255] or float in [-1, 1]
  labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.images.ndim != 4:
      raise ValueError(f"ArraySource.images: expected [N, H, W, C], got shape {self.images.shape}")
    if self.images.shape[0] == 0:
      raise ValueError("ArraySource.images: the pool is empty")
    for name, value in self.labels.items():
      if len(value) != len(self.images):
        raise ValueError(
            f"ArraySource.labels[{name!r}]: {len(value)} entries for {len(self.images)} images")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  def device_data(self) -> dict[str, Any]:
    return {"images": self.images, "labels": dict(self.labels)}

  def sample(self, data, keys_B):
    num = data["images"].shape[0]
    index_B = jax.vmap(lambda k: jax.random.randint(k, (), 0, num))(keys_B)
    images = data["images"][index_B]
    if images.dtype == jnp.uint8:
      images = to_unit_range(images)
    out = {"image": images.astype(jnp.float32), "index": index_B}
    out.update({name: value[index_B] for name, value in data["labels"].items()})
    return out


SourceFactory = Callable[[Any, tuple[int, int, int]], ImageSource]
_REGISTRY: dict[str, SourceFactory] = {}


def register_source(name: str) -> Callable[[SourceFactory], SourceFactory]:
  """Registers ``factory(config, image_shape) -> ImageSource`` under ``name``."""

  def wrap(factory: SourceFactory) -> SourceFactory:
    _REGISTRY[name] = factory
    return factory

  return wrap


def registered_sources() -> list[str]:
  _import_builtin_sources()
  return sorted(_REGISTRY)


def make_source(config: Any, image_shape: tuple[int, int, int], field: str = "data") -> ImageSource:
  """Builds the source named ``config.name``; ``field`` names the config field in errors."""
  _import_builtin_sources()
  name = config.get("name") if hasattr(config, "get") else None
  if name not in _REGISTRY:
    raise ValueError(
        f"config.{field}.name: unknown data source {name!r}; known: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name](config, image_shape)


def _import_builtin_sources() -> None:
  # Importing these modules runs their @register_source decorators. Optional
  # modules are skipped while they do not exist yet.
  import importlib

  for module in ("simgan_jax.simulators.sources", "simgan_jax.simulators.hand_sources",
                 "simgan_jax.data.tfds_sources"):
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name != module:
        raise


@register_source("npz")
def npz_source(config: Any, image_shape: tuple[int, int, int]) -> ArraySource:
  """Images (key ``images``, [N, H, W, C] uint8 or float in [-1, 1]) and label arrays from
  an ``.npz`` file at ``config.path``: the simplest way to train on arrays of your own."""
  from simgan_jax.errors import DataError  # pylint: disable=g-import-not-at-top

  path = config.get("path")
  if not path:
    raise DataError("config.*.path: the npz source needs a path to an .npz file")
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise DataError(f"{path}: cannot read as .npz ({e})") from None
  if "images" not in arrays:
    raise DataError(f"{path}: no array named 'images' (found: {', '.join(arrays) or 'none'})")
  images = arrays.pop("images")
  if images.ndim == 3:
    images = images[..., None]
  return ArraySource(images, arrays)
