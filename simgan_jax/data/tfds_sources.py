"""Training sources for the datasets prepared by ``launch/prepare_data.py``.

Registers ``unityeyes``, ``mpiigaze``, ``nyu_hand`` and ``image_folder``: each
loads one prepared split fully into a uint8 ``[N, H, W, C]`` array plus numeric
labels and serves it as an ``ArraySource`` (sampled with replacement inside the
train step). ``tfds_dir`` does the same for any TFDS dataset folder at
``config.path`` (one holding ``dataset_info.json``, e.g. the output of
``launch/refine.py``), keeping all numeric labels by default. Sub-config fields
(``config.synthetic_data`` / ``config.real_data``), all optional except ``name``:

* ``data_dir``: root of prepared datasets ('' = ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``);
* ``builder_config``: e.g. ``crop``, ``real``, ``35x55x1`` ('' = the builder's default);
* ``split``: e.g. ``train``, ``test``, or TFDS slicing such as ``train[:10%]``;
* ``max_examples``: keep the first N examples (0 = all). The builders shuffle on
  write (by a hash of each example's key), so these are a fixed random subset;
* ``manual_dir``: the folder the set was prepared from. When given, the prepared
  set must record the same folder fingerprint (``builders.base.source_record``),
  else a one-line DataError; with it, ``builder_config`` may be left to the base
  name (e.g. ``28x28x1``): the ``<name>_src<fingerprint>`` variant that
  ``prepare_data.py`` made for a second folder is found automatically;
* ``shard_pool``: ``auto`` (default: shard pools over 256 MiB), ``true`` or
  ``false``; a sharded pool is split across devices (``sources`` module docstring);
* ``host_shard``: each process reads from disk only the rows its own devices
  hold in the sharded pool (implies a sharded pool; multi-host, large datasets);
* ``labels``: label features to keep, a comma-separated string, ``"all"`` or
  ``"none"`` (default: a compact per-dataset set, ``DEFAULT_LABELS``).

TensorFlow is not needed, and TFDS is imported only when such a source is built.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from simgan_jax import errors
from simgan_jax.data import sources as sources_lib
from simgan_jax.data.sources import ArraySource, register_source

# Labels kept by default: what downstream evaluation needs, small enough to live
# on every device next to the images.
DEFAULT_LABELS = {
    "unityeyes": ("gaze", "pitchyaw", "head_pose", "iris_centre"),
    "mpiigaze": ("gaze", "pitchyaw", "head_pose", "person", "eye_side"),
    "nyu_hand": ("joints", "joints_uvd", "centre_depth"),
    "image_folder": ("label",),
    "tfds_dir": "all",
}
_READ_CHUNK = 4096


def prepared_path(name: str, data_dir: str | None = None, builder_config: str | None = None,
                  manual_dir: str | None = None) -> str:
  """Folder of the newest prepared version of ``name``/``builder_config``; with
  ``manual_dir``, of the one prepared from that folder's current files."""
  # The builders import tensorflow_datasets (seconds): only when a prepared source is built.
  from simgan_jax.data.builders import BUILDERS, default_data_dir  # pylint: disable=g-import-not-at-top
  from simgan_jax.data.builders.base import source_record, source_suffix  # pylint: disable=g-import-not-at-top

  builder_config = builder_config or BUILDERS[name].BUILDER_CONFIGS[0].name
  root = os.path.join(os.path.expanduser(data_dir or default_data_dir()), name)
  if not manual_dir:
    return _newest_version(root, builder_config, name, data_dir)
  if not os.path.isdir(os.path.expanduser(manual_dir)):
    raise errors.DataError(f"config.*.manual_dir={manual_dir}: no such folder (the prepared set is "
                           "checked against it)")
  want = source_record(manual_dir)
  found = []
  for candidate in (builder_config, builder_config + source_suffix(want)):
    if not os.path.isdir(os.path.join(root, candidate)):
      continue
    path = _newest_version(root, candidate, name, data_dir)
    recorded = _recorded_source(path)
    if recorded.get("fingerprint") == want["fingerprint"]:
      return path
    found.append(f"{path} was prepared from {recorded.get('manual_dir', 'an unrecorded folder')}"
                 f"{'' if recorded.get('manual_dir') != want['manual_dir'] else ' before its files changed'}")
  held = "; ".join(found) or f"no prepared set {os.path.join(root, builder_config)}"
  raise errors.DataError(
      f"config.*.manual_dir={want['manual_dir']}: {held}; run python launch/prepare_data.py "
      f"--dataset={name} --manual_dir={manual_dir}{' --data_dir=' + data_dir if data_dir else ''}")


