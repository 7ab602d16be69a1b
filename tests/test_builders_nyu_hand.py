"""NYU hand builder: depth decoding, hand crop, normalisation, joints, splits, bad files."""

import os

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow_datasets as tfds

from simgan_jax.data.builders import BadFileError
from simgan_jax.data.builders.prepare import prepare
from tests import fixtures_data

EVAL_JOINTS = [0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32]


def _examples(summary, split):
  source = tfds.builder_from_directory(summary.path).as_data_source(split)
  return {e["file_name"].decode(): e for e in (source[i] for i in range(len(source)))}


def _decode(path):
  rgb = np.asarray(Image.open(path)).astype(np.int64)
  return rgb[..., 1] * 256 + rgb[..., 2]


def _expected(depth, uvd, xyz, size):
  """The documented preprocessing, written out independently of the builder."""
  lo, hi = uvd[:, :2].min(0), uvd[:, :2].max(0)
  box = int(np.floor(1.4 * max(hi - lo) + 0.5))
  x0, y0 = [int(np.floor(c - (box - 1) / 2 + 0.5)) for c in (lo + hi) / 2]
  centre = uvd[EVAL_JOINTS, 2].mean()
  image = np.full((size, size), 255, np.uint8)
  for i in range(size):
    for j in range(size):
      y, x = y0 + int((i + 0.5) * box / size), x0 + int((j + 0.5) * box / size)
      d = depth[y, x] if 0 <= y < 480 and 0 <= x < 640 else 0
      if d > 0 and abs(d - centre) <= 150:
        image[i, j] = int(np.floor(((d - centre) / 150 + 1) * 63.5 + 0.5))
  joints = (uvd[EVAL_JOINTS, :2] - [x0, y0] + 0.5) * size / box - 0.5
  return image, joints, [x0, y0, box, box], centre


def test_real_and_synthetic_frames(tmp_path):
  train = fixtures_data.write_nyu(tmp_path / "nyu", "train", frames=(1, 2), seed=0)
  test = fixtures_data.write_nyu(tmp_path / "nyu", "test", frames=(3,), seed=1)
  for config in ("real", "synthetic"):
    summary = prepare("nyu_hand", tmp_path / "nyu", tmp_path / "data", builder_config=config,
                      overrides={"height": 64, "width": 64})
    assert summary.examples == {"train": 2, "test": 1}
    prefix = "synthdepth" if config == "synthetic" else "depth"
    for split, truth, frames in (("train", train, (1, 2)), ("test", test, (3,))):
      examples = _examples(summary, split)
      assert sorted(examples) == [f"{prefix}_1_{f:07d}.png" for f in frames]
      for frame in frames:
        name = f"{prefix}_1_{frame:07d}.png"
        depth = _decode(tmp_path / "nyu" / split / name)
        np.testing.assert_array_equal(depth, truth["depths"][(config, 1, frame)])
        uvd, xyz = truth["uvd"][0, frame - 1].astype(np.float64), truth["xyz"][0, frame - 1]
        image, joints, box, centre = _expected(depth, uvd, xyz, 64)
        ex = examples[name]
        np.testing.assert_array_equal(ex["image"][..., 0], image)
        np.testing.assert_allclose(ex["joints"], joints, atol=1e-3)
        np.testing.assert_allclose(ex["joints_uvd"], uvd[EVAL_JOINTS], atol=1e-3)
        np.testing.assert_allclose(ex["joints_xyz"], xyz[EVAL_JOINTS], atol=1e-3)
        np.testing.assert_allclose(ex["crop_box"], box)
        np.testing.assert_allclose(ex["centre_depth"], centre, rtol=1e-6)
        # The joints land on the hand: foreground (< 128), not background (255).
        rows, cols = np.round(ex["joints"][:, 1]).astype(int), np.round(ex["joints"][:, 0]).astype(int)
        assert (ex["image"][rows, cols, 0] < 128).sum() >= 12


def test_default_size_and_all_cameras(tmp_path):
  fixtures_data.write_nyu(tmp_path / "nyu", "train", frames=(2,), synthetic=False)
  summary = prepare("nyu_hand", tmp_path / "nyu", tmp_path / "data", overrides={"cameras": "(1, 2, 3)"})
  examples = _examples(summary, "train")
  assert sorted(examples) == [f"depth_{k}_0000002.png" for k in (1, 2, 3)]
  assert examples["depth_3_0000002.png"]["image"].shape == (224, 224, 1)
  assert int(examples["depth_3_0000002.png"]["camera"]) == 3


@pytest.mark.parametrize("defect, pattern", [
    ("small_png", r"depth_1_0000001\.png: image is 320x240 \(WxH\); expected 640x480"),
    ("corrupt_png", r"depth_1_0000001\.png: cannot decode image"),
    ("no_joint_file", r"train/joint_data\.mat: missing; expected joint_uvd and joint_xyz"),
    ("no_joint_uvd", r"train/joint_data\.mat: joint_uvd is missing; expected joint_uvd and joint_xyz"),
    ("frame_out_of_range", r"depth_1_0000009\.png: camera 1 frame 9 not in joint_data\.mat"),
    ("grey_png", r"depth_1_0000001\.png: PNG mode L; expected RGB"),
])
def test_bad_files(tmp_path, defect, pattern):
  fixtures_data.write_nyu(tmp_path, "train", frames=(1,), cameras=1, synthetic=False)
  folder = tmp_path / "train"
  if defect == "small_png":
    Image.new("RGB", (320, 240)).save(folder / "depth_1_0000001.png")
  elif defect == "corrupt_png":
    (folder / "depth_1_0000001.png").write_bytes((folder / "depth_1_0000001.png").read_bytes()[:300])
  elif defect == "no_joint_file":
    os.remove(folder / "joint_data.mat")
  elif defect == "no_joint_uvd":
    scipy.io.savemat(folder / "joint_data.mat", {"joint_xyz": np.zeros((1, 4, 36, 3))})
  elif defect == "frame_out_of_range":
    os.rename(folder / "depth_1_0000001.png", folder / "depth_1_0000009.png")
  elif defect == "grey_png":
    Image.new("L", (640, 480)).save(folder / "depth_1_0000001.png")
  with pytest.raises(BadFileError, match=pattern) as error:
    prepare("nyu_hand", tmp_path, tmp_path / "data")
  assert "\n" not in str(error.value)


def test_layout_errors_and_skips(tmp_path):
  (tmp_path / "wrong").mkdir()
  (tmp_path / "wrong" / "depth_1_0000001.png").write_bytes(b"")
  with pytest.raises(BadFileError, match=r"wrong: no train/ or test/ folder"):
    prepare("nyu_hand", tmp_path / "wrong", tmp_path / "data")
  fixtures_data.write_nyu(tmp_path / "nyu", "train", frames=(1, 2, 3), cameras=1, synthetic=False)
  Image.new("RGB", (320, 240)).save(tmp_path / "nyu" / "train" / "depth_1_0000002.png")
  summary = prepare("nyu_hand", tmp_path / "nyu", tmp_path / "data", skip_bad_files=True)
  assert summary.examples == {"train": 2}
  assert [os.path.basename(s.path) for s in summary.skipped] == ["depth_1_0000002.png"]
