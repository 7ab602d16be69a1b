"""The inputs of ``refine_dataset`` and the compiled refiner calls it shares with
``refine.refine_arrays``: a simulator rendered and refined on device per chunk, or a
finite set (an image_folder set in the user's file order, npz, TFDS) sent through the
refiner in chunks sharded over the batch axis. A chunk's noise key is a function of
the example index, so a resumed run and an uninterrupted one write the same images.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from simgan_jax import models
from simgan_jax import parallel
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.tasks import data as data_lib

AXIS = parallel.AXIS
# Label names an input may not use: they name the refined output's own fields.
RESERVED = ("image", "index", "synthetic", "file_name")
# Root of the refiner's noise keys when refining a dataset (one key per example index).
NOISE_SEED = 0


def to_uint8(images: jax.Array) -> jax.Array:
  """On-device ``sources.from_unit_range``."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def apply_refiner(refiner: models.Refiner, params, images, index, seed: int = NOISE_SEED):
  """R(images) for examples with global ``index``; the noise input (if any) is keyed by
  (``seed``, index), so a refined set does not depend on chunking or device count."""
  key = jax.random.PRNGKey(seed)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
  return refiner.apply({"params": params}, images, models.refiner_noise(refiner, keys, images.shape[1:3]))


@functools.lru_cache(maxsize=16)
def array_fn(refiner: models.Refiner, mesh: Mesh):
  def refine(params, images, index):
    if images.dtype == jnp.uint8:
      images = sources_lib.to_unit_range(images)
    return to_uint8(apply_refiner(refiner, params, images.astype(jnp.float32), index))

  return jax.jit(jax.shard_map(refine, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P(AXIS)))


def padded(num: int, chunk: int, mesh: Mesh) -> int:
  """The compiled batch: ``min(chunk, num)`` rounded up to a multiple of the devices."""
  devices = mesh.devices.size
  return -(-max(1, min(chunk, num)) // devices) * devices


def replicate(params, mesh: Mesh):
  return jax.device_put(params, NamedSharding(mesh, P()))


def shard(part: np.ndarray, size: int, mesh: Mesh) -> jax.Array:
  if len(part) < size:  # pad; padded rows are cut by the caller
    part = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), part.dtype)])
  return jax.make_array_from_callback(part.shape, NamedSharding(mesh, P(AXIS)),
                                      lambda idx: part[idx])


@functools.lru_cache(maxsize=16)
def simulator_fn(refiner: models.Refiner, source, mesh: Mesh, seed: int, keep_synthetic: bool):
  """(params, global indices [B]) -> refined uint8, labels and optionally the render."""
  key = jax.random.PRNGKey(seed)

  def render_and_refine(params, index):
    batch = source.sample({}, jax.vmap(lambda i: jax.random.fold_in(key, i))(index))
    synthetic = batch.pop("image")
    out = {"image": to_uint8(apply_refiner(refiner, params, synthetic, index)), "labels": batch}
    if keep_synthetic:
      out["synthetic"] = synthetic
    return out

  return jax.jit(jax.shard_map(render_and_refine, mesh=mesh, in_specs=(P(), P(AXIS)),
                               out_specs=P(AXIS)))


# ----------------------------------------------------------------------------- input


def make_source(section, shape, spec: str):
  """make_source, its errors naming the --data flag the user typed (not config.data.*)."""
  try:
    return sources_lib.make_source(section, shape, "data")
  except ConfigError as e:
    message = str(e)
    if message.startswith("config.data.name: "):
      message = message[len("config.data.name: "):]
    raise ConfigError(f"--data={spec}: {message}") from None


