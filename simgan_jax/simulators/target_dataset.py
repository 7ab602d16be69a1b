"""The target domain as a finite, cached dataset (our MPIIGaze).

Splits, all generated once from a fixed seed on first use:

* ``train``: the unlabelled "real" pool the discriminator sees (images only);
* ``validation`` and ``test``: labelled, for evaluation only.

Example i of a split is rendered from ``fold_in(fold_in(PRNGKey(seed), split_id), i)``,
so a split's first examples do not depend on its size.

Format: one uncompressed ``<split>.npz`` per split (``images`` uint8 [N, H, W, C]
and one array per label) plus ``manifest.json`` holding the generating config,
its hash and the sha256 and size of each file. We use .npz rather than a TFDS
array_record dataset because the consumer loads whole splits into memory (the
pool is put on every device) and .npz needs no builder code, reads in one call and
is easy to checksum. Noisy 8-bit images barely compress, hence no compression.

Cache directory: ``<root>/eyesim_target/<config-hash>/`` with root the
``cache_dir`` argument, else ``$SIMGAN_JAX_CACHE``, else ``~/.cache/simgan_jax``.
A split is rebuilt when its file is missing, or its sha256 disagrees with the
manifest (a warning names the file); a changed config hashes to a new directory.
Bump ``GENERATOR_VERSION`` whenever the renderer's pixels change.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import sys
import warnings
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax import metric_writer
from simgan_jax.simulators import target

GENERATOR_VERSION = 1
SPLITS = {"train": 0, "validation": 1, "test": 2}
LABEL_FIELDS = ("gaze", "pitchyaw", "head_pose", "pupil_center", "iris_landmarks",
                "eyelid_landmarks")
CHUNK_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class TargetDatasetConfig:
  """What the cached target dataset is generated from (all of it is hashed)."""

  target: target.TargetConfig = target.TargetConfig()
  num_train: int = 50_000
  num_validation: int = 5_000
  num_test: int = 5_000
  seed: int = 0
  # Not fields (not hashed): what another target domain (hands_target) overrides.
  cache_name: ClassVar[str] = "eyesim_target"
  label_fields: ClassVar[tuple[str, ...]] = LABEL_FIELDS

  def size(self, split: str) -> int:
    return getattr(self, f"num_{split}")

  def render_keys(self, keys_B):
    """(float images [B, H, W, C] in [-1, 1], labels) of one example per key."""
    return target.render_batch_staged(keys_B, self.target)


def config_hash(config: TargetDatasetConfig) -> str:
  """16 hex digits of the sha256 of the config and the generator version."""
  text = json.dumps({"generator_version": GENERATOR_VERSION, "config": dataclasses.asdict(config)},
                    sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_directory(config: TargetDatasetConfig, cache_dir: str | os.PathLike | None = None
                    ) -> pathlib.Path:
  root = cache_dir or os.environ.get("SIMGAN_JAX_CACHE") or "~/.cache/simgan_jax"
  return pathlib.Path(root).expanduser() / config.cache_name / config_hash(config)


@functools.partial(jax.jit, static_argnums=2)
def _chunk_keys(split_key, start, chunk: int):
  return jax.vmap(lambda i: jax.random.fold_in(split_key, i))(start + jnp.arange(chunk))


@jax.jit
def _to_uint8(images):
  return jnp.round((images + 1.0) * 127.5).astype(jnp.uint8)


def _chunk(config: TargetDatasetConfig, split_key, start: int, chunk: int):
  """(uint8 images [chunk, ...], labels) of examples [start, start + chunk)."""
  images, labels = config.render_keys(_chunk_keys(split_key, start, chunk))
  return _to_uint8(images), labels


def generate_split(config: TargetDatasetConfig, split: str, start: int = 0,
                   num: int | None = None, progress: Callable[[int], None] | None = None
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Renders examples [start, start + num) of a split: (uint8 images, labels).

  ``progress(done)`` is called as each chunk of rendered images is read back.
  """
  num = config.size(split) if num is None else num
  split_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), SPLITS[split])
  chunk = min(CHUNK_SIZE, max(num, 1))
  images, labels = [], {name: [] for name in config.label_fields}
  # Dispatch every chunk before reading any back, so rendering overlaps copying.
  outs = [_chunk(config, split_key, start + i, chunk) for i in range(0, num, chunk)]
  for out_images, out_labels in outs:
    images.append(np.asarray(out_images))
    for name in config.label_fields:
      labels[name].append(np.asarray(out_labels[name]))
    if progress is not None:
      progress(min(len(images) * chunk, num))
  # The last chunk is rendered whole (one compiled shape) and cut here.
  return (np.concatenate(images)[:num],
          {name: np.concatenate(v)[:num] for name, v in labels.items()})


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def _read_manifest(directory: pathlib.Path) -> dict:
  path = directory / "manifest.json"
  if not path.exists():
    return {}
  try:
    manifest = json.loads(path.read_text())
    if not isinstance(manifest.get("splits"), dict):
      raise ValueError("no 'splits' entry")
    return manifest
  except (ValueError, AttributeError) as e:
    warnings.warn(f"simgan_jax: cache manifest {path} is corrupt ({e}); rebuilding the cache")
    return {}


