"""Image-folder builder: channels, sizes, labels from CSV/JSON, bad files."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from simgan_jax.data.builders import BadFileError
from simgan_jax.data.builders.prepare import format_summary, prepare
from tests import fixtures_data


def _examples(summary):
  source = tfds.builder_from_directory(summary.path).as_data_source("train")
  return {e["file_name"].decode(): e for e in (source[i] for i in range(len(source)))}


def _luma(rgb):
  rgb = rgb.astype(np.int64)
  return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


@pytest.fixture
def mixed_folder(tmp_path):
  rng = np.random.default_rng(0)
  images = {
      "grey.png": rng.integers(0, 256, (35, 55), dtype=np.uint8),
      "sub/rgb.png": rng.integers(0, 256, (35, 55, 3), dtype=np.uint8),
      "big.png": rng.integers(0, 256, (70, 90, 3), dtype=np.uint8),
  }
  fixtures_data.write_image_folder(tmp_path / "f", images)
  # 16-bit grey: scaled by 1/257, not clipped.
  Image.fromarray(np.full((35, 55), 257 * 200, np.uint16)).save(tmp_path / "f" / "deep.png")
  (tmp_path / "f" / "README.txt").write_text("not an image")
  return tmp_path / "f", images


def test_grey_output(tmp_path, mixed_folder):
  folder, images = mixed_folder
  summary = prepare("image_folder", folder, tmp_path / "data")
  assert summary.builder_config == "35x55x1" and summary.examples == {"train": 4}
  assert any("ignored 1 non-image files (e.g. README.txt)" in n for n in summary.notes)
  ex = _examples(summary)
  np.testing.assert_array_equal(ex["grey.png"]["image"][..., 0], images["grey.png"])
  np.testing.assert_array_equal(ex["sub/rgb.png"]["image"][..., 0], _luma(images["sub/rgb.png"]))
  np.testing.assert_array_equal(ex["deep.png"]["image"], np.full((35, 55, 1), 200, np.uint8))
  expected = Image.fromarray(_luma(images["big.png"])).resize((55, 35), Image.BILINEAR)
  np.testing.assert_array_equal(ex["big.png"]["image"][..., 0], np.asarray(expected))
  assert ex["grey.png"]["label"].shape == (0,)


def test_rgb_output_and_csv_labels(tmp_path, mixed_folder):
  folder, images = mixed_folder
  (folder / "labels.csv").write_text("filename,pitch,yaw\ngrey.png,0.1,-0.2\nsub/rgb.png,1,2\n"
                                     "big.png,3,4\ndeep.png,5,6\n")
  summary = prepare("image_folder", folder, tmp_path / "data", overrides={"channels": 3})
  assert summary.builder_config == "35x55x3"
  ex = _examples(summary)
  np.testing.assert_array_equal(ex["grey.png"]["image"], np.repeat(images["grey.png"][..., None], 3, -1))
  np.testing.assert_array_equal(ex["sub/rgb.png"]["image"], images["sub/rgb.png"])
  np.testing.assert_allclose(ex["grey.png"]["label"], [0.1, -0.2])
  np.testing.assert_allclose(ex["deep.png"]["label"], [5, 6])
  metadata = json.loads((tmp_path / "data" / "image_folder" / "35x55x3" / "1.0.0" / "metadata.json").read_text())
  assert metadata["label_names"] == ["pitch", "yaw"]
  # What refine --format=png needs to write the file back as it was: header and integer columns.
  assert metadata["label_format"] == {"file_column": "filename", "integer": [False, False]}
  assert summary.labels == ("pitch", "yaw") and "  labels: pitch, yaw (read from labels.csv)" in format_summary(summary)


def test_json_labels_and_constant_resize(tmp_path):
  fixtures_data.write_image_folder(tmp_path / "f", {f"{i}.jpg": np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3)})
  (tmp_path / "f" / "labels.json").write_text(json.dumps({f"{i}.jpg": {"a": i, "b": -i} for i in range(3)}))
  summary = prepare("image_folder", tmp_path / "f", tmp_path / "data", builder_config="64x64x3",
                    overrides={"height": 16, "width": 8})
  ex = _examples(summary)
  for i in range(3):
    decoded = np.asarray(Image.open(tmp_path / "f" / f"{i}.jpg"))
    assert ex[f"{i}.jpg"]["image"].shape == (16, 8, 3)
    np.testing.assert_allclose(ex[f"{i}.jpg"]["image"], np.full((16, 8, 3), decoded.mean()), atol=2)
    np.testing.assert_allclose(ex[f"{i}.jpg"]["label"], [i, -i])


@pytest.mark.parametrize("defect, pattern", [
    ("corrupt", r"b\.png: cannot decode image"),
    ("no_row", r"b\.png: no row in the labels file"),
    ("no_image", r"c\.png: listed in the labels file but no such image"),
    ("bad_value", r"labels\.csv: line 3: \['b\.png', 'x'\]; expected numbers"),
    ("bad_json", r"labels\.json: cannot parse JSON"),
])
def test_bad_files(tmp_path, defect, pattern):
  fixtures_data.write_image_folder(tmp_path / "f", {n: np.zeros((4, 4), np.uint8) for n in ("a.png", "b.png")})
  labels = {"a.png": 1, "b.png": 2}
  if defect == "corrupt":
    (tmp_path / "f" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  elif defect == "no_row":
    del labels["b.png"]
  elif defect == "no_image":
    labels["c.png"] = 3
  csv = "filename,v\n" + "".join(f"{k},{v}\n" for k, v in labels.items())
  if defect == "bad_value":
    csv = "filename,v\na.png,1\nb.png,x\n"
  if defect == "bad_json":
    (tmp_path / "f" / "labels.json").write_text("{'a.png': 1")
  else:
    (tmp_path / "f" / "labels.csv").write_text(csv)
  with pytest.raises(BadFileError, match=pattern) as error:
    prepare("image_folder", tmp_path / "f", tmp_path / "data")
  assert "\n" not in str(error.value)


def test_empty_folder_and_skips(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(BadFileError, match=r"empty: manual_dir is empty"):
    prepare("image_folder", tmp_path / "empty", tmp_path / "data")
  (tmp_path / "empty" / "notes.txt").write_text("x")
  with pytest.raises(BadFileError, match=r"empty: no image files"):
    prepare("image_folder", tmp_path / "empty", tmp_path / "data")
  fixtures_data.write_image_folder(tmp_path / "f", {n: np.zeros((4, 4), np.uint8) for n in ("a.png", "b.png")})
  (tmp_path / "f" / "b.png").write_bytes(b"not a png")
  (tmp_path / "f" / "labels.csv").write_text("filename,v\na.png,1\nb.png,2\nc.png,3\n")
  summary = prepare("image_folder", tmp_path / "f", tmp_path / "data", skip_bad_files=True)
  assert summary.examples == {"train": 1}
  assert sorted(os.path.basename(s.path) for s in summary.skipped) == ["b.png", "c.png"]


def test_launch_script_summary_and_one_line_error(tmp_path):
  fixtures_data.write_image_folder(tmp_path / "f", {n: np.zeros((4, 4), np.uint8) for n in ("a.png", "b.png")})
  (tmp_path / "f" / "b.png").write_bytes(b"not a png")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  command = [sys.executable, os.path.join(repo, "launch", "prepare_data.py"), "--dataset=image_folder",
             f"--manual_dir={tmp_path / 'f'}", f"--data_dir={tmp_path / 'data'}", "--height=4", "--width=4"]
  failed = subprocess.run(command, capture_output=True, text=True, timeout=120)
  assert failed.returncode == 1
  assert failed.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'f' / 'b.png'}: cannot decode image")
  done = subprocess.run(command + ["--skip_bad_files"], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert "image_folder (builder_config='4x4x1')" in done.stdout
  assert "train: 1 examples written" in done.stdout and "skipped: 1 bad files" in done.stdout
  assert "  labels: none (no labels.csv or labels.json in the folder)" in done.stdout
  # The closing block: where the set is and the command that trains on it; the same as JSON.
  assert (f"  python launch/train.py --workdir=runs/image_folder --config.real_data.name=image_folder "
          f"--config.real_data.builder_config=4x4x1 --config.real_data.data_dir={tmp_path / 'data'}") in done.stdout
  facts = json.loads((tmp_path / "data" / "image_folder" / "4x4x1" / "1.0.0" / "summary.jsonl").read_text())
  assert facts["examples"] == {"train": 1} and facts["labels"] == [] and facts["skipped"] == 1
  assert "\r" not in done.stderr  # progress in a pipe: plain lines
  assert f"[train] {tmp_path / 'f' / 'b.png'}: cannot decode image" in done.stdout


def test_config_describes_its_real_size():
  # The derived configs used to call themselves "eye-sized grey" whatever their size.
  from simgan_jax.data.builders.base import derive_config
  from simgan_jax.data.builders.image_folder import ImageFolder

  assert derive_config(ImageFolder, None, height=28, width=28).description == "28x28 grey images"
  assert derive_config(ImageFolder, None, channels=3).description == "35x55 RGB images"
  assert [c.description for c in ImageFolder.BUILDER_CONFIGS] == [
      "35x55 grey images", "224x224 grey images", "64x64 RGB images"]


def _two_folders(tmp_path):
  rng = np.random.default_rng(5)
  pixels = {name: {f"{i}.png": rng.integers(0, 256, (6, 6), dtype=np.uint8) for i in range(3)}
            for name in ("synth", "real")}
  for name, images in pixels.items():
    fixtures_data.write_image_folder(tmp_path / name, images)
  return pixels


def test_two_folders_of_one_size_in_one_data_dir_keep_their_own_images(tmp_path):
  # The old prepare() found "6x6x1" prepared and returned the first folder's images
  # for the second ("already prepared, nothing rebuilt").
  from simgan_jax import errors
  from simgan_jax.configs import default
  from simgan_jax.data import sources, tfds_sources

  pixels = _two_folders(tmp_path)
  size = {"height": 6, "width": 6}
  first = prepare("image_folder", tmp_path / "synth", tmp_path / "data", overrides=size)
  second = prepare("image_folder", tmp_path / "real", tmp_path / "data", overrides=size)
  assert first.builder_config == "6x6x1" and second.builder_config.startswith("6x6x1_src")
  assert first.path != second.path
  assert any(f"was prepared from {tmp_path / 'synth'} (3 files), not {tmp_path / 'real'} (3 files); "
             f"this folder's set is builder_config {second.builder_config!r}" in n for n in second.notes)
  for summary, name in ((first, "synth"), (second, "real")):
    ex = _examples(summary)
    for file_name, image in pixels[name].items():
      np.testing.assert_array_equal(ex[file_name]["image"][..., 0], image)
    metadata = json.loads(open(os.path.join(summary.path, "metadata.json")).read())
    assert metadata["source"]["manual_dir"] == str(tmp_path / name) and metadata["source"]["files"] == 3

  # Preparing either folder again rebuilds nothing and names its own set.
  again = prepare("image_folder", tmp_path / "real", tmp_path / "data", overrides=size)
  assert again.path == second.path and any("already prepared from this folder" in n for n in again.notes)

  # Training sources: by name, or by manual_dir with the base name (finds the _src set).
  for name, builder_config in (("synth", "6x6x1"), ("real", second.builder_config), ("real", "6x6x1")):
    config = default.data_config("image_folder", data_dir=str(tmp_path / "data"), builder_config=builder_config,
                                 manual_dir=str(tmp_path / name) if builder_config == "6x6x1" else "")
    source = sources.make_source(config, (6, 6, 1), field="real_data")
    order = sorted(pixels[name])  # the builder shuffles: match rows by content
    got = sorted(source.images[..., 0].tolist())
    assert got == sorted(pixels[name][f].tolist() for f in order)

  # A set read with a manual_dir it was not prepared from: one line.
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "x.png").write_bytes(b"")
  config = default.data_config("image_folder", data_dir=str(tmp_path / "data"), builder_config="6x6x1",
                               manual_dir=str(tmp_path / "other"))
  with pytest.raises(errors.DataError) as e:
    sources.make_source(config, (6, 6, 1), field="real_data")
  assert str(e.value) == (
      f"config.real_data.manual_dir={tmp_path / 'other'}: {tmp_path}/data/image_folder/6x6x1/1.0.0 was prepared "
      f"from {tmp_path / 'synth'}; run python launch/prepare_data.py --dataset=image_folder "
      f"--manual_dir={tmp_path / 'other'} --data_dir={tmp_path / 'data'}")
  # A folder whose files changed since it was prepared is not its old set either.
  fixtures_data.write_image_folder(tmp_path / "synth", {"3.png": np.zeros((6, 6), np.uint8)})
  config.manual_dir = str(tmp_path / "synth")
  with pytest.raises(errors.DataError, match=r"6x6x1/1.0.0 was prepared from .*synth before its files changed"):
    tfds_sources.prepared_path("image_folder", str(tmp_path / "data"), "6x6x1", str(tmp_path / "synth"))
  changed = prepare("image_folder", tmp_path / "synth", tmp_path / "data", overrides=size)
  assert changed.examples == {"train": 4} and changed.builder_config not in ("6x6x1", second.builder_config)
