"""Image sources: what the training loop samples synthetic and real images from.

A source is sampled *inside* the compiled train step, so no batch ever crosses from
the host during training. It has two parts:

* ``device_data()``: a pytree of host arrays (an image pool, or ``{}`` for a
  simulator that renders from parameters); ``place(source, mesh)`` puts it on
  the devices, replicated or sharded (below);
* ``sample(data, keys_B)``: a pure, traceable function from one PRNG key per example
  to a dict with at least ``"image"`` (float32 ``[B, H, W, C]`` in [-1, 1]) and any
  label fields.

Keys are per example and derived from the example's *global* index in the batch
(see ``parallel.example_keys``), so a batch is the same whether it is computed on
1 device or split across 8: this is what makes multi-device runs reproduce
single-device runs.

Sharded pools (``ArraySource.shard_pool``; config field ``shard_pool``): instead
of a copy on every device, device ``d`` of ``D`` holds rows ``[d*c, (d+1)*c)``
with ``c = ceil(N / D)`` (the last shard zero-padded), and each host reads only
its devices' rows (``host_shard``). Inside ``shard_map`` a sample still draws a
*global* index from each example's key, exactly as for a replicated pool; the
devices ``all_gather`` the batch's indices (``B`` int32), each copies the rows it
owns into a zero batch, and one ``psum_scatter`` over the axis hands every device
its own examples. Per step and per sample call, each device sends and receives
about one batch of images, never the pool. Outside ``shard_map`` (a ``jit`` over
the global arrays, e.g. sample images) the same function indexes the global
array and XLA moves only the selected rows.

What stays identical across device counts, hosts and sharding on/off: the index
of every example (a function of its key and ``N`` only), hence every batch and,
with ``parallel.mean_grad``, every update up to float summation order. What does
not: memory per device (``N / D`` rows sharded, ``N`` replicated), the zero
padding of the last shard (never sampled) and the collectives' cost.

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
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from simgan_jax import errors
from simgan_jax import parallel
from simgan_jax.errors import ConfigError, DataError


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


# shard_pool="auto" shards pools larger than this; smaller ones are cheaper replicated
# (no collective per sample) and fit any accelerator many times over.
AUTO_SHARD_BYTES = 256 * 2**20
SHARD_POOL_VALUES = ("auto", "true", "false")


def check_images(images: np.ndarray, where: str) -> None:
  """Raises DataError unless ``images`` are uint8 (0..255) or float within [-1, 1]."""

  dtype = np.asarray(images).dtype
  if dtype == np.uint8:
    return
  expected = "expected uint8 0..255 or float in [-1, 1]"
  if dtype.kind in "iu":
    raise DataError(f"{where}: images are {dtype} {np.min(images)}..{np.max(images)}; {expected} "
                    "(e.g. images.astype(np.uint8) for 0..255)")
  if dtype.kind != "f":
    raise DataError(f"{where}: images are {dtype}; {expected}")
  low, high = float(np.min(images)), float(np.max(images))  # NaN if any is (no temporary copy)
  if np.isnan(low) or np.isnan(high):
    raise DataError(f"{where}: images are {dtype} with NaN values; {expected}")
  if low < -1.0 or high > 1.0:
    hint = " (uint8 0..255 data: images.astype(np.uint8))" if high > 1.0 and low >= 0 else ""
    raise DataError(f"{where}: images are {dtype} {low:g}..{high:g}; {expected}{hint}")


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """An in-memory pool of images (and optional labels), sampled with replacement.

  The pool is uint8 when given uint8 (4x less memory than float32). Each example
  draws a uniform random index in ``[0, num_examples)`` from its own key.
  Sampling with replacement keeps a batch a pure function of (key, step), so a
  resumed run sees exactly the batches an uninterrupted run would have seen.

  ``images`` may hold only rows ``[row_offset, row_offset + len(images))`` of a
  pool of ``num_examples`` rows (a host's share, ``host_shard``); such a pool
  must be sharded. ``where`` names the file or config field in errors.
  """

  images: np.ndarray  # [N, H, W, C], uint8 in [0, 255] or float in [-1, 1]
  labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  shard_pool: Any = "auto"  # "auto" (shard above AUTO_SHARD_BYTES), "true" / True, "false" / False
  num_examples: int = 0  # rows of the whole pool (0: len(images))
  row_offset: int = 0  # global index of images[0]
  where: str = "ArraySource"

  def __post_init__(self):

    images = np.asarray(self.images)
    if images.ndim != 4:
      raise DataError(f"{self.where}: images: expected [N, H, W, C], got shape {images.shape}")
    if images.shape[0] == 0:
      raise DataError(f"{self.where}: images: the pool is empty")
    check_images(images, self.where)
    for name, value in self.labels.items():
      if len(value) != len(images):
        raise DataError(f"{self.where}: labels[{name!r}]: {len(value)} entries for {len(images)} images")
    mode = str(self.shard_pool).lower()
    if mode not in SHARD_POOL_VALUES:
      raise ConfigError(f"{self.where}: shard_pool={self.shard_pool!r}; expected one of "
                        f"{', '.join(SHARD_POOL_VALUES)}")
    partial = (self.num_examples or len(images)) != len(images)
    if partial and mode == "false":
      raise ConfigError(f"{self.where}: shard_pool=false but this host holds only rows "
                        f"[{self.row_offset}, {self.row_offset + len(images)}) of {self.num_examples} "
                        "(host_shard): a partial pool must be sharded")
    if self.row_offset < 0 or self.row_offset + len(images) > self.total:
      raise DataError(f"{self.where}: rows [{self.row_offset}, {self.row_offset + len(images)}) lie outside "
                      f"the pool of {self.total}")

  @property
  def total(self) -> int:
    """Rows of the whole pool, on all hosts."""
    return int(self.num_examples or len(self.images))

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  @property
  def pool_bytes(self) -> int:
    """Bytes of the whole pool (images and labels), as one device would hold it replicated."""
    per_row = self.images[0].nbytes + sum(np.asarray(v)[0].nbytes for v in self.labels.values())
    return per_row * self.total

  @property
  def sharded(self) -> bool:
    """Whether ``place`` shards the pool (a pool of one row never is)."""
    mode = str(self.shard_pool).lower()
    if self.total < 2:
      return False
    if mode == "auto":
      return self.total != len(self.images) or self.pool_bytes > AUTO_SHARD_BYTES
    return mode == "true"

  def device_data(self) -> dict[str, Any]:
    return {"images": self.images, "labels": dict(self.labels)}

  def sample(self, data, keys_B):
    num = self.total
    index_B = jax.vmap(lambda k: jax.random.randint(k, (), 0, num))(keys_B)
    return self.take(data, index_B)

  def take(self, data, index_B):
    """Rows ``index_B`` (global indices) as ``sample`` returns them."""
    num = self.total
    if data["images"].shape[0] < num:  # this device's shard, inside shard_map
      rows = _sharded_take(data, index_B)
    else:  # the whole pool: replicated, or the global array under jit
      rows = jax.tree.map(lambda x: x[index_B], data)
    images = rows["images"]
    if images.dtype == jnp.uint8:
      images = to_unit_range(images)
    out = {"image": images.astype(jnp.float32), "index": index_B}
    out.update(rows["labels"])
    return out


def split_without_replacement(total: int, num: int, num_test: int, seed: int) -> np.ndarray:
  """``num`` row indices of a pool of ``total`` whose last ``num_test`` are distinct and
  appear nowhere among the first ``num - num_test`` (a held-out test part that no
  training row duplicates). Every row is used once before any repeats: without
  replacement when ``total >= num``; a smaller pool repeats its training rows only."""
  if not 0 <= num_test < total:
    raise ValueError(f"{num_test} held-out rows need a pool of more than {num_test}; it has {total}")
  rng = np.random.default_rng(seed)
  order = rng.permutation(total)
  test, rest = order[:num_test], order[num_test:]
  need = num - num_test
  train = np.concatenate([rest] * (-(-need // len(rest))) if need > 0 else [rest[:0]])[:need]
  return np.concatenate([train, test]).astype(np.int32)


def _sharded_take(data, index_B):
  """Rows ``index_B`` (global indices) of a pool sharded along ``parallel.AXIS``.

  Every device must call this with the same local batch size (as inside a step).
  Communication: ``all_gather`` of the indices and one ``psum_scatter`` of the
  selected rows, i.e. one global batch per device, independent of the pool size.
  Exact for any dtype: each row is summed with zeros from every other device.
  """

  rows_per_shard = data["images"].shape[0]
  all_index = lax.all_gather(index_B, parallel.AXIS, tiled=True)  # [B_global]
  local = all_index - lax.axis_index(parallel.AXIS) * rows_per_shard
  mine = (local >= 0) & (local < rows_per_shard)
  safe = jnp.clip(local, 0, rows_per_shard - 1)

  def take(x):
    picked = x[safe]
    mask = mine.reshape((-1,) + (1,) * (picked.ndim - 1))
    return lax.psum_scatter(jnp.where(mask, picked, jnp.zeros_like(picked)), parallel.AXIS,
                            scatter_dimension=0, tiled=True)

  return jax.tree.map(take, data)


def _is_sharded(source) -> bool:
  return bool(getattr(source, "sharded", False))


def place(source: ImageSource, mesh) -> tuple[Any, Any]:
  """(data on the devices of ``mesh``, its PartitionSpecs) for ``source``.

  Replicated (``P()``) unless ``source.sharded``: then every leaf is split along
  its first axis over ``parallel.AXIS``, zero-padded to a multiple of the device
  count, each process filling only its own devices' rows.
  """


  host = source.device_data()
  if not _is_sharded(source):
    return parallel.put_replicated(host, mesh), jax.tree.map(lambda _: P(), host)
  num, offset = source.total, source.row_offset
  per_device = -(-num // mesh.devices.size)
  sharding = NamedSharding(mesh, P(parallel.AXIS))

  def put(x):
    x = np.asarray(x)
    shape = (per_device * mesh.devices.size,) + x.shape[1:]

    def rows(index):
      start, stop = index[0].indices(shape[0])[:2]
      block = np.zeros((stop - start,) + x.shape[1:], x.dtype)
      held = slice(max(start, offset), min(stop, num, offset + len(x)))
      need = min(stop, num) - start
      if held.stop - held.start < need:

        raise DataError(f"{source.where}: this process holds rows [{offset}, {offset + len(x)}) but its "
                        f"device needs [{start}, {min(stop, num)}); load with host_shard on the same mesh")
      block[held.start - start:held.stop - start] = x[held.start - offset:held.stop - offset]
      return block[(slice(None),) + tuple(index[1:])]

    return jax.make_array_from_callback(shape, sharding, rows)

  return jax.tree.map(put, host), jax.tree.map(lambda _: P(parallel.AXIS), host)


def host_rows(num: int, devices=None, process_index: int | None = None) -> tuple[int, int]:
  """[start, stop) of the pool rows that ``process_index``'s devices hold when a pool
  of ``num`` rows is sharded over ``devices`` (default: all, as ``parallel.make_mesh``)."""
  devices = list(jax.devices() if devices is None else devices)
  process_index = jax.process_index() if process_index is None else process_index
  per_device = -(-num // len(devices))
  mine = [i for i, d in enumerate(devices) if d.process_index == process_index]
  if not mine:
    return 0, 0
  return min(mine[0] * per_device, num), min((mine[-1] + 1) * per_device, num)


def bytes_per_device(data) -> int:
  """Bytes of ``data`` (placed arrays) on one device: the first addressable shard's."""
  return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(data))


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
    raise errors.ConfigError(
        f"config.{field}.name: unknown data source {name!r}; known: {', '.join(sorted(_REGISTRY))}")
  try:
    return _REGISTRY[name](config, image_shape)
  except (errors.ConfigError, errors.DataError) as e:
    # Factories say "config.*.path"; name the section they were given.
    message = str(e)
    message = (message.replace("config.*.", f"config.{field}.") if "config.*." in message
               else f"config.{field} ({name}): {message}")
    raise type(e)(message) from None


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
  """Images (key ``images``, [N, H, W, C] uint8 0..255 or float in [-1, 1]) and label
  arrays from an ``.npz`` file at ``config.path``: the simplest way to train on arrays
  of your own. Optional ``shard_pool`` (see ``ArraySource``)."""

  path = config.get("path")
  if not path:
    raise DataError("config.*.path: the npz source needs a path to an .npz file")
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise DataError(f"config.*.path={path}: cannot read as .npz ({e})") from None
  if "images" not in arrays:
    raise DataError(f"config.*.path={path}: no array named 'images' (found: {', '.join(arrays) or 'none'})")
  images = arrays.pop("images")
  if images.ndim == 3:
    images = images[..., None]
  return ArraySource(images, arrays, shard_pool=config.get("shard_pool", "auto") or "auto",
                     where=f"config.*.path={path}")


def pool_memory_line(sources: dict, data: dict, num_devices: int) -> str:
  """'simgan_jax: pools per device: synthetic 1.2 MiB of 9.6 MiB (sharded 1/8), real ...'."""
  parts = []
  for name, source in sources.items():
    held = bytes_per_device(data[name])
    if not held and not jax.tree.leaves(data[name]):
      parts.append(f"{name} none (rendered on device)")
      continue
    total = getattr(source, "pool_bytes", held)
    how = f"sharded 1/{num_devices}" if getattr(source, "sharded", False) else "replicated"
    parts.append(f"{name} {_size(held)} of {_size(total)} ({how})")
  return "simgan_jax: pools per device: " + ", ".join(parts)


def _size(num_bytes: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if num_bytes < 1024 or unit == "GiB":
      return f"{num_bytes:.3g} {unit}"
    num_bytes /= 1024
