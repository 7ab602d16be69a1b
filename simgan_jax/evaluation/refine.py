r"""Refines a whole synthetic dataset with a trained SimGAN refiner: a TFDS dataset or PNG files.

  python launch/refine.py --checkpoint=runs/eyesim --data=eyesim --num_examples=100000 \
      --out=runs/refined_eyesim
  python launch/train_gaze.py --train_data=tfds:runs/refined_eyesim --workdir=runs/gaze_refined
  python launch/refine.py --checkpoint=runs/eyesim --data=image_folder/35x55x1 --format=png \
      --out=runs/refined_mine

or from Python::

  out = refine.refine_dataset(refine.load_config("runs/eyesim"), "runs/eyesim", "eyesim", "runs/r",
                              num_examples=100_000)

Input (``data_spec``, the syntax of ``evaluation.data.data_config``):

* ``eyesim``: the built-in simulator, ``num_examples`` images; image ``i`` is
  rendered from ``fold_in(PRNGKey(seed), i)`` (reproducible), with all its
  labels. The scene ranges are those of ``config.synthetic_data`` when it is the
  simulator (what the refiner was trained on);
* a finite set (``npz:PATH``, ``NAME[/CONFIG][:SPLIT]``, ``tfds:PATH[:SPLIT]``,
  ``eyesim_target:validation|test``): refined in its stored order, all of it or
  the first ``num_examples``, with all its numeric labels and its ``file_name``
  when it has one. An ``image_folder`` set is refined in the order the builder
  read the user's folder (sorted relative paths), not in its prepared
  (shuffled) order, so ``index`` is the position among the user's files.

Output (``format``):

* ``tfds``: ``out_dir`` itself is a TFDS dataset folder (array_record, split
  ``train``, examples in input order; read it with ``tfds.builder_from_directory``
  or the ``tfds:OUT`` spec). Features: ``image`` (the refined image, uint8), every
  input label unchanged (same dtype, bit-for-bit), ``index`` (int64 position in the
  input), ``file_name`` (text, when the input has it) and, with ``keep_synthetic``,
  ``synthetic`` (the input image, its dtype);
* ``png``: ``out_dir`` holds one PNG per image under the input's own relative
  file name with the suffix ``.png`` (``eyes/a.jpg`` -> ``eyes/a.png``); inputs
  without unique file names (the simulator, npz, most prepared sets) get
  index-based names (``000017.png``). ``labels.csv`` (``filename,<label>,...``, one
  row per image in input order; an ``image_folder`` set's own header and label
  names) carries the labels over, so ``out_dir`` can be prepared again with
  ``launch/prepare_data.py --dataset=image_folder``. Values are written as the
  shortest text that reads back to the same float32/float64/int; columns an
  ``image_folder`` set wrote as integers stay integers (``refine_png.py``).

Resuming: the input is cut into chunks of ``chunk_size`` examples; each finished
chunk is written atomically to ``OUT/_chunks/`` and ``OUT/refine_manifest.json``
records the settings (checkpoint and step, data, counts, seed). A rerun skips
finished chunks, refuses an ``OUT`` made with other settings, and on a finished
``OUT`` does nothing. At the end the chunks become the TFDS dataset and are deleted.

Parallelism: each chunk is sharded over this process's devices (one compiled
shape: the last chunk is padded). With several processes, process ``p`` refines
chunks ``c`` with ``c % process_count == p`` and process 0 writes the dataset, so
``OUT`` must be on a filesystem shared by all hosts.

``refine_arrays`` refines in-memory images with the same compiled function.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import os
import pathlib
import shutil
import sys
from typing import Any, Callable

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from simgan_jax import checkpoints
from simgan_jax import metric_writer
from simgan_jax import models
from simgan_jax import parallel
from simgan_jax import preemption
from simgan_jax import pretrained
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.evaluation import data as data_lib
from simgan_jax.evaluation import refine_png
from simgan_jax.evaluation.refine_png import LABELS_CSV, png_names  # noqa: F401 (refine.X, as before)
from simgan_jax.evaluation import selection

AXIS = parallel.AXIS
MANIFEST = "refine_manifest.json"
CHUNKS = "_chunks"
FORMATS = ("tfds", "png")
DEFAULT_CHUNK_SIZE = 4096
_RESERVED = ("image", "index", "synthetic", "file_name")
_PROGRESS_SECONDS = 10.0
# Root of the refiner's noise keys when refining a dataset (one key per example index).
NOISE_SEED = 0


# ----------------------------------------------------------------------------- config and params


def _tuples(value):
  """JSON lists back to the tuples the configs use (e.g. ``lr_decay_steps``)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_config(checkpoint_dir: str) -> ml_collections.ConfigDict:
  """The SimGAN config that ``train.py`` saved as ``checkpoint_dir/config.json``
  (``checkpoint_dir`` may be ``pretrained:NAME``, a refiner shipped in the package)."""
  checkpoint_dir = pretrained.resolve(checkpoint_dir)
  _check_workdir(checkpoint_dir)
  path = os.path.join(checkpoint_dir, "config.json")
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(_tuples(json.load(f)))
  except FileNotFoundError:
    raise ConfigError(f"--checkpoint {checkpoint_dir}: no config.json (not a SimGAN workdir?); "
                      "pass --config") from None
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path}: cannot read the config ({e})") from None


