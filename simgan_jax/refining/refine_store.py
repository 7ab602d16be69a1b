"""Where ``refine_dataset`` keeps its output: chunks written whole (by rename) so an
interrupted run resumes, a manifest of the settings, and the finished TFDS dataset
(array_record, split ``train``) built from the chunks in the output folder itself.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import shutil
from typing import Any

from etils import epath
import jax
import numpy as np

from simgan_jax.errors import ConfigError

MANIFEST = "refine_manifest.json"
CHUNKS = "_chunks"


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def chunk_path(out_dir: str, chunk: int) -> str:
  return os.path.join(out_dir, CHUNKS, f"chunk_{chunk:07d}.npz")


def check_manifest(out_dir: str, manifest: dict[str, Any]) -> None:
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
    write_json(path, manifest)


def write_json(path: str, value) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1)
  os.replace(tmp, path)


def sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)


def feature_spec(chunk: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
  return {k: (tuple(v.shape[1:]), v.dtype.str) for k, v in chunk.items()}


def build_dataset(out_dir: str, num_chunks: int, features: dict[str, Any], metadata: dict[str, Any]) -> None:
  """Writes the chunks as a TFDS dataset into ``out_dir`` itself."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  chunk_paths = [chunk_path(out_dir, c) for c in range(num_chunks)]

  class RefinedDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Refined images with their input's labels."""

    name = "simgan_refined"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Written by simgan_jax.refining.refine."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:  # as in data/builders/base.py: no importlib_resources
      return epath.Path(inspect.getfile(build_dataset))

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


def num_examples(out_dir: str) -> int:
  """Examples in the finished dataset (or PNG folder) at ``out_dir``."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  manifest = read_manifest(out_dir)
  if manifest.get("format") == "png":
    return int(manifest["num_examples"])
  return tfds.builder_from_directory(out_dir).info.splits["train"].num_examples
