"""MPIIGaze builder: .mat layout, crop/resize, right-eye mirroring, splits, bad files."""

import math
import os

import numpy as np
from PIL import Image
import pytest
from scipy.spatial.transform import Rotation
import tensorflow_datasets as tfds

from simgan_jax.data.builders import BadFileError
from simgan_jax.data.builders.prepare import prepare
from tests import fixtures_data

EVAL = {0: ["day01/0001.jpg left", "day02/0003.jpg right"], 1: ["day01/0002.jpg left"]}


def _examples(summary, split):
  source = tfds.builder_from_directory(summary.path).as_data_source(split)
  examples = (source[i] for i in range(len(source)))
  return {(int(e["person"]), e["file_name"].decode(), int(e["eye_side"])): e for e in examples}


def test_evaluation_subset_split_crop_and_mirroring(tmp_path):
  truth = fixtures_data.write_mpiigaze(tmp_path / "MPIIGaze", eval_lists=EVAL)
  summary = prepare("mpiigaze", tmp_path, tmp_path / "data")  # manual_dir holds MPIIGaze/
  assert summary.examples == {"test": 3, "train": 3 * 4 * 2 - 3}
  test, train = _examples(summary, "test"), _examples(summary, "train")
  assert set(test) == {(0, "day01/0001.jpg", 0), (0, "day02/0003.jpg", 1), (1, "day01/0002.jpg", 0)}
  assert not set(test) & set(train)
  for (person, name, side), ex in {**test, **train}.items():
    day, names = truth[(person, int(name[3:5]))]
    i = names.index(name.split("/")[1])
    arrays = day["left" if side == 0 else "right"]
    source, gaze, pose = arrays["image"][i], arrays["gaze"][i], arrays["pose"][i]
    expected = np.empty((35, 55), np.uint8)
    for r in range(35):
      for c in range(55):  # crop rows 1.., columns 3..57 of the (mirrored) 36x60 image
        expected[r, c] = source[r + 1, c + 3] if side == 0 else source[r + 1, 59 - (c + 3)]
    np.testing.assert_array_equal(ex["image"][..., 0], expected)
    sign = np.array([1.0, 1.0, 1.0]) if side == 0 else np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(ex["gaze"], gaze * sign, atol=1e-6)
    g = gaze * sign
    np.testing.assert_allclose(ex["pitchyaw"], [math.asin(-g[1]), math.atan2(-g[0], -g[2])], atol=1e-5)
    # Mirrored head pose: M R M with M = diag(-1, 1, 1), checked with scipy's rotations.
    mirror = np.diag([-1.0, 1.0, 1.0])
    rotation = Rotation.from_rotvec(pose).as_matrix()
    expected_rotation = rotation if side == 0 else mirror @ rotation @ mirror
    np.testing.assert_allclose(Rotation.from_rotvec(ex["head_pose"]).as_matrix(), expected_rotation, atol=1e-5)
    assert int(ex["day"]) == int(name[3:5])


def test_resize_mode_and_no_flip(tmp_path):
  truth = fixtures_data.write_mpiigaze(tmp_path, days={3: [7]}, count=2)
  summary = prepare("mpiigaze", tmp_path, tmp_path / "data", builder_config="resize",
                    overrides={"flip_right": False, "test_persons": (3,)})
  assert summary.builder_config == "resize_flip_rightfalse_test_persons3"
  day, _ = truth[(3, 7)]
  for (_, name, side), ex in _examples(summary, "test").items():
    arrays = day["left" if side == 0 else "right"]
    i = int(name[-8:-4]) - 1
    expected = np.asarray(Image.fromarray(arrays["image"][i]).resize((55, 35), Image.BILINEAR))
    np.testing.assert_array_equal(ex["image"][..., 0], expected)
    np.testing.assert_allclose(ex["gaze"], arrays["gaze"][i], atol=1e-6)  # not mirrored


