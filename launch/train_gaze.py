r"""Trains the gaze estimator and tests it. All logic lives in simgan_jax.evaluation.

  python launch/train_gaze.py --config=simgan_jax/configs/gaze.py:cpu \
      --train_data=eyesim --eval_data=eyesim_target:test --workdir=runs/gaze_sim

--train_data: eyesim | eyesim_target[:validation] | npz:PATH | NAME[/BUILDER_CONFIG][:SPLIT]
(a prepared TFDS dataset, e.g. mpiigaze:train). --eval_data: a comma-separated list
of the same specs (eyesim_target:test by default). Prints the mean angular error
and the share within 7 degrees per evaluation set; DIR/results.json holds the rest.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_CONFIG = common.define_config_file(
    "config", os.path.join(common.REPO, "simgan_jax/configs/gaze.py"),
    "Config file, optionally with a variant: path/to/gaze.py:variant.")
_TRAIN_DATA = flags.DEFINE_string("train_data", "eyesim", "Labelled set to train on.")
_EVAL_DATA = flags.DEFINE_string("eval_data", "eyesim_target:test", "Labelled set(s) to test on.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.json.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.maybe_initialize_distributed()
  from simgan_jax.evaluation import data, gaze_training  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  results = gaze_training.train_gaze_estimator(
      config, data.train_source(_TRAIN_DATA.value, config), data.eval_sets(_EVAL_DATA.value, config),
      _WORKDIR.value)
  for name, r in results["eval"].items():
    print(f"{name}: mean angular error {r['mean_angular_error_deg']:.2f} deg, "
          f"within 7 deg {100 * r['within_deg']['7']:.1f}% ({r['num_images']} images; "
          f"trained on {_TRAIN_DATA.value}, {results['steps']} steps)")
  print(f"results: {os.path.join(_WORKDIR.value, 'results.json')}")


if __name__ == "__main__":
  common.run(main)
