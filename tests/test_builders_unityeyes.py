"""UnityEyes builder: crop pixels, landmark mapping, gaze sign convention, bad files."""

import json
import math
import os
import re

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from simgan_jax.data.builders import BadFileError
from simgan_jax.data.builders.prepare import prepare
from tests import fixtures_data


def _examples(summary, split="train"):
  source = tfds.builder_from_directory(summary.path).as_data_source(split)
  return {ex["file_name"].decode(): ex for ex in (source[i] for i in range(len(source)))}


def _grey(path):
  # ITU-R 601 luma with PIL's fixed-point rounding, computed here by hand.
  rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
  return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def _points(strings):
  xy = np.array([[float(v) for v in re.findall(r"[-\d.]+", s)[:2]] for s in strings])
  xy[:, 1] = 480 - xy[:, 1]
  return xy


def test_crop_is_exact_when_the_box_matches_the_output(tmp_path):
  fixtures_data.write_unityeyes(tmp_path / "ue", count=2)
  summary = prepare("unityeyes", tmp_path / "ue", tmp_path / "data", overrides={"box_width_px": 55})
  assert summary.examples == {"train": 2}
  for stem in ("1", "2"):
    data = json.loads((tmp_path / "ue" / f"{stem}.json").read_text())
    margin, iris = _points(data["interior_margin_2d"]), _points(data["iris_2d"])
    cx, cy = (margin[:, 0].min() + margin[:, 0].max()) / 2, (margin[:, 1].min() + margin[:, 1].max()) / 2
    x0, y0 = math.floor(cx - 27 + 0.5), math.floor(cy - 17 + 0.5)
    example = _examples(summary)[f"{stem}.jpg"]
    expected = _grey(tmp_path / "ue" / f"{stem}.jpg")[y0:y0 + 35, x0:x0 + 55]
    np.testing.assert_array_equal(example["image"][..., 0], expected)
    np.testing.assert_allclose(example["interior_margin"], margin - [x0, y0], atol=1e-3)
    np.testing.assert_allclose(example["iris_centre"], iris.mean(0) - [x0, y0], atol=1e-3)


def test_default_crop_scales_landmarks_onto_the_pupil(tmp_path):
  samples = fixtures_data.write_unityeyes(tmp_path / "ue", count=3, seed=1)
  examples = _examples(prepare("unityeyes", tmp_path / "ue", tmp_path / "data"))
  for stem, sample in samples.items():
    ex = examples[f"{stem}.jpg"]
    assert ex["image"].shape == (35, 55, 1) and ex["image"].dtype == np.uint8
    m = sample["margin"]
    box_w = math.floor(1.5 * np.ptp(m[:, 0]) + 0.5)
    box_h = math.floor(box_w * 35 / 55 + 0.5)
    x0 = math.floor((m[:, 0].min() + m[:, 0].max()) / 2 - (box_w - 1) / 2 + 0.5)
    y0 = math.floor((m[:, 1].min() + m[:, 1].max()) / 2 - (box_h - 1) / 2 + 0.5)
    expected = (sample["iris_centre"] - [x0, y0] + 0.5) * [55 / box_w, 35 / box_h] - 0.5
    np.testing.assert_allclose(ex["iris_centre"], expected, atol=1e-3)
    # The darkest pixel (the pupil drawn at the iris centre) is where the label says.
    row, col = np.unravel_index(np.argmin(ex["image"][..., 0]), (35, 55))
    assert abs(col - expected[0]) <= 1.5 and abs(row - expected[1]) <= 1.5


