"""A folder of images of any size and channel count, with optional numeric labels.

Every ``.png/.jpg/.jpeg/.bmp/.gif/.tif(f)`` file under ``manual_dir`` (sorted by
relative path) becomes one example: converted to grey (PIL's ITU-R 601 luma,
16-bit images scaled by 1/257) or RGB (grey replicated, alpha dropped), then
resized bilinearly to ``height x width`` if its size differs. Other files are
ignored and counted in the summary.

Labels (optional) come from ``labels.csv`` (a header ``filename,<name>,...``
then one row per image, relative paths, numeric values) or ``labels.json``
(``{"filename": number | [numbers] | {"name": number}}``) in ``manual_dir``;
they are stored as a float32 vector ``label`` with the names in the dataset
metadata (``label_names``), and, so that ``refine --format=png`` writes the file
back as it was, the file-name column's header and which columns held only
integers (``label_format``). With labels every image needs a row and every row an image.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds

from simgan_jax.data.builders import imaging
from simgan_jax.data.builders.base import BadFileError, ManualBuilder

LABEL_FILES = ("labels.csv", "labels.json")


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  """Output size and channel count of the image-folder builder."""

  height: int = 35
  width: int = 55
  channels: int = 1

  def __post_init__(self):
    # Says what the config is, derived configs included (not the base config's words).
    self.description = f"{self.height}x{self.width} {'grey' if self.channels == 1 else 'RGB'} images"


class ImageFolder(ManualBuilder):
  """Images of a folder, resized to ``height x width x channels`` uint8."""

  name = "image_folder"
  BUILDER_CONFIGS = [
      ImageFolderConfig(name="35x55x1"),  # eye-sized
      ImageFolderConfig(name="224x224x1", height=224, width=224),  # hand-sized
      ImageFolderConfig(name="64x64x3", height=64, width=64, channels=3),
  ]
  DESCRIPTION = "Images of a user folder, resized and converted to a fixed shape."
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "image files (PNG/JPEG, any size, grey or RGB) in manual_dir or its subfolders, "
      "optionally with labels.csv or labels.json next to them.")

  @classmethod
  def config_name(cls, config) -> str:
    return f"{config.height}x{config.width}x{config.channels}"

  def _features(self):
    c = self.builder_config
    if c.channels not in (1, 3):
      raise ValueError(f"image_folder: channels must be 1 or 3, got {c.channels}")
    return {
        "image": tfds.features.Tensor(shape=(c.height, c.width, c.channels), dtype=np.uint8),
        "label": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        "file_name": tfds.features.Text(),
    }

  def _list_items(self, manual_dir: pathlib.Path):
    images, ignored = [], []
    for path in sorted(p for p in manual_dir.rglob("*") if p.is_file()):
      relative = path.relative_to(manual_dir).as_posix()
      if path.suffix.lower() in imaging.IMAGE_EXTENSIONS:
        images.append((path, relative))
      elif relative not in LABEL_FILES:
        ignored.append(relative)
    if ignored:
      self.note(f"image_folder: ignored {len(ignored)} non-image files (e.g. {ignored[0]})")
    if not images:
      raise BadFileError(manual_dir, f"no image files; expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    self._labels, names = read_labels(manual_dir)
    if self._labels is not None:
      self.info.metadata["label_names"] = names
      self.info.metadata["label_format"] = read_label_format(manual_dir)
      present = {relative for _, relative in images}
      for name in sorted(set(self._labels) - present):
        self.skip_or_raise("train", BadFileError(manual_dir / name, "listed in the labels file but "
                                                 "no such image; expected one image per label row"))
    return {"train": images}

  def _examples(self, split, item):
    path, relative = item
    c = self.builder_config
    label = np.zeros((0,), np.float32)
    if self._labels is not None:
      if relative not in self._labels:
        raise BadFileError(path, "no row in the labels file; expected one row per image")
      label = self._labels[relative]
    image = imaging.load_image(path)
    image = imaging.resize(imaging.to_channels(image, c.channels), c.height, c.width)
    yield relative, {"image": imaging.as_hwc(image), "label": label, "file_name": relative}


def read_labels(folder: pathlib.Path) -> tuple[dict[str, np.ndarray] | None, list[str]]:
  """{relative file name: float32 vector}, label names; (None, []) without a labels file."""
  present = [folder / name for name in LABEL_FILES if (folder / name).exists()]
  if not present:
    return None, []
  if len(present) > 1:
    raise BadFileError(folder, "both labels.csv and labels.json; expected at most one labels file")
  path = present[0]
  try:
    text = path.read_text()
  except (OSError, UnicodeDecodeError) as e:
    raise BadFileError(path, f"cannot read ({e}); expected a UTF-8 labels file") from None
  return _read_csv(path, text) if path.suffix == ".csv" else _read_json(path, text)


def read_label_format(folder: pathlib.Path) -> dict:
  """{"file_column": the header of the file-name column, "integer": [per label column: every
  value written as an integer]} of the folder's labels file ({} without one)."""
  path = next((folder / name for name in LABEL_FILES if (folder / name).exists()), None)
  if path is None:
    return {}
  if path.suffix == ".json":
    values = [v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [v]
              for v in json.loads(path.read_text()).values()]
    return {"file_column": "filename",
            "integer": [all(isinstance(row[i], int) for row in values) for i in range(len(values[0]))]}
  rows = [row for row in csv.reader(io.StringIO(path.read_text())) if row and any(cell.strip() for cell in row)]
  return {"file_column": rows[0][0].strip() or "filename",
          "integer": [all(re.fullmatch(r"[+-]?\d+", row[i].strip()) for row in rows[1:])
                      for i in range(1, len(rows[0]))]}


def _read_csv(path, text):
  rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
  if not rows or len(rows[0]) < 2:
    raise BadFileError(path, "no header; expected 'filename,<label name>,...' then one row per image")
  names, labels = [n.strip() for n in rows[0][1:]], {}
  for number, row in enumerate(rows[1:], 2):
    if len(row) != len(names) + 1:
      raise BadFileError(path, f"line {number} has {len(row)} columns; expected {len(names) + 1}")
    try:
      labels[row[0].strip()] = np.array([float(v) for v in row[1:]], np.float32)
    except ValueError:
      raise BadFileError(path, f"line {number}: {row!r}; expected numbers after the file name") from None
  return labels, names


def _read_json(path, text):
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise BadFileError(path, f"cannot parse JSON ({e}); expected {{file name: numbers}}") from None
  if not isinstance(data, dict) or not data:
    raise BadFileError(path, "expected a non-empty object {file name: number | [numbers] | {name: number}}")
  labels, names = {}, None
  for key, value in data.items():
    if isinstance(value, dict):
      row_names, value = list(value), list(value.values())
    else:
      value = value if isinstance(value, list) else [value]
      row_names = [f"label_{i}" for i in range(len(value))]
    if names is None:
      names = row_names
    if row_names != names or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
      raise BadFileError(path, f"entry {key!r}: {data[key]!r}; expected numeric values named like "
                         f"the first entry {names}")
    labels[key] = np.array(value, np.float32)
  return labels, names