def _check_workdir(checkpoint_dir: str) -> None:
  if not os.path.isdir(checkpoint_dir):
    raise ConfigError(f"--checkpoint {checkpoint_dir}: no such directory")


def saved_steps(checkpoint_dir: str) -> list[int]:
  """Steps with a checkpoint folder in ``checkpoint_dir/checkpoints`` (orbax's layout)."""
  directory = os.path.join(checkpoint_dir, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(n) for n in names if n.isdigit())


def _check_has_checkpoint(config, checkpoint_dir: str, step: int | None) -> None:
  steps = saved_steps(checkpoint_dir)
  if not steps:
    every = config.get("checkpoint_every")
    total = sum(int(config.get(k, 0)) for k in ("refiner_pretrain_steps", "discriminator_pretrain_steps",
                                                "num_iterations"))
    first = f"; the first is written at step {min(every, total) if total else every}" if every else ""
    raise ConfigError(f"--checkpoint {checkpoint_dir}: no checkpoint in {checkpoint_dir} yet{first}")
  if step is not None and step not in steps:
    raise ConfigError(f"--step {step}: no checkpoint for that step in {checkpoint_dir} "
                      f"(saved steps: {', '.join(map(str, steps))})")


def restore_refiner(config, checkpoint_dir: str, step: int | None = None) -> tuple[Any, int]:
  """(refiner params as host arrays, their step) from a SimGAN workdir or a shipped
  refiner (``pretrained:NAME``: one step only, so ``step`` must be None or it)."""

  checkpoint_dir = pretrained.resolve(checkpoint_dir)
  _check_workdir(checkpoint_dir)
  if pretrained.is_pretrained(checkpoint_dir):
    params, saved = pretrained.load_refiner(config, checkpoint_dir)
    if step is not None and step != saved:
      raise ConfigError(f"--step {step}: {checkpoint_dir} holds the refiner of step {saved} only")
    return params, saved
  _check_has_checkpoint(config, checkpoint_dir, step)
  try:
    state = checkpoints.restore_train_state(config, checkpoint_dir, step)
  except FileNotFoundError as e:
    raise ConfigError(str(e)) from None
  # Replicated: every process reads its own copy.
  host = lambda x: np.asarray(x.addressable_data(0))  # noqa: E731
  return jax.tree.map(host, training.inference_refiner_params(state)), int(host(state.step))


# ----------------------------------------------------------------------------- compiled refining