def test_gaze_and_head_pose_conventions(tmp_path):
  # Looking up and to the image right (Unity: y up, x right, z away from the camera).
  look = [np.array([0.3, 0.2, -0.933]), np.array([-0.2, -0.1, -0.97])]
  look = [v / np.linalg.norm(v) for v in look]
  samples = fixtures_data.write_unityeyes(tmp_path / "ue", count=2, look_vecs=look)
  data = json.loads((tmp_path / "ue" / "1.json").read_text())
  data["head_pose"] = "(350.0000, 190.0000, 0.0000)"
  (tmp_path / "ue" / "1.json").write_text(json.dumps(data))
  examples = _examples(prepare("unityeyes", tmp_path / "ue", tmp_path / "data"))
  up_right, down_left = examples["1.jpg"], examples["2.jpg"]
  x, y, z = [float(v) for v in data["eye_details"]["look_vec"].strip("()").split(",")[:3]]
  np.testing.assert_allclose(up_right["gaze"], np.array([x, -y, z]) / math.dist((x, y, z), (0, 0, 0)), atol=1e-5)
  pitch, yaw = math.asin(-up_right["gaze"][1]), math.atan2(-up_right["gaze"][0], -up_right["gaze"][2])
  np.testing.assert_allclose(up_right["pitchyaw"], [pitch, yaw], atol=1e-5)
  assert up_right["pitchyaw"][0] > 0 and up_right["pitchyaw"][1] < 0  # up: pitch > 0; image right: yaw < 0
  assert down_left["pitchyaw"][0] < 0 and down_left["pitchyaw"][1] > 0
  # The iris sits up-right in the crop exactly when the label says so.
  assert up_right["iris_centre"][0] > up_right["interior_margin"][:, 0].mean()
  assert up_right["iris_centre"][1] < up_right["interior_margin"][:, 1].mean()
  np.testing.assert_allclose(up_right["head_pose"], [-10.0, 10.0, 0.0], atol=1e-4)
  pitch, yaw, roll = samples["2"]["head_pose"]  # pitch in [0, 360), yaw around 180
  np.testing.assert_allclose(down_left["head_pose"], [pitch - 360 if pitch >= 180 else pitch, yaw - 180, roll], atol=1e-3)


def _bad_fixture(tmp_path):
  folder = tmp_path / "ue"
  fixtures_data.write_unityeyes(folder, count=5)
  os.remove(folder / "1.json")  # a render without its annotation
  data = json.loads((folder / "2.json").read_text())
  del data["eye_details"]["look_vec"]
  (folder / "2.json").write_text(json.dumps(data))
  (folder / "3.jpg").write_bytes((folder / "3.jpg").read_bytes()[:2000])  # truncated JPEG
  Image.new("RGB", (320, 240)).save(folder / "4.jpg")  # wrong render size
  return folder


@pytest.mark.parametrize("stem, pattern", [
    ("1", r"1\.json: missing; expected a \.jpg and \.json pair"),
    ("2", r"2\.json: missing key 'eye_details\.look_vec'"),
    ("3", r"3\.jpg: cannot decode image"),
    ("4", r"4\.jpg: image is 320x240 \(WxH\); expected 640x480"),
])
def test_each_bad_file_names_the_file(tmp_path, stem, pattern):
  folder = _bad_fixture(tmp_path)
  for other in {"1", "2", "3", "4"} - {stem}:  # leave only this defect
    for ext in (".jpg", ".json"):
      if (folder / f"{other}{ext}").exists():
        os.remove(folder / f"{other}{ext}")
  with pytest.raises(BadFileError, match=pattern) as error:
    prepare("unityeyes", folder, tmp_path / "data")
  assert "\n" not in str(error.value)


def test_skip_bad_files_counts_and_lists_every_skip(tmp_path):
  folder = _bad_fixture(tmp_path)
  summary = prepare("unityeyes", folder, tmp_path / "data", skip_bad_files=True)
  assert summary.examples == {"train": 1}
  assert sorted(os.path.basename(s.path) for s in summary.skipped) == ["1.json", "2.json", "3.jpg", "4.jpg"]
  metadata = json.loads((tmp_path / "data" / "unityeyes" / "35x55" / "1.0.0" / "metadata.json").read_text())
  assert len(metadata["skipped"]) == 4
  again = prepare("unityeyes", folder, tmp_path / "data", skip_bad_files=True)  # reused, not rebuilt
  assert again.skipped == summary.skipped and "already prepared" in again.notes[0]


def test_empty_folder(tmp_path):
  (tmp_path / "ue").mkdir()
  with pytest.raises(BadFileError, match=r"ue: manual_dir is empty; expected UnityEyes renders"):
    prepare("unityeyes", tmp_path / "ue", tmp_path / "data")
