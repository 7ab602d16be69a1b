r"""Trains the stacked-hourglass hand pose estimator and tests it. Logic: simgan_jax.evaluation.

  python launch/train_pose.py --config=simgan_jax/configs/pose.py:cpu \
      --train_data=handsim --eval_data=handsim_target:test --workdir=runs/pose_sim

--train_data: handsim | handsim_target[:validation] | npz:PATH | tfds:PATH[:SPLIT] |
NAME[/BUILDER_CONFIG][:SPLIT] (a prepared TFDS dataset, e.g. nyu_hand/real:train).
--eval_data: a comma-separated list of the same specs. Prints the mean joint error and
the share of images with all joints within 5 px; DIR/results.json holds the curve.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(common.REPO, "simgan_jax/configs/pose.py"),
    "Config file, optionally with a variant: path/to/pose.py:variant.", lock_config=True)
_TRAIN_DATA = flags.DEFINE_string("train_data", "handsim", "Labelled set to train on.")
_EVAL_DATA = flags.DEFINE_string("eval_data", "handsim_target:test", "Labelled set(s) to test on.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.json.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.maybe_initialize_distributed()
  from simgan_jax.evaluation import pose_data, pose_training  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  results = pose_training.train_pose_estimator(
      config, pose_data.train_source(_TRAIN_DATA.value, config), pose_data.eval_sets(_EVAL_DATA.value, config),
      _WORKDIR.value)
  for name, r in results["eval"].items():
    print(f"{name}: mean joint error {r['mean_joint_error_px']:.2f} px, all joints within 5 px "
          f"{100 * r['within_px']['5']:.1f}% ({r['num_images']} images; trained on {_TRAIN_DATA.value}, "
          f"{results['steps']} steps)")
  print(f"results: {os.path.join(_WORKDIR.value, 'results.json')}")


if __name__ == "__main__":
  common.run(main)
