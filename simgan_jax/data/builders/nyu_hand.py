"""NYU hand pose depth (Tompson et al. 2014), real and synthetic, as shipped.

``{train,test}/depth_K_NNNNNNN.png`` (real, camera K, frame N, 1-based) or
``synthdepth_K_NNNNNNN.png`` (rendered), with ``{train,test}/joint_data.mat``
(``joint_uvd`` and ``joint_xyz``, [cameras, frames, 36, 3]). Depth in mm is
``(G << 8) | B`` of the RGB PNG; 0 means no measurement.

Preprocessing (SIMGAN.md: "crop, resize 224x224, background 0, foreground
depth - 2000"; the exact rule is ours):

* Crop: a box centred on the bounding box of all 36 joints' (u, v), ``box_scale``
  (1.4) times its larger side (so 20% margin each side), with the output's
  aspect; outside the frame counts as no measurement.
* Resize to ``height x width`` by nearest neighbour (source pixel
  ``floor((i + 0.5) * box / out)``): depth must not be blended across the hand's
  silhouette.
* Hand centre depth ``d_c`` = mean depth of the 14 evaluated joints.
  Foreground = measured pixels with ``|d - d_c| <= depth_range_mm`` (150 mm);
  everything else (no data, the body behind, the wall) is background.
* Values: the paper puts the background at 0 and the hand at depth - 2000, i.e.
  far below it. We keep that ordering and gap in uint8: foreground
  ``round(((d - d_c) / depth_range_mm + 1) * 63.5)`` in [0, 127] (-1 .. 0 after
  the usual uint8 -> [-1, 1] map; near is dark), background 255 (+1).

Labels: the 14 evaluated joints (indices 0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27,
30, 31, 32) as ``joints`` (crop pixel coordinates, pixel centres at integers),
``joints_uvd`` and ``joints_xyz`` (original), ``centre_depth`` and ``crop_box``
(x0, y0, width, height in frame pixels) to map predictions back.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

from etils import epath
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from simgan_jax.data.builders import imaging
from simgan_jax.data.builders.base import BadFileError, ManualBuilder

EVAL_JOINTS = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
NUM_JOINTS = 36
FRAME_HEIGHT, FRAME_WIDTH = 480, 640
BACKGROUND = 255
_EXPECTED_MAT = "joint_uvd and joint_xyz arrays of shape [cameras, frames, 36, 3]"


@dataclasses.dataclass(eq=False)
class NYUHandConfig(tfds.core.BuilderConfig):
  """Real or synthetic frames, cameras, output size and depth window."""

  synthetic: bool = False
  cameras: tuple[int, ...] = (1,)  # camera 1 is the frontal Kinect used for evaluation
  height: int = 224
  width: int = 224
  box_scale: float = 1.4
  depth_range_mm: float = 150.0


class NYUHand(ManualBuilder):
  """NYU hand depth frames cropped to the hand, ``height x width x 1`` uint8."""

  name = "nyu_hand"
  BUILDER_CONFIGS = [
      NYUHandConfig(name="real", description="real Kinect depth, camera 1, 224x224"),
      NYUHandConfig(name="synthetic", synthetic=True, description="rendered depth, camera 1, 224x224"),
  ]
  DESCRIPTION = "NYU hand pose dataset depth frames with 14 evaluated joints."
  HOMEPAGE = "https://jonathantompson.github.io/NYU_Hand_Pose_Dataset.htm"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "the extracted NYU hand pose dataset: train/ and/or test/ folders, each with "
      "depth_K_NNNNNNN.png, synthdepth_K_NNNNNNN.png and joint_data.mat.")

  def _features(self):
    c = self.builder_config
    return {
        "image": tfds.features.Tensor(shape=(c.height, c.width, 1), dtype=np.uint8,
                                      encoding=tfds.features.Encoding.ZLIB),
        "joints": tfds.features.Tensor(shape=(len(EVAL_JOINTS), 2), dtype=np.float32),
        "joints_uvd": tfds.features.Tensor(shape=(len(EVAL_JOINTS), 3), dtype=np.float32),
        "joints_xyz": tfds.features.Tensor(shape=(len(EVAL_JOINTS), 3), dtype=np.float32),
        "centre_depth": tfds.features.Scalar(dtype=np.float32),
        "crop_box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        "camera": tfds.features.Scalar(dtype=np.int32),
        "frame": tfds.features.Scalar(dtype=np.int32),
        "file_name": tfds.features.Text(),
    }

  def _list_items(self, manual_dir: pathlib.Path):
    c = self.builder_config
    prefix = "synthdepth" if c.synthetic else "depth"
    splits, self._joints = {}, {}
    for split in ("train", "test"):
      folder = manual_dir / split
      if not folder.is_dir():
        continue
      items, other_cameras = [], 0
      for path in sorted(folder.iterdir()):
        match = re.fullmatch(prefix + r"_(\d+)_(\d+)\.png", path.name)
        if match and int(match[1]) in c.cameras:
          items.append((path, int(match[1]), int(match[2])))
        elif match:
          other_cameras += 1
      if other_cameras:
        self.note(f"nyu_hand {split}: left out {other_cameras} frames of cameras not in {c.cameras}")
      if not items:
        raise BadFileError(folder, f"no {prefix}_K_NNNNNNN.png files of cameras {c.cameras}; "
                           f"expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
      self._joints[split] = load_joints(folder / "joint_data.mat")
      splits[split] = items
    if not splits:
      raise BadFileError(manual_dir, f"no train/ or test/ folder; expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return splits

  def _examples(self, split, item):
    path, camera, frame = item
    c = self.builder_config
    uvd_all, xyz_all = self._joints[split]
    if not (1 <= camera <= uvd_all.shape[0] and 1 <= frame <= uvd_all.shape[1]):
      raise BadFileError(path, f"camera {camera} frame {frame} not in joint_data.mat (shape "
                         f"{uvd_all.shape}); expected 1-based indices within it")
    uvd, xyz = uvd_all[camera - 1, frame - 1], xyz_all[camera - 1, frame - 1]
    depth = read_depth(path)

    (u_min, v_min), (u_max, v_max) = uvd[:, :2].min(0), uvd[:, :2].max(0)
    extent = max(u_max - u_min, (v_max - v_min) * c.width / c.height)  # in output-aspect units
    box_w = max(1, imaging.round_half_up(c.box_scale * extent))
    box_h = max(1, imaging.round_half_up(box_w * c.height / c.width))
    x0, y0 = imaging.centred_box((u_min + u_max) / 2, (v_min + v_max) / 2, box_w, box_h)
    crop = imaging.crop_padded(depth, x0, y0, box_w, box_h)
    rows = np.floor((np.arange(c.height) + 0.5) * box_h / c.height).astype(int)
    cols = np.floor((np.arange(c.width) + 0.5) * box_w / c.width).astype(int)
    crop = crop[rows][:, cols].astype(np.float64)

    centre = float(uvd[list(EVAL_JOINTS), 2].mean())
    offset = (crop - centre) / c.depth_range_mm
    foreground = (crop > 0) & (np.abs(offset) <= 1.0)
    image = np.where(foreground, np.floor((offset + 1.0) * 63.5 + 0.5), BACKGROUND).astype(np.uint8)
    joints_uvd = uvd[list(EVAL_JOINTS)]
    yield f"{path.stem}", {
        "image": image[..., None],
        "joints": imaging.to_crop_coords(joints_uvd[:, :2], x0, y0, box_w, box_h, c.width, c.height),
        "joints_uvd": joints_uvd.astype(np.float32),
        "joints_xyz": xyz[list(EVAL_JOINTS)].astype(np.float32),
        "centre_depth": centre,
        "crop_box": np.array([x0, y0, box_w, box_h], np.float32),
        "camera": camera,
        "frame": frame,
        "file_name": path.name,
    }


def read_depth(path) -> np.ndarray:
  """Depth in mm, uint16 [480, 640], from an NYU RGB PNG: (G << 8) | B."""
  image = imaging.load_image(path)
  imaging.check_size(image, path, FRAME_HEIGHT, FRAME_WIDTH, "(an NYU depth frame)")
  if image.mode not in ("RGB", "RGBA"):
    raise BadFileError(path, f"PNG mode {image.mode}; expected RGB with depth in G (high byte) "
                       "and B (low byte)")
  rgb = np.asarray(image)
  return (rgb[..., 1].astype(np.uint16) << 8) | rgb[..., 2].astype(np.uint16)


def load_joints(path) -> tuple[np.ndarray, np.ndarray]:
  """(joint_uvd, joint_xyz) from ``joint_data.mat``, each [cameras, frames, 36, 3]."""
  if not epath.Path(path).exists():
    raise BadFileError(path, f"missing; expected {_EXPECTED_MAT} next to the depth frames")
  try:
    mat = scipy.io.loadmat(str(path), variable_names=["joint_uvd", "joint_xyz"])
  except Exception as e:  # scipy raises many types for corrupt files
    raise BadFileError(path, f"cannot read MATLAB file ({type(e).__name__}: {e}); "
                       f"expected {_EXPECTED_MAT}") from None
  arrays = []
  for key in ("joint_uvd", "joint_xyz"):
    value = np.asarray(mat.get(key, np.zeros((0,))))
    if key not in mat or value.ndim != 4 or value.shape[2:] != (NUM_JOINTS, 3):
      shape = value.shape if key in mat else "missing"
      raise BadFileError(path, f"{key} is {shape}; expected {_EXPECTED_MAT}")
    arrays.append(value.astype(np.float32))
  return arrays[0], arrays[1]
