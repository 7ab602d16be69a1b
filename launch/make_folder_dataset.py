r"""Writes a small folder dataset of rendered shapes (simgan_jax/simulators/shapes.py).

  python launch/make_folder_dataset.py --out=runs/folder_data
  python launch/reproduce.py --experiment=image_folder:cpu --synthetic=runs/folder_data/synthetic \
      --real=runs/folder_data/real --real_test=runs/folder_data/real_test --workdir=runs/folder_cpu

OUT/synthetic (clean renders, labels.csv), OUT/real (the same scenes' kind in a
"real" appearance: uneven light, texture, blur, noise; no labels) and
OUT/real_test (real-looking, labelled). --task=regression labels each image with
the shape's size (a float) instead of its class.
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_OUT = flags.DEFINE_string("out", None, "Folder to write synthetic/, real/ and real_test/ into.")
_NUM_SYNTHETIC = flags.DEFINE_integer("num_synthetic", 3000, "Labelled clean images.")
_NUM_REAL = flags.DEFINE_integer("num_real", 3000, "Unlabelled real-looking images.")
_NUM_TEST = flags.DEFINE_integer("num_test", 1000, "Labelled real-looking test images.")
_SIZE = flags.DEFINE_integer("size", 32, "Image height and width in pixels.")
_TASK = flags.DEFINE_enum("task", "classification", ["classification", "regression"],
                          "Label: the shape's class, or its size in pixels.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 4, "Shapes to draw (2-4).")
_SEED = flags.DEFINE_integer("seed", 0, "Every image is a function of (seed, folder, index).")
flags.mark_flag_as_required("out")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from simgan_jax.simulators import shapes  # pylint: disable=g-import-not-at-top

  start = time.time()
  paths = shapes.write_dataset(_OUT.value, num_synthetic=_NUM_SYNTHETIC.value, num_real=_NUM_REAL.value,
                               num_test=_NUM_TEST.value, size=_SIZE.value, task=_TASK.value,
                               num_classes=_NUM_CLASSES.value, seed=_SEED.value)
  print(f"wrote {_NUM_SYNTHETIC.value} synthetic, {_NUM_REAL.value} real and {_NUM_TEST.value} real_test "
        f"images ({_SIZE.value}x{_SIZE.value} grey, labels: {_TASK.value}) in {time.time() - start:.0f} s")
  print(f"next: python launch/reproduce.py --experiment=image_folder:cpu --synthetic={paths['synthetic']} "
        f"--real={paths['real']} --real_test={paths['real_test']} --workdir=runs/folder_cpu")


if __name__ == "__main__":
  common.run(main)
