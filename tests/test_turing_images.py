"""Image sets of the Turing test from data specs and folders: exact pixels, clear errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from simgan_jax.data.builders.prepare import prepare
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.turing import images
from tests import fixtures_data


def _pictures(n, shape=(35, 55)):
  rng = np.random.default_rng(1)
  return {f"{i:02d}.png": rng.integers(0, 256, shape, np.uint8) for i in range(n)}


def test_folder_keeps_first_files_by_name(tmp_path):
  pictures = _pictures(4)
  fixtures_data.write_image_folder(tmp_path / "f", pictures)
  got = images.load_images(str(tmp_path / "f"), 3)
  # Catches unsorted reading (os.walk order) and lost pixels.
  np.testing.assert_array_equal(got[..., 0], np.stack([pictures[k] for k in sorted(pictures)][:3]))


def test_folder_of_mixed_sizes_is_refused(tmp_path):
  fixtures_data.write_image_folder(tmp_path / "f", {"a.png": np.zeros((4, 4), np.uint8),
                                                     "b.png": np.zeros((4, 5), np.uint8)})
  with pytest.raises(DataError, match="different sizes"):
    images.load_images(str(tmp_path / "f"), 0)
  with pytest.raises(DataError, match="no image files"):
    os.makedirs(tmp_path / "empty")
    images.load_images(str(tmp_path / "empty"), 0)


def test_prepared_and_tfds_folder_specs(tmp_path):
  pictures = _pictures(5)
  fixtures_data.write_image_folder(tmp_path / "f", pictures)
  prepare("image_folder", tmp_path / "f", tmp_path / "data")
  by_name = images.load_images("image_folder", 4, data_dir=str(tmp_path / "data"))
  folder = str(tmp_path / "data" / "image_folder" / "35x55x1" / "1.0.0")
  by_tfds = images.load_images("tfds:" + folder, 4)
  by_path = images.load_images(folder, 4)  # a TFDS folder given as a plain path
  assert by_name.shape == (4, 35, 55, 1)
  np.testing.assert_array_equal(by_name, by_tfds)
  np.testing.assert_array_equal(by_name, by_path)
  # The builder shuffles on write: every image is one of the files, none twice.
  digests = {p.tobytes() for p in pictures.values()}
  assert {im[..., 0].tobytes() for im in by_name} <= digests and len({im.tobytes() for im in by_name}) == 4


def test_npz_float_images_become_uint8(tmp_path):
  path = str(tmp_path / "a.npz")
  np.savez(path, images=np.array([[-1.0, 1.0]], np.float32).reshape(1, 1, 2))
  np.testing.assert_array_equal(images.load_images("npz:" + path, 0)[..., 0], [[[0, 255]]])


def test_sets_of_different_shapes_are_refused(tmp_path):
  fixtures_data.write_image_folder(tmp_path / "a", _pictures(2))
  fixtures_data.write_image_folder(tmp_path / "b", _pictures(2, (36, 60)))
  with pytest.raises(DataError, match="tell them apart by size"):
    images.load_sets({"real": str(tmp_path / "a"), "refined": str(tmp_path / "b")}, 2)


def test_bad_specs():
  with pytest.raises(ConfigError, match="endless"):
    images.load_images("eyesim", 0)
  with pytest.raises(ConfigError, match="unlabelled"):
    images.load_images("eyesim_target:train", 3)


def test_display_scale():
  assert images.display_scale(35, 55) == 8  # 440 / 55
  assert images.display_scale(224, 224) == 1
  assert images.display_scale(1000, 10) == 1


def test_a_study_of_image_folders_loads_neither_jax_nor_tfds():
  """turing/images.py imports the data specs' modules inside load_images, for this."""
  code = ("import sys; import simgan_jax.turing.images as m, simgan_jax.turing.server; "
          "print(sorted({'jax', 'tensorflow_datasets'} & set(sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]", out
