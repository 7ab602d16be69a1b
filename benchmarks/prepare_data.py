r"""Preparation throughput of each dataset builder on synthetic fixtures in the original formats.

  python benchmarks/prepare_data.py                       # 2000 UnityEyes, 6000 MPIIGaze, 300 NYU
  python benchmarks/prepare_data.py --unityeyes=200 --mpiigaze_per_side=50 --nyu=30

Fixtures are written first (not timed) into --workdir (default: a temp folder,
deleted afterwards). "prepare" is launch/prepare_data.py's work (decode, crop,
encode, write array_record); "load" is what training does at start-up (read the
prepared split into one uint8 array, tfds_sources.load_split).
"""

import os
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import fixtures_data  # pylint: disable=g-import-not-at-top

_UNITYEYES = flags.DEFINE_integer("unityeyes", 2000, "UnityEyes pairs (640x480 JPEG + JSON).")
_MPIIGAZE = flags.DEFINE_integer("mpiigaze_per_side", 500, "Samples per eye side per day file (3 persons x 2 days).")
_NYU = flags.DEFINE_integer("nyu", 300, "NYU frames (640x480 PNG, camera 1).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where fixtures and outputs go (default: a temp folder).")


def write_unityeyes(folder, count):
  # One shared textured background keeps fixture writing fast; the eye is drawn per sample.
  import json  # pylint: disable=g-import-not-at-top

  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:480, 0:640]
  background = np.stack([120 + 60 * np.sin(xx / 37.0), 100 + 50 * np.cos(yy / 23.0), 90 + 0 * xx], -1)
  background = Image.fromarray((background + rng.integers(0, 20, (480, 640, 3))).astype(np.uint8))
  for i in range(1, count + 1):
    sample = fixtures_data.unityeyes_sample(rng)
    image = background.copy()
    draw = ImageDraw.Draw(image)
    (x0, y0), (x1, y1) = sample["margin"].min(0), sample["margin"].max(0)
    draw.ellipse([x0, y0, x1, y1], fill=(235, 230, 225))
    cx, cy = sample["iris_centre"]
    draw.ellipse([cx - 18, cy - 18, cx + 18, cy + 18], fill=(60, 40, 30))
    image.save(os.path.join(folder, f"{i}.jpg"), quality=95)
    with open(os.path.join(folder, f"{i}.json"), "w") as f:
      json.dump(sample["data"], f)


def write_nyu(folder, count):
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(folder, "train"), exist_ok=True)
  uvd = np.zeros((1, count, 36, 3), np.float32)
  for frame in range(1, count + 1):
    depth, uvd[0, frame - 1] = fixtures_data.nyu_frame(rng)
    fixtures_data.encode_depth_png(os.path.join(folder, "train", f"depth_1_{frame:07d}.png"), depth)
  import scipy.io  # pylint: disable=g-import-not-at-top

  scipy.io.savemat(os.path.join(folder, "train", "joint_data.mat"), {"joint_uvd": uvd, "joint_xyz": uvd})


def main(argv):
  del argv
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from simgan_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  from simgan_jax.data.builders import prepare  # pylint: disable=g-import-not-at-top

  tfds.disable_progress_bar()
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="simgan_prepare_bench_")
  data_dir = os.path.join(workdir, "data")
  runs = []
  if _UNITYEYES.value:
    write_unityeyes(os.path.join(workdir, "unityeyes"), _UNITYEYES.value)
    runs.append(("unityeyes", "unityeyes", {}, "640x480 JPEG -> 35x55"))
  if _MPIIGAZE.value:
    fixtures_data.write_mpiigaze(os.path.join(workdir, "mpiigaze"), days={0: [1, 2], 1: [1, 2], 2: [1, 2]},
                                 count=_MPIIGAZE.value)
    runs.append(("mpiigaze", "mpiigaze", {}, ".mat 36x60 -> 35x55 crop"))
  if _NYU.value:
    write_nyu(os.path.join(workdir, "nyu"), _NYU.value)
    runs.append(("nyu_hand", "nyu", {}, "640x480 PNG -> 224x224"))
  rows = []
  for dataset, folder, overrides, what in runs:
    start = time.perf_counter()
    summary = prepare.prepare(dataset, os.path.join(workdir, folder), data_dir, overrides=overrides)
    prepare_s = time.perf_counter() - start
    count = sum(summary.examples.values())
    start = time.perf_counter()
    loaded = sum(len(tfds_sources.load_split(dataset, data_dir=data_dir, split=s)[0]) for s in summary.examples)
    load_s = time.perf_counter() - start
    assert loaded == count
    rows.append((dataset, what, count, prepare_s, count / prepare_s, count / load_s))
  print(f"\n{'dataset':<10} {'input':<26} {'images':>7} {'prepare s':>10} {'prepare img/s':>14} {'load img/s':>11}")
  for dataset, what, count, seconds, rate, load_rate in rows:
    print(f"{dataset:<10} {what:<26} {count:>7} {seconds:>10.1f} {rate:>14.0f} {load_rate:>11.0f}")
  if not _WORKDIR.value:
    shutil.rmtree(workdir)


if __name__ == "__main__":
  app.run(main)