def _to_uint8(images: jax.Array) -> jax.Array:
  """On-device ``sources.from_unit_range``."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def _apply(refiner: models.Refiner, params, images, index, seed: int = NOISE_SEED):
  """R(images) for examples with global ``index``; the noise input (if any) is keyed by
  (``seed``, index), so a refined set does not depend on chunking or device count."""
  key = jax.random.PRNGKey(seed)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
  return refiner.apply({"params": params}, images, models.refiner_noise(refiner, keys, images.shape[1:3]))


@functools.lru_cache(maxsize=16)
def _array_fn(refiner: models.Refiner, mesh: Mesh):
  def refine(params, images, index):
    if images.dtype == jnp.uint8:
      images = sources_lib.to_unit_range(images)
    return _to_uint8(_apply(refiner, params, images.astype(jnp.float32), index))

  return jax.jit(jax.shard_map(refine, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P(AXIS)))


def _padded(num: int, chunk: int, mesh: Mesh) -> int:
  """The compiled batch: ``min(chunk, num)`` rounded up to a multiple of the devices."""
  devices = mesh.devices.size
  return -(-max(1, min(chunk, num)) // devices) * devices


def _replicate(params, mesh: Mesh):
  return jax.device_put(params, NamedSharding(mesh, P()))


def _shard(part: np.ndarray, size: int, mesh: Mesh) -> jax.Array:
  if len(part) < size:  # pad; padded rows are cut by the caller
    part = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), part.dtype)])
  return jax.make_array_from_callback(part.shape, NamedSharding(mesh, P(AXIS)),
                                      lambda idx: part[idx])


def refine_arrays(config, params, images: np.ndarray, mesh: Mesh | None = None,
                  chunk: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
  """Refined uint8 images [N, H, W, C] of host images (uint8, or float in [-1, 1]).

  The images go through in chunks of ``chunk`` (rounded up to a multiple of the
  devices; the last one padded), each sharded over ``mesh``'s batch axis
  (default: this process's devices); the compiled function is cached per
  (refiner, mesh), so repeated calls with the same chunk compile once.
  ``params``: the refiner's params, host arrays or replicated on ``mesh``.
  """
  mesh = mesh or parallel.local_mesh(config.get("num_devices", 0))
  images = np.asarray(images)
  if images.ndim != 4:
    raise DataError(f"refine_arrays: expected images [N, H, W, C], got shape {images.shape}")
  if not len(images):
    return np.zeros(images.shape, np.uint8)
  fn = _array_fn(models.make_refiner(config), mesh)
  params = _replicate(params, mesh)
  size = _padded(len(images), chunk, mesh)
  outputs = [fn(params, _shard(images[s:s + size], size, mesh),
                _shard(np.arange(s, s + size, dtype=np.int32), size, mesh))
             for s in range(0, len(images), size)]
  return np.concatenate([np.asarray(o) for o in outputs])[:len(images)]


@functools.lru_cache(maxsize=16)
def _simulator_fn(refiner: models.Refiner, source, mesh: Mesh, seed: int, keep_synthetic: bool):
  """(params, global indices [B]) -> refined uint8, labels and optionally the render."""
  key = jax.random.PRNGKey(seed)

  def render_and_refine(params, index):
    batch = source.sample({}, jax.vmap(lambda i: jax.random.fold_in(key, i))(index))
    synthetic = batch.pop("image")
    out = {"image": _to_uint8(_apply(refiner, params, synthetic, index)), "labels": batch}
    if keep_synthetic:
      out["synthetic"] = synthetic
    return out

  return jax.jit(jax.shard_map(render_and_refine, mesh=mesh, in_specs=(P(), P(AXIS)),
                               out_specs=P(AXIS)))


# ----------------------------------------------------------------------------- input


def _make_source(section, shape, spec: str):
  """make_source, its errors naming the --data flag the user typed (not config.data.*)."""
  try:
    return sources_lib.make_source(section, shape, "data")
  except ConfigError as e:
    message = str(e)
    if message.startswith("config.data.name: "):
      message = message[len("config.data.name: "):]
    raise ConfigError(f"--data={spec}: {message}") from None


class _Input:
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
      self.simulator = _make_source(section, shape, spec)
      self.num = int(num_examples)
      self.fn = _simulator_fn(self.refiner, self.simulator, mesh, int(seed), keep_synthetic)
    else:
      # image_folder: read all, put back in the user's order, then take the first N.
      user_order = section.name == "image_folder"
      if user_order:
        section.max_examples = 0
      source = _make_source(section, shape, spec)
      if not isinstance(source, sources_lib.ArraySource):
        raise ConfigError(f"--data={spec}: not a finite dataset nor the simulator")
      if tuple(source.image_shape) != shape:
        raise ConfigError(f"--data={spec}: images are {tuple(source.image_shape)} (H, W, C) but the "
                          f"refiner's config says {shape}")
      self.simulator, self.images, self.labels = None, source.images, dict(source.labels)
      stored = _stored_file_names(section, len(self.images))
      if stored is not None:
        self.file_names, self.label_names, self.label_format = stored
        if user_order:
          order = np.array(sorted(range(len(self.file_names)),
                                  key=lambda i: pathlib.PurePosixPath(self.file_names[i]).parts))
          self.images = self.images[order]
          self.labels = {k: v[order] for k, v in self.labels.items()}
          self.file_names = self.file_names[order]
      self.num = len(self.images) if num_examples <= 0 else min(len(self.images), int(num_examples))
      self.fn = _array_fn(self.refiner, mesh)
      clash = sorted(set(self.labels) & set(_RESERVED))
      if clash:
        raise DataError(f"--data={spec}: label {clash[0]!r} clashes with a feature refine writes")
    self.size = _padded(self.num, chunk_size, mesh)

  def dispatch(self, params, start: int, stop: int):
    """Starts the chunk's computation (asynchronously); ``fetch`` reads it back."""
    outputs = []
    for s in range(start, stop, self.size):
      e = min(s + self.size, stop)
      if self.simulator is not None:
        index = np.arange(s, s + self.size, dtype=np.int32)
        outputs.append((s, e, self.fn(params, _shard(index, self.size, self.mesh))))
      else:
        index = np.arange(s, s + self.size, dtype=np.int32)  # keys the refiner's noise, if any
        outputs.append((s, e, {"image": self.fn(params, _shard(self.images[s:e], self.size, self.mesh),
                                                _shard(index, self.size, self.mesh))}))
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


def _stored_file_names(section, num: int) -> tuple[np.ndarray, list[str] | None, dict] | None:
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


# ----------------------------------------------------------------------------- output


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def _chunk_path(out_dir: str, chunk: int) -> str:
  return os.path.join(out_dir, CHUNKS, f"chunk_{chunk:07d}.npz")


def _check_manifest(out_dir: str, manifest: dict[str, Any]) -> None:
  """Writes the manifest, or checks that an existing one has the same settings."""
  path = os.path.join(out_dir, MANIFEST)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    for key, value in manifest.items():
      if old.get(key, "tfds" if key == "format" else None) != value:  # older outputs: no format
        raise ConfigError(f"--out {out_dir}: made with other settings ({key}: {old.get(key)!r} there, "
                          f"{value!r} now); use another --out or delete it")
    return
  if jax.process_index() == 0:
    _write_json(path, manifest)


def _write_json(path: str, value) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1)
  os.replace(tmp, path)


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)