def test_per_person_split_without_lists_and_single_sample_days(tmp_path):
  fixtures_data.write_mpiigaze(tmp_path, days={0: [1], 13: [2]}, count=1)
  summary = prepare("mpiigaze", tmp_path, tmp_path / "data")
  assert summary.examples == {"train": 2, "test": 2}
  assert {p for p, _, _ in _examples(summary, "test")} == {13}
  assert any("per-person split, test persons: p13" in note for note in summary.notes)


def _write_bad(root, kind):
  normalized = root / "Data" / "Normalized"
  rng = np.random.default_rng(0)
  day, names = fixtures_data.mpiigaze_day(rng, 2)
  if kind == "no_data":
    import scipy.io
    os.makedirs(normalized / "p00")
    scipy.io.savemat(normalized / "p00" / "day01.mat", {"filenames": np.array(names, dtype=object)})
  elif kind == "wrong_size":
    day["left"]["image"] = np.zeros((2, 36, 61), np.uint8)
    fixtures_data.write_mpiigaze_day(str(normalized / "p00" / "day01.mat"), day, names)
  elif kind == "corrupt":
    os.makedirs(normalized / "p00")
    (normalized / "p00" / "day01.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
  elif kind == "misplaced":
    fixtures_data.write_mpiigaze_day(str(normalized / "day01.mat"), day, names)
  return normalized


@pytest.mark.parametrize("kind, pattern", [
    ("no_data", r"p00/day01\.mat: no variable 'data'; expected a MATLAB struct 'data'"),
    ("wrong_size", r"p00/day01\.mat: data\.left\.image has shape \(2, 36, 61\); expected \(2, 36, 60\)"),
    ("corrupt", r"p00/day01\.mat: cannot read MATLAB file"),
    ("misplaced", r"Normalized/day01\.mat: misplaced; expected Data/Normalized/pXX/dayYY\.mat"),
])
def test_bad_mat_files(tmp_path, kind, pattern):
  _write_bad(tmp_path, kind)
  with pytest.raises(BadFileError, match=pattern) as error:
    prepare("mpiigaze", tmp_path, tmp_path / "data")
  assert "\n" not in str(error.value)


def test_missing_layout_and_bad_lists(tmp_path):
  (tmp_path / "x").mkdir()
  (tmp_path / "x" / "readme.txt").write_text("hi")
  with pytest.raises(BadFileError, match=r"Data/Normalized: folder missing; expected the extracted MPIIGaze"):
    prepare("mpiigaze", tmp_path / "x", tmp_path / "data")
  fixtures_data.write_mpiigaze(tmp_path / "m", days={0: [1], 1: [1]}, eval_lists={0: ["day01/0009.jpg left"]})
  with pytest.raises(BadFileError, match=r"p01\.txt: missing; expected one evaluation list per person"):
    prepare("mpiigaze", tmp_path / "m", tmp_path / "data")
  fixtures_data.write_mpiigaze(tmp_path / "m", days={0: [1], 1: [1]},
                               eval_lists={0: ["day01/0009.jpg left"], 1: ["day01/0001.jpg right"]})
  with pytest.raises(BadFileError, match=r"p00\.txt: 1 listed samples not found .* day01/0009\.jpg left"):
    prepare("mpiigaze", tmp_path / "m", tmp_path / "data")


def test_skip_bad_files(tmp_path):
  normalized = _write_bad(tmp_path, "wrong_size")
  fixtures_data.write_mpiigaze_day(str(normalized / "p00" / "day02.mat"), *fixtures_data.mpiigaze_day(np.random.default_rng(1), 3))
  _write_bad(tmp_path, "misplaced")
  summary = prepare("mpiigaze", tmp_path, tmp_path / "data", skip_bad_files=True)
  assert summary.examples == {"train": 6}
  assert sorted(os.path.relpath(s.path, normalized) for s in summary.skipped) == ["day01.mat", "p00/day01.mat"]