def _newest_version(root: str, builder_config: str, name: str, data_dir: str | None) -> str:
  folder = os.path.join(root, builder_config)
  versions = []
  if os.path.isdir(folder):
    for version in os.listdir(folder):
      if os.path.exists(os.path.join(folder, version, "dataset_info.json")):
        versions.append(tuple(int(v) for v in version.split(".")))
  if not versions:
    raise errors.DataError(
        f"{folder}: no prepared dataset; run python launch/prepare_data.py --dataset={name} "
        f"--manual_dir=PATH{' --data_dir=' + data_dir if data_dir else ''} "
        f"(builder config {builder_config!r})")
  return os.path.join(folder, ".".join(map(str, max(versions))))


def _recorded_source(path: str) -> dict[str, Any]:
  try:
    with open(os.path.join(path, "metadata.json")) as f:
      return json.load(f).get("source") or {}
  except (OSError, ValueError, AttributeError):
    return {}


def shard_range(num: int, index: int, count: int) -> tuple[int, int]:
  """Contiguous [start, stop) of shard ``index`` of ``count`` over ``num`` examples."""
  return num * index // count, num * (index + 1) // count


def load_split(name: str, *, data_dir: str | None = None, builder_config: str | None = None,
               split: str = "train", max_examples: int = 0, host_shard: bool = False,
               labels: Any = None, manual_dir: str | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Reads a prepared split: uint8 images [N, H, W, C] and {label: [N, ...]} (with
  ``host_shard``, only this process's rows; see ``sources.host_rows``)."""
  return load_directory(prepared_path(name, data_dir, builder_config, manual_dir), name=name, split=split,
                        max_examples=max_examples, host_shard=host_shard, labels=labels)


def load_directory(path: str, *, name: str = "", split: str = "train", max_examples: int = 0,
                   host_shard: bool = False, labels: Any = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """``load_split`` of the TFDS dataset folder ``path`` (``name`` picks the default labels)."""
  images, labels, _, _ = read_rows(path, name=name, split=split, max_examples=max_examples,
                                   host_shard=host_shard, labels=labels)
  return images, labels


def read_rows(path: str, *, name: str = "", split: str = "train", max_examples: int = 0,
              host_shard: bool = False, labels: Any = None):
  """(images, labels, num, start): rows ``[start, start + len(images))`` of the ``num``
  examples of ``split`` (all of them unless ``host_shard``)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if not os.path.exists(os.path.join(path, "dataset_info.json")):
    raise errors.DataError(f"{path}: not a TFDS dataset folder (no dataset_info.json)")
  builder = tfds.builder_from_directory(path)
  if split.split("[")[0] not in builder.info.splits:
    raise errors.DataError(f"{path}: no split {split!r}; it has {', '.join(sorted(builder.info.splits))}")
  keys = _label_keys(name, builder.info.features, labels, path)
  source = builder.as_data_source(split)
  num = len(source) if not max_examples else min(len(source), int(max_examples))
  start, stop = 0, num
  if host_shard:
    start, stop = sources_lib.host_rows(num)
  if stop <= start:
    raise errors.DataError(f"{path}: split {split!r} gives no examples to this process "
                           f"(examples [{start}, {stop}) of {num})")
  shape = tuple(builder.info.features["image"].shape)
  dtypes = {k: np.dtype(builder.info.features[k].np_dtype) for k in keys}
  images = np.empty((stop - start,) + shape, np.uint8)
  columns = {k: [] for k in keys}
  for chunk in range(start, stop, _READ_CHUNK):
    examples = source.__getitems__(list(range(chunk, min(chunk + _READ_CHUNK, stop))))
    images[chunk - start:chunk - start + len(examples)] = np.stack([e["image"] for e in examples])
    for k in keys:
      # Scalars come back as Python numbers: cast to the stored dtype (exact).
      columns[k].append(np.stack([np.asarray(e[k], dtypes[k]) for e in examples]))
  return images, {k: np.concatenate(v) for k, v in columns.items()}, num, start


def _label_keys(name, features, labels, path) -> list[str]:
  numeric = [k for k, f in features.items()
             if k != "image" and np.dtype(f.np_dtype).kind in "biuf" and 0 not in (f.shape or (1,))]
  if labels in (None, ""):
    labels = DEFAULT_LABELS.get(name, ())
    if labels != "all":
      return [k for k in labels if k in numeric]
  if labels == "all":
    return numeric
  if labels == "none":
    return []
  keys = [k.strip() for k in labels.split(",")] if isinstance(labels, str) else list(labels)
  unknown = [k for k in keys if k not in numeric]
  if unknown:
    raise errors.ConfigError(f"labels: {unknown} not numeric features of {path}; available: {numeric}")
  return keys


def _has_labels(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  # image_folder without a labels file stores empty label vectors: drop them.
  return {k: v for k, v in labels.items() if v.size}


def make_tfds_source(name: str, config, image_shape: tuple[int, int, int]) -> ArraySource:
  """An ``ArraySource`` over a prepared split, checked against the training image shape."""
  get = config.get if hasattr(config, "get") else lambda key, default=None: default
  builder_config = get("builder_config") or None
  if name == "tfds_dir":
    if not get("path"):
      raise errors.ConfigError("config.*.path: the tfds_dir source needs a TFDS dataset folder")
    path = get("path")
  else:
    path = prepared_path(name, get("data_dir") or None, builder_config, get("manual_dir") or None)
  host_shard = bool(get("host_shard") or False)
  shard_pool = get("shard_pool") or "auto"
  if host_shard and str(shard_pool).lower() == "false":
    raise errors.ConfigError("config.*.host_shard: each host would hold a different part of the pool "
                             "while shard_pool=false replicates it; set shard_pool to auto or true")
  images, labels, num, start = read_rows(
      path, name=name,
      split=get("split") or "train",
      max_examples=int(get("max_examples") or 0),
      host_shard=host_shard,
      labels=get("labels"),
  )
  if tuple(images.shape[1:]) != tuple(image_shape):
    where = f"{get('path')}" if name == "tfds_dir" else f"builder_config={builder_config or 'default'!r}"
    raise errors.ConfigError(
        f"data source {name!r} ({where}): prepared images are "
        f"{tuple(images.shape[1:])} (H, W, C) but the config's (image_height, image_width, channels) "
        f"is {tuple(image_shape)}; prepare the dataset at that size or change the config")
  return ArraySource(images, _has_labels(labels), shard_pool=shard_pool, num_examples=num,
                     row_offset=start, where=path)


def epoch_permutation(num: int, seed: int, epoch: int) -> np.ndarray:
  """The order of ``num`` examples in ``epoch``: a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num)


@register_source("unityeyes")
def unityeyes_source(config, image_shape):
  return make_tfds_source("unityeyes", config, image_shape)


@register_source("mpiigaze")
def mpiigaze_source(config, image_shape):
  return make_tfds_source("mpiigaze", config, image_shape)


@register_source("nyu_hand")
def nyu_hand_source(config, image_shape):
  return make_tfds_source("nyu_hand", config, image_shape)


@register_source("image_folder")
def image_folder_source(config, image_shape):
  return make_tfds_source("image_folder", config, image_shape)


@register_source("tfds_dir")
def tfds_dir_source(config, image_shape):
  return make_tfds_source("tfds_dir", config, image_shape)