def _feature_spec(chunk: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
  return {k: (tuple(v.shape[1:]), v.dtype.str) for k, v in chunk.items()}


def _build_dataset(out_dir: str, num_chunks: int, features: dict[str, Any], metadata: dict[str, Any]) -> None:
  """Writes the chunks as a TFDS dataset into ``out_dir`` itself."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  chunk_paths = [_chunk_path(out_dir, c) for c in range(num_chunks)]

  class RefinedDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Refined images with their input's labels."""

    name = "simgan_refined"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Written by simgan_jax.evaluation.refine."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:  # as in data/builders/base.py: no importlib_resources
      return epath.Path(inspect.getfile(_build_dataset))

    def _info(self):
      feats = {}
      for key, (shape, dtype) in features.items():
        if np.dtype(dtype).kind == "U":  # file_name
          feats[key] = tfds.features.Text()
          continue
        # Raw bytes: the default would store float64 as float32 (tf.train.Example's float_list).
        feats[key.removeprefix("label/")] = tfds.features.Tensor(shape=shape, dtype=np.dtype(dtype),
                                                                 encoding=tfds.features.Encoding.BYTES)
      return tfds.core.DatasetInfo(builder=self, description="SimGAN-refined images (simgan_jax).",
                                   features=tfds.features.FeaturesDict(feats),
                                   metadata=tfds.core.MetadataDict(metadata), disable_shuffling=True)

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for path in chunk_paths:
        with np.load(path) as f:
          arrays = {k.removeprefix("label/"): f[k] for k in f.files}
        for i, index in enumerate(arrays["index"]):
          yield int(index), {k: (str(v[i]) if v.dtype.kind == "U" else v[i]) for k, v in arrays.items()}

  build_root = os.path.join(out_dir, "_build")
  shutil.rmtree(build_root, ignore_errors=True)
  builder = RefinedDataset(data_dir=build_root, file_format="array_record")
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top

  shown = getattr(tqdm_utils, "_active", True)
  tfds.display_progress_bar(False)  # our own progress lines say enough
  try:
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's "Downloading and preparing ..."
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  finally:
    tfds.display_progress_bar(shown)
  built = str(builder.data_dir)
  # dataset_info.json moves last: its presence in out_dir marks a finished dataset.
  names = sorted(os.listdir(built), key=lambda n: n == "dataset_info.json")
  for name in names:
    os.replace(os.path.join(built, name), os.path.join(out_dir, name))
  shutil.rmtree(build_root, ignore_errors=True)


def is_done(out_dir: str) -> bool:
  """Whether ``out_dir`` holds a finished dataset (TFDS) or image folder (PNG)."""
  if os.path.exists(os.path.join(out_dir, "dataset_info.json")):
    return True
  return bool(read_manifest(out_dir).get("finished"))


def read_manifest(out_dir: str) -> dict[str, Any]:
  try:
    with open(os.path.join(out_dir, MANIFEST)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def refine_dataset(config, checkpoint_dir: str, data_spec: str, out_dir: str, *, num_examples: int = 0,
                   step: int | str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE, seed: int = 0,
                   keep_synthetic: bool = False, data_dir: str = "", cache_dir: str = "",
                   progress: bool = True, on_chunk: Callable[[int], None] | None = None,
                   format: str = "tfds") -> str:  # pylint: disable=redefined-builtin
  """Refines ``data_spec`` with the refiner of ``checkpoint_dir`` into ``out_dir``.

  Returns ``out_dir``: a TFDS dataset folder (``format="tfds"``) or a folder of
  PNG files with ``labels.csv`` (``format="png"``); see the module docstring.
  ``config``: the SimGAN config of the run (``load_config(checkpoint_dir)``).
  ``step``: the checkpoint (default: newest), or ``"best"``: the lowest
  ``selection_score`` in ``metrics.jsonl`` among the checkpoints on disk
  (``evaluation/selection.py``). ``num_examples``: images to render
  from the simulator, or the first N of a finite set (0 = all). ``data_dir`` /
  ``cache_dir``: where prepared TFDS datasets and the target-domain cache live.
  ``on_chunk(chunk_index)`` is called after each chunk is saved (for tests).
  """
  if not isinstance(chunk_size, int) or chunk_size <= 0:
    raise ConfigError(f"--chunk_size: must be an integer > 0, got {chunk_size!r}")
  if num_examples < 0:
    raise ConfigError(f"--num_examples: must be >= 0, got {num_examples}")
  if format not in FORMATS:
    raise ConfigError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")

  checkpoint_dir = pretrained.resolve(checkpoint_dir)
  _check_workdir(checkpoint_dir)
  if pretrained.is_pretrained(checkpoint_dir) and str(step) == "best":
    step = None  # a shipped refiner is one (selected) checkpoint
  step = selection.resolve_step(config, checkpoint_dir, step)
  params, step = restore_refiner(config, checkpoint_dir, step)
  mesh = parallel.local_mesh(config.get("num_devices", 0))
  source = _Input(config, data_spec, num_examples, seed, keep_synthetic, mesh, chunk_size, data_dir, cache_dir)
  manifest = {"checkpoint": os.path.abspath(checkpoint_dir), "step": step, "data": data_spec,
              "num_examples": source.num, "chunk_size": chunk_size, "keep_synthetic": bool(keep_synthetic),
              "image_shape": [config.image_height, config.image_width, config.channels],
              "format": format}
  if source.simulator is not None:
    manifest["seed"] = int(seed)
  log = (lambda line: print(line, file=sys.stderr, flush=True)) if (
      progress and jax.process_index() == 0) else (lambda line: None)
  try:
    os.makedirs(out_dir if is_done(out_dir) else os.path.join(out_dir, CHUNKS), exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--out {out_dir}: not writable ({e.strerror or e})") from None
  _check_manifest(out_dir, manifest)
  if is_done(out_dir):
    log(f"refine: {out_dir} is already done ({source.num} images); nothing to do")
    return out_dir
  _sync("refine:manifest")

  num_chunks = -(-source.num // chunk_size)
  mine = [c for c in range(num_chunks) if c % jax.process_count() == jax.process_index()]
  todo = [c for c in mine if not os.path.exists(_chunk_path(out_dir, c))]
  log(f"refine: {source.num} images from {data_spec} with {checkpoint_dir} step {step}, "
      f"{num_chunks} chunks of {chunk_size} ({len(mine) - len(todo)} done before) on "
      f"{mesh.devices.size} device(s) x {jax.process_count()} process(es) -> {out_dir}")
  params = _replicate(params, mesh)
  done_images = 0
  # Live on a terminal; in a log file a line every _PROGRESS_SECONDS or 10%, then the total.
  bar = metric_writer.Progress("refine", sum(min(chunk_size, source.num - c * chunk_size) for c in todo),
                               "images", enabled=progress and jax.process_index() == 0,
                               every_s=_PROGRESS_SECONDS)

  def finish(chunk, pending):
    nonlocal done_images
    _write_npz(_chunk_path(out_dir, chunk), source.fetch(pending))
    done_images += pending[1] - pending[0]
    if on_chunk is not None:
      on_chunk(chunk)
    bar.update(done_images)

  def stop_if_asked(signals, chunk):
    # SIGTERM/SIGINT: stop after the chunk just saved (chunks are written whole, by
    # rename), drop the one in flight, say what is kept. With several processes each
    # stops after its own chunk; a rerun refines only the missing ones.
    if signals.signum:
      bar.close(" before the stop")
      kept = sum(os.path.exists(_chunk_path(out_dir, c)) for c in range(num_chunks))
      raise preemption.Stopped(signals.signum, chunk, os.path.join(out_dir, CHUNKS), what=(
          f"after chunk {chunk}; {kept} of {num_chunks} chunks saved in {os.path.join(out_dir, CHUNKS)}"))

  previous = None
  with preemption.StopSignals() as signals:
    for chunk in todo:
      # The next chunk is dispatched before the previous one is read back and saved.
      pending = source.dispatch(params, chunk * chunk_size, min((chunk + 1) * chunk_size, source.num))
      if previous is not None:
        finish(*previous)
        stop_if_asked(signals, previous[0])
      previous = (chunk, pending)
    if previous is not None:
      finish(*previous)
  if todo:
    bar.close()

  _sync("refine:chunks")
  if jax.process_index() == 0:
    if format == "png":
      refine_png.write_png_folder(out_dir, [_chunk_path(out_dir, c) for c in range(num_chunks)],
                                  source.label_names, source.label_format)
      _write_json(os.path.join(out_dir, MANIFEST), {**manifest, "finished": True})  # marks it done
    else:
      with np.load(_chunk_path(out_dir, 0)) as f:
        features = _feature_spec({k: f[k] for k in f.files})
      metadata = {"refine": manifest, **({"label_names": source.label_names} if source.label_names else {}),
                  **({"label_format": source.label_format} if source.label_format else {})}
      _build_dataset(out_dir, num_chunks, features, metadata)
    shutil.rmtree(os.path.join(out_dir, CHUNKS), ignore_errors=True)
    log(f"refine: wrote {source.num} images to {out_dir}")
  _sync("refine:dataset")
  return out_dir


def num_examples(out_dir: str) -> int:
  """Examples in the finished dataset (or PNG folder) at ``out_dir``."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  manifest = read_manifest(out_dir)
  if manifest.get("format") == "png":
    return int(manifest["num_examples"])
  return tfds.builder_from_directory(out_dir).info.splits["train"].num_examples
