r"""Prepares a real dataset from downloaded files as TFDS array_record (no TensorFlow).

  python launch/prepare_data.py --dataset=mpiigaze --manual_dir=~/Downloads/MPIIGaze
  python launch/prepare_data.py --dataset=unityeyes --manual_dir=~/UnityEyes/imgs --skip_bad_files
  python launch/prepare_data.py --dataset=nyu_hand --manual_dir=~/nyu_hand_dataset_v2 \
      --builder_config=synthetic
  python launch/prepare_data.py --dataset=image_folder --manual_dir=~/eyes --height=35 \
      --width=55 --channels=1
  python launch/prepare_data.py --dataset=mpiigaze --manual_dir=... --set=flip_right=false

Output goes to --data_dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets) as
<dataset>/<builder config>/1.0.0; the summary prints the builder config name the
training config's ``builder_config`` field should name. The dataset records
--manual_dir and a fingerprint of its files; a config name that already holds
another folder's data gets this folder as <name>_src<fingerprint> instead (the
summary says so), or set the training config's ``manual_dir`` to find it. All logic lives in
simgan_jax.data.builders.prepare; docs/datasets.md describes each layout. Other
libraries' log lines (TFDS's "Using custom data configuration", ...) are shown
only with --verbose.

The summary lists the label columns read (image_folder: from labels.csv or
labels.json, or "none"); a closing block then says where the dataset is and the
command that trains on it; the same facts go as one JSON line to
<dataset folder>/summary.jsonl.
"""

import contextlib
import io
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_DATASET = flags.DEFINE_enum("dataset", None, ["unityeyes", "mpiigaze", "nyu_hand", "image_folder"],
                             "Which builder to run.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding the downloaded files.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Output root (default $TFDS_DATA_DIR or ~/tensorflow_datasets).")
_BUILDER_CONFIG = flags.DEFINE_string("builder_config", None, "Predefined builder config (default: the first).")
_SKIP = flags.DEFINE_bool("skip_bad_files", False,
                          "Skip (and list) bad files instead of stopping at the first.")
_HEIGHT = flags.DEFINE_integer("height", None,
                               "Output image height (unityeyes, mpiigaze, nyu_hand, image_folder).")
_WIDTH = flags.DEFINE_integer("width", None, "Output image width.")
_CHANNELS = flags.DEFINE_integer("channels", None, "Output channels, 1 or 3 (image_folder).")
_SET = flags.DEFINE_multi_string("set", [], "Any other builder-config field: FIELD=VALUE, repeatable.")
flags.mark_flags_as_required(["dataset", "manual_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Library imports inside main: flag errors and --help come before the slow imports.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from simgan_jax import summary as summary_lib  # pylint: disable=g-import-not-at-top
  from simgan_jax.data.builders import prepare  # pylint: disable=g-import-not-at-top

  tfds.disable_progress_bar()  # ours counts files per split; TFDS's would duplicate it
  overrides = prepare.parse_overrides(_SET.value, height=_HEIGHT.value, width=_WIDTH.value,
                                      channels=_CHANNELS.value)
  # TFDS prints "Downloading and preparing dataset ..." and "... downloaded and prepared"
  # to stdout; the summary below says it in our words (progress goes to stderr).
  start = time.time()
  with contextlib.redirect_stdout(sys.stdout if common.verbose() else io.StringIO()):
    summary = prepare.prepare(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value,
                              builder_config=_BUILDER_CONFIG.value, overrides=overrides,
                              skip_bad_files=_SKIP.value, progress=True)
  print(prepare.format_summary(summary))
  facts = summary_lib.prepare_summary(summary, _DATA_DIR.value, time.time() - start)
  facts["outputs"]["summary"] = summary_lib.append_json(summary.path, facts)
  print(summary_lib.format_block(facts), flush=True)


if __name__ == "__main__":
  common.run(main)
