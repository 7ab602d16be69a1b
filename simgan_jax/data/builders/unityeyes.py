"""UnityEyes synthetic eyes (Wood et al. 2016): ``N.jpg`` + ``N.json`` renders.

Crop (our choice, following the peers' practice in SIMGAN.md "Data"): a box
centred on the bounding box of ``interior_margin_2d`` (the eyelid margin),
``box_scale`` (1.5) times as wide as that bounding box and with the aspect of
the output (35:55), so the whole eye plus some skin is kept and the pupil moves
inside the crop as the gaze changes. GazeML uses the same 1.5 x eye width (from
the corners); the fixed 84x140 / 126x210 boxes of other peers correspond to
``box_width_px=140`` or ``210`` (a fixed box keeps the pixel scale constant
across renders). The crop is converted to grey, padded with black where it
leaves the render, and resized bilinearly to ``height x width``.

Labels: ``gaze`` in MPIIGaze camera coordinates (see ``gaze.unity_to_camera``:
only y flips), ``pitchyaw`` = (asin(-y), atan2(-x, -z)), ``head_pose`` =
UnityEyes' (pitch, yaw - 180, roll) in degrees wrapped to [-180, 180) so a
frontal head is (0, 0, 0), and the 16 interior-margin and 32 iris landmarks and
the iris centre (mean of the iris landmarks) in crop pixel coordinates.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from simgan_jax.data.builders import gaze, imaging
from simgan_jax.data.builders.base import BadFileError, ManualBuilder

NUM_INTERIOR_MARGIN = 16
NUM_IRIS = 32
_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclasses.dataclass(eq=False)
class UnityEyesConfig(tfds.core.BuilderConfig):
  """Output size and crop box of the UnityEyes builder."""

  height: int = 35
  width: int = 55
  box_scale: float = 1.5  # box width / interior-margin bounding-box width
  box_width_px: int = 0  # > 0: a fixed box width in render pixels instead
  render_height: int = 480
  render_width: int = 640


class UnityEyes(ManualBuilder):
  """UnityEyes renders cropped to the eye, grey, ``height x width``."""

  name = "unityeyes"
  BUILDER_CONFIGS = [UnityEyesConfig(name="35x55", description="35x55 grey, box 1.5 x eye width")]
  DESCRIPTION = "UnityEyes synthetic eye images, cropped to the eye region, grey."
  HOMEPAGE = "https://www.cl.cam.ac.uk/research/rainbow/projects/unityeyes/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "UnityEyes renders: N.jpg and N.json pairs (as written by the UnityEyes tool into "
      "its imgs/ folder) directly in manual_dir or in manual_dir/imgs.")

  def _features(self):
    c = self.builder_config
    return {
        "image": tfds.features.Tensor(shape=(c.height, c.width, 1), dtype=np.uint8),
        "gaze": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        "pitchyaw": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "head_pose": tfds.features.Tensor(shape=(3,), dtype=np.float32),
        "iris_centre": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "interior_margin": tfds.features.Tensor(shape=(NUM_INTERIOR_MARGIN, 2), dtype=np.float32),
        "iris": tfds.features.Tensor(shape=(NUM_IRIS, 2), dtype=np.float32),
        "file_name": tfds.features.Text(),
    }

  def _list_items(self, manual_dir: pathlib.Path):
    folder = manual_dir / "imgs" if (manual_dir / "imgs").is_dir() else manual_dir
    files = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".json")]
    stems = sorted({p.stem for p in files}, key=lambda s: (len(s), s))
    if not stems:
      raise BadFileError(folder, f"no .jpg/.json files; expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return {"train": [folder / stem for stem in stems]}

  def _examples(self, split, stem_path):
    jpg, js = stem_path.with_suffix(".jpg"), stem_path.with_suffix(".json")
    for path, other in ((jpg, js), (js, jpg)):
      if not path.exists():
        raise BadFileError(path, f"missing; expected a .jpg and .json pair next to {other.name}")
    c = self.builder_config
    annotation = parse_annotation(js, c.render_height)
    image = imaging.load_image(jpg)
    imaging.check_size(image, jpg, c.render_height, c.render_width,
                       "(render_height x render_width of the builder config)")
    grey = imaging.as_hwc(imaging.to_channels(image, 1))[..., 0]

    margin = annotation["interior_margin"]
    (x_min, y_min), (x_max, y_max) = margin.min(0), margin.max(0)
    box_w = c.box_width_px or max(1, imaging.round_half_up(c.box_scale * (x_max - x_min)))
    box_h = max(1, imaging.round_half_up(box_w * c.height / c.width))
    x0, y0 = imaging.centred_box((x_min + x_max) / 2, (y_min + y_max) / 2, box_w, box_h)
    crop = imaging.crop_padded(grey, x0, y0, box_w, box_h)
    crop = imaging.as_hwc(imaging.resize(Image.fromarray(crop, "L"), c.height, c.width))

    def to_crop(points):
      return imaging.to_crop_coords(points, x0, y0, box_w, box_h, c.width, c.height)

    gaze_vec = gaze.unity_to_camera(annotation["look_vec"])
    yield stem_path.name, {
        "image": crop,
        "gaze": gaze_vec.astype(np.float32),
        "pitchyaw": gaze.pitchyaw(gaze_vec),
        "head_pose": annotation["head_pose"],
        "iris_centre": to_crop(annotation["iris"].mean(0, keepdims=True))[0],
        "interior_margin": to_crop(margin),
        "iris": to_crop(annotation["iris"]),
        "file_name": jpg.name,
    }


def parse_annotation(path, render_height: int) -> dict[str, np.ndarray]:
  """Reads a UnityEyes JSON into image-coordinate landmarks, look_vec and head pose."""
  try:
    data = json.loads(epath.Path(path).read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise BadFileError(path, f"cannot parse JSON ({e}); expected a UnityEyes annotation") from None

  def get(key):
    value = data
    for part in key.split("."):
      if not isinstance(value, dict) or part not in value:
        raise BadFileError(path, f"missing key {key!r}; expected a UnityEyes JSON with "
                           "interior_margin_2d, iris_2d, head_pose and eye_details.look_vec")
      value = value[part]
    return value

  def numbers(key, text, count):
    values = [float(v) for v in re.findall(_FLOAT, str(text))]
    if len(values) < count:
      raise BadFileError(path, f"{key}: cannot read {text!r}; expected a string like '(x, y, z)'")
    return values[:count]

  def points(key, expected):
    value = get(key)
    if not isinstance(value, list) or len(value) != expected:
      count = len(value) if isinstance(value, list) else type(value).__name__
      raise BadFileError(path, f"{key} has {count} points; expected {expected}")
    xy = np.array([numbers(key, p, 2) for p in value], np.float64)
    xy[:, 1] = render_height - xy[:, 1]  # UnityEyes y is up; image y is down
    return xy

  pitch, yaw, roll = numbers("head_pose", get("head_pose"), 3)
  wrap = lambda a: (a + 180.0) % 360.0 - 180.0
  return {
      "interior_margin": points("interior_margin_2d", NUM_INTERIOR_MARGIN),
      "iris": points("iris_2d", NUM_IRIS),
      "look_vec": np.array(numbers("eye_details.look_vec", get("eye_details.look_vec"), 3)),
      # UnityEyes' camera faces the head, so a frontal head has yaw 180 (GazeML subtracts it too).
      "head_pose": np.array([wrap(pitch), wrap(yaw - 180.0), wrap(roll)], np.float32),
  }
