"""MPIIGaze real eyes (Zhang et al. CVPR 2015), from ``Data/Normalized/pXX/dayYY.mat``.

Each ``.mat`` (MATLAB v5) holds a struct ``data`` with ``left`` and ``right``,
each with ``image`` (N x 36 x 60 uint8), ``gaze`` (N x 3, normalised camera
coordinates) and ``pose`` (N x 3 head rotation vectors), plus ``filenames``
(N names like ``0001.jpg``). Both eyes become examples.

* Right eyes are mirrored horizontally when ``flip_right`` (so all eyes look like
  left eyes, as UnityEyes renders them): gaze x negates and the head rotation
  vector becomes (r_x, -r_y, -r_z) (``gaze.mirror_rotation_vector``).
* 36x60 -> ``height x width``: ``resize_mode="crop"`` keeps rows ``[36-H:]`` and
  columns ``[c:c+W]`` with ``c = (60 - W + 1) // 2``, i.e. ``[1:, 3:-2]`` for
  35x55, after mirroring (no interpolation, pixel scale unchanged);
  ``resize_mode="resize"`` resizes bilinearly (keeps the whole eye, changes the
  aspect slightly).
* Splits: if ``Evaluation Subset/sample list for eye image/pXX.txt`` exist, ``test``
  is exactly the listed (day/file, side) samples (the official 45,000) and
  ``train`` all other samples, so refiner training never sees test eyes;
  otherwise ``test`` holds the persons in ``test_persons`` (default p12, p13,
  p14: 3 of 15) and ``train`` the rest.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np
from PIL import Image
import scipy.io
import tensorflow_datasets as tfds

from simgan_jax.data.builders import gaze, imaging
from simgan_jax.data.builders.base import BadFileError, ManualBuilder

SOURCE_HEIGHT, SOURCE_WIDTH = 36, 60
EVAL_LIST_DIR = "Evaluation Subset/sample list for eye image"
SIDES = ("left", "right")
_EXPECTED_MAT = ("a MATLAB struct 'data' with fields left and right, each with image (N x 36 x 60 "
                 "uint8), gaze (N x 3) and pose (N x 3), plus a cell array 'filenames' (N)")


@dataclasses.dataclass(eq=False)
class MPIIGazeConfig(tfds.core.BuilderConfig):
  """Output size, size mode, mirroring and fallback split of the MPIIGaze builder."""

  height: int = 35
  width: int = 55
  resize_mode: str = "crop"  # "crop" or "resize"
  flip_right: bool = True
  test_persons: tuple[int, ...] = (12, 13, 14)  # only without evaluation lists


class MPIIGaze(ManualBuilder):
  """MPIIGaze normalised eye images, both eyes, ``height x width`` grey."""

  name = "mpiigaze"
  BUILDER_CONFIGS = [
      MPIIGazeConfig(name="crop", description="35x55 by cropping [1:, 3:-2]; right eyes mirrored"),
      MPIIGazeConfig(name="resize", resize_mode="resize",
                     description="35x55 by bilinear resize; right eyes mirrored"),
  ]
  DESCRIPTION = "MPIIGaze normalised eye images with gaze and head pose."
  HOMEPAGE = ("https://www.mpi-inf.mpg.de/departments/computer-vision-and-machine-learning/research/"
              "gaze-based-human-computer-interaction/appearance-based-gaze-estimation-in-the-wild")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "the extracted MPIIGaze archive: Data/Normalized/pXX/dayYY.mat and optionally "
      f"'{EVAL_LIST_DIR}/pXX.txt' (manual_dir may also be the folder holding MPIIGaze/).")

  def _features(self):
    c = self.builder_config
    return {
        "image": tfds.features.Tensor(shape=(c.height, c.width, 1), dtype=np.uint8),
        "gaze": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        "pitchyaw": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "head_pose": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        "person": tfds.features.Scalar(dtype=np.int32),
        "day": tfds.features.Scalar(dtype=np.int32),
        "eye_side": tfds.features.Scalar(dtype=np.int32, doc="0 left, 1 right (before mirroring)"),
        "file_name": tfds.features.Text(doc="dayYY/NNNN.jpg"),
    }

  def _list_items(self, manual_dir: pathlib.Path):
    c = self.builder_config
    if c.resize_mode not in ("crop", "resize"):
      raise ValueError(f"mpiigaze: resize_mode must be 'crop' or 'resize', got {c.resize_mode!r}")
    if c.resize_mode == "crop" and (c.height > SOURCE_HEIGHT or c.width > SOURCE_WIDTH):
      raise ValueError(f"mpiigaze: cannot crop {c.height}x{c.width} from 36x60; use resize_mode='resize'")
    root = manual_dir / "MPIIGaze" if (manual_dir / "MPIIGaze" / "Data").is_dir() else manual_dir
    normalized = root / "Data" / "Normalized"
    if not normalized.is_dir():
      raise BadFileError(normalized, f"folder missing; expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    mats = []
    for path in sorted(normalized.rglob("*.mat")):
      if re.fullmatch(r"p\d\d/day\d\d\.mat", path.relative_to(normalized).as_posix()):
        mats.append(path)
      else:
        self.skip_or_raise("train", BadFileError(path, "misplaced; expected Data/Normalized/pXX/dayYY.mat"))
    if not mats:
      raise BadFileError(normalized, "no pXX/dayYY.mat files; expected Data/Normalized/pXX/dayYY.mat")
    persons = sorted({p.parent.name for p in mats})
    self._eval = self._read_eval_lists(root / EVAL_LIST_DIR, persons)
    self._matched: set[tuple[str, str, str]] = set()
    if self._eval is None:
      test = [p for p in persons if int(p[1:]) in c.test_persons]
      self.note(f"mpiigaze: no '{EVAL_LIST_DIR}' lists; per-person split, test persons: "
                f"{', '.join(test) or 'none present'}")
    else:
      listed = sorted({person for person, _, _ in self._eval})
      self.note(f"mpiigaze: test split = the {len(self._eval)} samples of the evaluation "
                f"subset lists ({', '.join(listed)})")
    if self._eval is not None:
      return {"train": mats, "test": mats}
    is_test = [int(p[1:]) in c.test_persons for p in persons]
    # TFDS cannot write an empty split, so a split without persons is left out.
    return {split: mats for split, present in (("train", not all(is_test)), ("test", any(is_test)))
            if present}

  def _read_eval_lists(self, folder: pathlib.Path, persons: list[str]):
    """{(person, 'dayYY/NNNN.jpg', side)} from the official lists, or None if absent."""
    if not folder.is_dir():
      return None
    samples = set()
    for person in persons:
      path = folder / f"{person}.txt"
      if not path.exists():
        raise BadFileError(path, f"missing; expected one evaluation list per person in {folder}")
      for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
          continue
        match = re.fullmatch(r"\s*(day\d\d/\S+)\s+(left|right)\s*", line)
        if not match:
          raise BadFileError(path, f"line {number}: {line!r}; expected 'dayXX/NNNN.jpg left|right'")
        samples.add((person, match[1], match[2]))
    return samples

  def _examples(self, split, path):
    c = self.builder_config
    person, day = path.parent.name, path.stem
    sides, names = load_day(path)
    for side in SIDES:
      images, gazes, poses = sides[side]
      for i, file_name in enumerate(names):
        sample = (person, f"{day}/{file_name}", side)
        in_test = (sample in self._eval) if self._eval is not None else int(person[1:]) in c.test_persons
        if in_test != (split == "test"):
          continue
        if split == "test":
          self._matched.add(sample)
        image, gaze_vec, pose = images[i], gazes[i].astype(np.float64), poses[i].astype(np.float64)
        if side == "right" and c.flip_right:
          image = image[:, ::-1]
          gaze_vec, pose = gaze.mirror_gaze(gaze_vec), gaze.mirror_rotation_vector(pose)
        yield f"{person}/{day}/{file_name}/{side}", {
            "image": self._resize(image),
            "gaze": gaze_vec.astype(np.float32),
            "pitchyaw": gaze.pitchyaw(gaze_vec),
            "head_pose": pose.astype(np.float32),
            "person": int(person[1:]),
            "day": int(day[3:]),
            "eye_side": SIDES.index(side),
            "file_name": f"{day}/{file_name}",
        }

  def _finish(self, split):
    if split != "test" or self._eval is None:
      return
    missing = sorted(self._eval - self._matched)
    if missing:
      person, name, side = missing[0]
      raise BadFileError(f"{EVAL_LIST_DIR}/{person}.txt",
                         f"{len(missing)} listed samples not found in the .mat files (first: "
                         f"{name} {side}); expected each in Data/Normalized/{person}/<day>.mat")

  def _resize(self, image_HW: np.ndarray) -> np.ndarray:
    c = self.builder_config
    if c.resize_mode == "crop":
      left = (SOURCE_WIDTH - c.width + 1) // 2
      out = image_HW[SOURCE_HEIGHT - c.height:, left:left + c.width]
    else:
      out = np.asarray(imaging.resize(Image.fromarray(np.ascontiguousarray(image_HW), "L"),
                                      c.height, c.width))
    return np.ascontiguousarray(out)[..., None]


def load_day(path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[str]]:
  """Reads one ``dayYY.mat``: {side: (images N36x60, gaze N3, pose N3)}, file names."""
  try:
    mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=False)
  except Exception as e:  # scipy raises many types for corrupt files
    raise BadFileError(path, f"cannot read MATLAB file ({type(e).__name__}: {e}); "
                       f"expected {_EXPECTED_MAT}") from None
  for key in ("data", "filenames"):
    if key not in mat:
      raise BadFileError(path, f"no variable {key!r}; expected {_EXPECTED_MAT}")
  data = _unwrap(mat["data"])
  names = [_string(n) for n in np.asarray(mat["filenames"], dtype=object).reshape(-1)]
  sides = {}
  for side in SIDES:
    struct = _unwrap(getattr(data, side, None))
    arrays = []
    for field, tail in (("image", (SOURCE_HEIGHT, SOURCE_WIDTH)), ("gaze", (3,)), ("pose", (3,))):
      value = getattr(struct, field, None)
      if value is None:
        raise BadFileError(path, f"no field data.{side}.{field}; expected {_EXPECTED_MAT}")
      value = np.asarray(value)
      if value.ndim == len(tail):  # MATLAB stores a single sample without its N axis
        value = value[None]
      if value.shape != (len(names),) + tail:
        raise BadFileError(path, f"data.{side}.{field} has shape {value.shape}; expected "
                           f"{(len(names),) + tail} (N = {len(names)} filenames)")
      if field == "image" and value.dtype != np.uint8:
        raise BadFileError(path, f"data.{side}.image has dtype {value.dtype}; expected uint8")
      arrays.append(value)
    sides[side] = tuple(arrays)
  return sides, names


def _unwrap(value):
  """MATLAB structs load as 1x1 object arrays; return the struct itself."""
  while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
    value = value.reshape(-1)[0]
  return value


def _string(value) -> str:
  value = _unwrap(value)
  if isinstance(value, np.ndarray):
    value = value.reshape(-1)[0] if value.size else ""
  return str(value).strip().split("/")[-1]
