r"""Trains a downstream estimator (gaze, hand pose, classifier, regressor) and tests it. Logic: simgan_jax.tasks.

  python launch/train_estimator.py --task=gaze --config=simgan_jax/configs/gaze.py:cpu \
      --train_data=eyesim --eval_data=eyesim_target:test --workdir=runs/gaze_sim
  python launch/train_estimator.py --task=pose --config=simgan_jax/configs/pose.py:cpu \
      --train_data=handsim --eval_data=handsim_target:test --workdir=runs/pose_sim

--config defaults to the task's config (simgan_jax/configs/<task>.py). --train_data
and --eval_data (a comma-separated list) name labelled sets: for gaze eyesim |
eyesim_target[:SPLIT] | npz:PATH | tfds:PATH[:SPLIT] | NAME[/BUILDER_CONFIG][:SPLIT]
(simgan_jax/tasks/data.py), for pose the same with handsim | handsim_target
(tasks/pose_data.py); the task's simulator and target test split by default.
classification and regression (simgan_jax/tasks/labels.py) read the ``label`` of a
prepared image folder (image_folder/HxWxC), tfds:PATH or npz:PATH and have no default sets.
Ends with a closing block (steps, time, one line per evaluation set, where the outputs
are, the next command), also appended as one JSON line to DIR/summary.jsonl;
DIR/results.json holds the rest.

SIGTERM or Ctrl-C: the current step finishes, a checkpoint is saved, one line
says where, and the exit status is 128 + the signal; the same command resumes.
launch/train_gaze.py and launch/train_pose.py are this script with --task set.
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_TASK = flags.DEFINE_enum("task", None, ["gaze", "pose", "classification", "regression"], "Which estimator to train.")
_CONFIG = common.define_config_file(
    "config", None, "Config file, optionally with a variant: path/to/pose.py:variant "
    "(default: simgan_jax/configs/<task>.py).")
_TRAIN_DATA = flags.DEFINE_string("train_data", None, "Labelled set to train on (default: the task's simulator).")
_EVAL_DATA = flags.DEFINE_string("eval_data", None, "Labelled set(s) to test on (default: the target test split).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.json.")
flags.mark_flags_as_required(["task", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.maybe_initialize_distributed()
  # After jax.distributed is up: simgan_jax.tasks imports jax.
  import jax  # pylint: disable=g-import-not-at-top
  from simgan_jax import preemption, summary, tasks  # pylint: disable=g-import-not-at-top

  entry = tasks.get(_TASK.value)
  config = _CONFIG.value if _CONFIG.value is not None else entry.get_config()
  train_data = _TRAIN_DATA.value or entry.train_data
  start = time.perf_counter()
  try:
    results = tasks.train_and_evaluate(_TASK.value, config, _WORKDIR.value, train_data, _EVAL_DATA.value)
  except preemption.Stopped as e:
    # Saved; 128 + the signal, as if killed by it, so schedulers see a preemption.
    print(e, file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)
  lines = {name: f"{entry.task.eval_summary(r)} ({r['num_images']} images)" for name, r in results["eval"].items()}
  done = summary.estimator_summary(_TASK.value, _WORKDIR.value, train_data, results, lines,
                                   time.perf_counter() - start)
  if jax.process_index() == 0:
    print(summary.format_block(done))
    summary.append_json(_WORKDIR.value, {**done, "results": results["eval"]})


if __name__ == "__main__":
  common.run(main)
