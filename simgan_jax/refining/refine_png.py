"""The PNG output of ``refine``: one PNG per image under the input's names, and ``labels.csv``.

``labels.csv`` reads back with ``launch/prepare_data.py --dataset=image_folder``: the
header's first column keeps the input's name for it (``file``, ``filename``, ...), and
label columns the input wrote as integers are written as integers again.
"""

from __future__ import annotations

import csv
import os
import pathlib
from typing import Any

import numpy as np

from simgan_jax import images as images_lib

LABELS_CSV = "labels.csv"


def png_names(file_names, num: int) -> list[str]:
  """Names of the ``num`` output files: the input's own relative ``file_names`` with the
  suffix ``.png`` when they are unique and stay inside the folder, else ``<index>.png``
  (zero-padded to six digits or more)."""
  if file_names is not None:
    names = [pathlib.PurePosixPath(str(n)).with_suffix(".png").as_posix() for n in file_names]
    inside = all(n and not n.startswith("/") and ".." not in pathlib.PurePosixPath(n).parts for n in names)
    if inside and len(set(names)) == len(names) == num:
      return names
  width = max(6, len(str(max(num - 1, 0))))
  return [f"{i:0{width}d}.png" for i in range(num)]


def _csv_value(value, integer: bool = False) -> str:
  """The shortest text that reads back as the same number in its dtype; ``integer``: the
  input wrote this column as integers (stored as float32 by image_folder), so ``8`` not ``8.0``."""
  if isinstance(value, (np.floating, float)) and not (integer and float(value).is_integer()):
    return str(value)
  return str(int(value))


def _is_integer(label_format: dict[str, Any], key: str, pos: int, label_names: list[str] | None) -> bool:
  """Whether the input wrote the column (``key``, ``pos``) as integers."""
  flags = label_format.get("integer") or []
  return key == "label/label" and label_names is not None and 0 <= pos < len(flags) and flags[pos]


def _label_columns(chunk: dict[str, np.ndarray], label_names: list[str] | None) -> list[tuple[str, str, int]]:
  """(CSV column name, label key, flat position) for every label value of an example."""
  columns = []
  for key in sorted(k for k in chunk if k.startswith("label/")):
    name, size = key.removeprefix("label/"), int(np.prod(chunk[key].shape[1:], dtype=int))
    if chunk[key].ndim == 1:
      columns.append((name, key, -1))
      continue
    names = label_names if name == "label" and label_names and len(label_names) == size else [
        f"{name}_{i}" for i in range(size)]
    columns.extend((names[i], key, i) for i in range(size))
  return columns


def write_png_folder(out_dir: str, chunk_paths: list[str], label_names: list[str] | None,
                     label_format: dict[str, Any] | None = None) -> int:
  """Writes the chunks (npz files) as PNG files and ``labels.csv`` into ``out_dir``; returns
  the count. ``label_format`` (an image_folder set's metadata): the input's file-name
  column header and which label columns held integers, so both read back as written."""
  label_format = label_format or {}
  file_names, num = [], 0
  for chunk_path in chunk_paths:  # names are decided over the whole set (uniqueness)
    with np.load(chunk_path) as f:
      num += len(f["index"])
      file_names.extend(f["file_name"] if "file_name" in f.files else [])
  all_names = png_names(file_names if len(file_names) == num else None, num)
  rows, header, count = [], None, 0
  for chunk_path in chunk_paths:
    with np.load(chunk_path) as f:
      chunk = {k: f[k] for k in f.files}
    columns = _label_columns(chunk, label_names)
    integer = [bool(_is_integer(label_format, key, pos, label_names)) for _, key, pos in columns]
    header = header or [label_format.get("file_column") or "filename"] + [name for name, _, _ in columns]
    for i, index in enumerate(chunk["index"]):
      name = all_names[int(index)]
      path = os.path.join(out_dir, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      image = chunk["image"][i]
      images_lib.save_png(path, image[..., 0] if image.shape[-1] == 1 else image)
      rows.append([name] + [_csv_value(chunk[key][i] if pos < 0 else chunk[key][i].reshape(-1)[pos], whole)
                            for (_, key, pos), whole in zip(columns, integer)])
      count += 1
  if header and len(header) > 1:
    tmp = os.path.join(out_dir, f".{LABELS_CSV}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(header)
      writer.writerows(rows)
    os.replace(tmp, os.path.join(out_dir, LABELS_CSV))
  return count
