"""Writes a labelled grid of eye or hand samples.

  python launch/preview_data.py --dataset=eyesim --out=/tmp/eyesim.png
  python launch/preview_data.py --dataset=eyesim_target --out=/tmp/target.png
  python launch/preview_data.py --dataset=handsim --out=docs/images/handsim.png
  python launch/preview_data.py --dataset=handsim_target --out=docs/images/handsim_target.png
"""

import sys

from absl import app
from absl import flags

from simgan_jax.simulators import preview

_DATASET = flags.DEFINE_enum("dataset", "eyesim", list(preview.DATASETS), "Dataset to preview.")
_OUT = flags.DEFINE_string("out", None, "Output image file (.png).", required=True)
_NUM = flags.DEFINE_integer("num", 32, "Number of samples.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_SCALE = flags.DEFINE_integer("scale", 4, "Upscaling factor.", lower_bound=1)


def main(argv):
  del argv
  try:
    preview.write_preview(_DATASET.value, _OUT.value, num=_NUM.value, seed=_SEED.value,
                          scale=_SCALE.value)
  except (ValueError, OSError) as e:
    sys.exit(f"preview_data: {e}")


if __name__ == "__main__":
  app.run(main)
