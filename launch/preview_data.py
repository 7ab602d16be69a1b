"""Writes a labelled grid of eye or hand samples (default: runs/preview_<dataset>.png).

  python launch/preview_data.py --dataset=eyesim
  python launch/preview_data.py --dataset=eyesim_target --out=runs/target.png
  python launch/preview_data.py --dataset=handsim --out=docs/images/handsim.png
  python launch/preview_data.py --dataset=handsim_target --out=docs/images/handsim_target.png
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top
from simgan_jax.simulators import preview  # pylint: disable=g-import-not-at-top

_DATASET = flags.DEFINE_enum("dataset", "eyesim", list(preview.DATASETS), "Dataset to preview.")
_OUT = flags.DEFINE_string("out", None, "Output image file (.png); default runs/preview_<dataset>.png.")
_NUM = flags.DEFINE_integer("num", 32, "Number of samples.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_SCALE = flags.DEFINE_integer("scale", 4, "Upscaling factor.", lower_bound=1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  out = _OUT.value or os.path.join("runs", f"preview_{_DATASET.value}.png")
  if os.path.dirname(out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
  preview.write_preview(_DATASET.value, out, num=_NUM.value, seed=_SEED.value, scale=_SCALE.value)
  common.say(f"preview: {_NUM.value} {_DATASET.value} samples -> {out}")


if __name__ == "__main__":
  common.run(main)