def _write_atomic(path: pathlib.Path, write) -> None:
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  with open(tmp, "wb") as f:
    write(f)
  os.replace(tmp, path)


def _build_split(config: TargetDatasetConfig, directory: pathlib.Path, split: str,
                 show_progress: bool = True) -> None:
  # Minutes of rendering on a CPU the first time: say so at once, then show progress.
  show = show_progress and jax.process_index() == 0
  if show:
    print(f"{config.cache_name}: rendering the {split} split ({config.size(split)} images) into {directory} "
          "(first use only)", file=sys.stderr, flush=True)
  bar = metric_writer.Progress(f"{config.cache_name} {split}", config.size(split), "images", enabled=show)
  images, labels = generate_split(config, split, progress=bar.update)
  # The training pool is the unlabelled "real" data: its labels are not stored.
  arrays = {"images": images, **({} if split == "train" else labels)}
  path = directory / f"{split}.npz"
  _write_atomic(path, lambda f: np.savez(f, **arrays))
  manifest = _read_manifest(directory) or {
      "generator_version": GENERATOR_VERSION, "config_hash": config_hash(config),
      "config": dataclasses.asdict(config), "splits": {}}
  manifest["splits"][split] = {"file": path.name, "num": len(images), "sha256": _sha256(path),
                               "bytes": path.stat().st_size}
  _write_atomic(directory / "manifest.json",
                lambda f: f.write(json.dumps(manifest, indent=1).encode()))
  bar.close()


def _check_split(directory: pathlib.Path, split: str) -> bool:
  """True if the split's file is present and matches the manifest; warns if not."""
  path = directory / f"{split}.npz"
  entry = _read_manifest(directory).get("splits", {}).get(split)
  if entry is None or not path.exists():
    return False
  if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
    warnings.warn(f"simgan_jax: cache file {path} is truncated or corrupt "
                  f"(sha256 differs from the manifest); rebuilding it")
    return False
  return True


def ensure_cache(config: TargetDatasetConfig = TargetDatasetConfig(),
                 cache_dir: str | os.PathLike | None = None,
                 splits=tuple(SPLITS), progress: bool = True) -> pathlib.Path:
  """Builds the missing or damaged splits (with progress lines on stderr unless
  ``progress=False``); returns the cache directory."""
  directory = cache_directory(config, cache_dir)
  directory.mkdir(parents=True, exist_ok=True)
  for split in splits:
    if not _check_split(directory, split):
      _build_split(config, directory, split, progress)
  return directory


def load_split(split: str, config: TargetDatasetConfig = TargetDatasetConfig(),
               cache_dir: str | os.PathLike | None = None
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(uint8 images [N, H, W, C], labels) of a split, building it on first use.

  Labels are empty for ``train``; ``validation`` and ``test`` carry the fields of
  ``eyes.labels`` (gaze, pitchyaw, head_pose, pupil_center, iris_landmarks,
  eyelid_landmarks).
  """
  if split not in SPLITS:
    raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
  directory = ensure_cache(config, cache_dir, splits=(split,))
  with np.load(directory / f"{split}.npz") as data:
    arrays = {name: data[name] for name in data.files}
  images = arrays.pop("images")
  return images, arrays
