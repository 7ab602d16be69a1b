r"""Trains the stacked-hourglass hand pose estimator and tests it: launch/train_estimator.py --task=pose.

  python launch/train_pose.py --config=simgan_jax/configs/pose.py:cpu \
      --train_data=handsim --eval_data=handsim_target:test --workdir=runs/pose_sim

The same flags as launch/train_estimator.py (see there), with --task=pose set.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top
from launch import train_estimator  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  sys.argv.insert(1, "--task=pose")
  common.run(train_estimator.main)
