r"""Trains the gaze estimator and tests it: launch/train_estimator.py --task=gaze.

  python launch/train_gaze.py --config=simgan_jax/configs/gaze.py:cpu \
      --train_data=eyesim --eval_data=eyesim_target:test --workdir=runs/gaze_sim

The same flags as launch/train_estimator.py (see there), with --task=gaze set.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top
from launch import train_estimator  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  sys.argv.insert(1, "--task=gaze")
  common.run(train_estimator.main)