class Input:
  """A dataset to refine: ``num`` examples; ``run(params, start, stop)`` -> a chunk's arrays."""

  def __init__(self, config, spec: str, num_examples: int, seed: int, keep_synthetic: bool,
               mesh: Mesh, chunk_size: int, data_dir: str = "", cache_dir: str = ""):
    shape = (config.image_height, config.image_width, config.channels)
    options = ml_collections.ConfigDict({"data_dir": data_dir, "cache_dir": cache_dir,
                                         "max_examples": int(num_examples)})
    section = data_lib.data_config(spec, options, training=True)
    if "labels" in section:
      section.labels = "all"
    self.refiner, self.mesh, self.keep_synthetic = models.make_refiner(config), mesh, keep_synthetic
    self.file_names, self.label_names, self.label_format = None, None, {}
    if section.name in ("eyesim", "handsim"):
      if num_examples <= 0:
        raise ConfigError(f"--num_examples: the simulator ({spec}) needs a number of images > 0")
      if config.synthetic_data.get("name") == section.name:
        section = config.synthetic_data  # the scene ranges the refiner was trained on
      self.simulator = make_source(section, shape, spec)
      self.num = int(num_examples)
      self.fn = simulator_fn(self.refiner, self.simulator, mesh, int(seed), keep_synthetic)
    else:
      # image_folder: read all, put back in the user's order, then take the first N.
      user_order = section.name == "image_folder"
      if user_order:
        section.max_examples = 0
      source = make_source(section, shape, spec)
      if not isinstance(source, sources_lib.ArraySource):
        raise ConfigError(f"--data={spec}: not a finite dataset nor the simulator")
      if tuple(source.image_shape) != shape:
        raise ConfigError(f"--data={spec}: images are {tuple(source.image_shape)} (H, W, C) but the "
                          f"refiner's config says {shape}")
      self.simulator, self.images, self.labels = None, source.images, dict(source.labels)
      stored = stored_file_names(section, len(self.images))
      if stored is not None:
        self.file_names, self.label_names, self.label_format = stored
        if user_order:
          order = np.array(sorted(range(len(self.file_names)),
                                  key=lambda i: pathlib.PurePosixPath(self.file_names[i]).parts))
          self.images = self.images[order]
          self.labels = {k: v[order] for k, v in self.labels.items()}
          self.file_names = self.file_names[order]
      self.num = len(self.images) if num_examples <= 0 else min(len(self.images), int(num_examples))
      self.fn = array_fn(self.refiner, mesh)
      clash = sorted(set(self.labels) & set(RESERVED))
      if clash:
        raise DataError(f"--data={spec}: label {clash[0]!r} clashes with a feature refine writes")
    self.size = padded(self.num, chunk_size, mesh)

  def dispatch(self, params, start: int, stop: int):
    """Starts the chunk's computation (asynchronously); ``fetch`` reads it back."""
    outputs = []
    for s in range(start, stop, self.size):
      e = min(s + self.size, stop)
      if self.simulator is not None:
        index = np.arange(s, s + self.size, dtype=np.int32)
        outputs.append((s, e, self.fn(params, shard(index, self.size, self.mesh))))
      else:
        index = np.arange(s, s + self.size, dtype=np.int32)  # keys the refiner's noise, if any
        outputs.append((s, e, {"image": self.fn(params, shard(self.images[s:e], self.size, self.mesh),
                                                shard(index, self.size, self.mesh))}))
    return start, stop, outputs

  def fetch(self, pending) -> dict[str, np.ndarray]:
    start, stop, outputs = pending
    parts = []
    for s, e, out in outputs:
      out = jax.tree.map(lambda x, n=e - s: np.asarray(x)[:n], out)
      if self.simulator is not None:
        part = {"image": out["image"], **{f"label/{k}": v for k, v in out["labels"].items()}}
        if self.keep_synthetic:
          part["synthetic"] = out["synthetic"]
      else:
        part = {"image": out["image"], **{f"label/{k}": v[s:e] for k, v in self.labels.items()}}
        if self.keep_synthetic:
          part["synthetic"] = self.images[s:e]
      parts.append(part)
    chunk = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    chunk["index"] = np.arange(start, stop, dtype=np.int64)
    if self.file_names is not None:
      chunk["file_name"] = self.file_names[start:stop]
    return chunk


def stored_file_names(section, num: int) -> tuple[np.ndarray, list[str] | None, dict] | None:
  """(the first ``num`` ``file_name`` values, the ``label_names`` and ``label_format``
  metadata) of a TFDS-backed section, in stored order; None when the set has no
  ``file_name`` feature."""
  from simgan_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top

  if section.name == "tfds_dir":
    path = section.path
  elif section.name in tfds_sources.DEFAULT_LABELS:
    path = tfds_sources.prepared_path(section.name, section.get("data_dir") or None,
                                      section.get("builder_config") or None)
  else:
    return None
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder_from_directory(path)
  if "file_name" not in builder.info.features:
    return None
  source = builder.as_data_source(section.get("split") or "train")
  names = []
  for start in range(0, num, 4096):
    for example in source.__getitems__(list(range(start, min(start + 4096, num)))):
      name = example["file_name"]
      names.append(name.decode() if isinstance(name, bytes) else str(name))
  metadata = builder.info.metadata or {}
  label_names = metadata.get("label_names")
  return np.array(names, dtype=str), (list(label_names) if label_names else None), dict(
      metadata.get("label_format") or {})
