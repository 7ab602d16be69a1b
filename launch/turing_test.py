r"""The visual Turing test (SIMGAN.md): serves the study page, or writes its report.

  python launch/turing_test.py --real=eyesim_target:test --refined=tfds:data/refined_eyesim \
      --synthetic=eyesim --db=study.sqlite
  python launch/turing_test.py --report --db=study.sqlite   # study_report.md and .csv
  # README screenshots (a smoke refiner, coin-flip demo subjects in a new database):
  python launch/train.py --config=simgan_jax/configs/default.py:smoke --workdir=/tmp/tt_smoke
  python launch/refine.py --checkpoint=/tmp/tt_smoke --data=eyesim --num_examples=100 --out=/tmp/tt_refined
  python launch/turing_test.py --real=eyesim_target:test --refined=tfds:/tmp/tt_refined \
      --synthetic=eyesim --db=/tmp/tt_demo.sqlite --screenshots=docs/images

Subjects open http://127.0.0.1:8000/, enter their id and answer "real" or
"refined" (the control block: "synthetic") for 50 + 50 images (10 + 10). The
experimenter's results page's address (with its key) is printed at start. Sets are data specs
(eyesim_target:test, eyesim, npz:PATH, tfds:DIR[:SPLIT], NAME[/CONFIG][:SPLIT]) or a
folder of images; each keeps its first --num_images. Logic: simgan_jax.turing.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_REAL = flags.DEFINE_string("real", None, "Real images (a data spec or a folder).")
_REFINED = flags.DEFINE_string("refined", None, "Refined images: the main block.")
_SYNTHETIC = flags.DEFINE_string("synthetic", None, "Synthetic images: the control block (optional).")
_DB = flags.DEFINE_string("db", None, "SQLite study database (created on first use).", required=True)
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind (default: this machine only).")
_PORT = flags.DEFINE_integer("port", 8000, "Port to serve on.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 100, "Images kept per set (its first N).", lower_bound=1)
_TRIALS = flags.DEFINE_list("trials", ["50", "50"], "Real, refined trials per subject (paper: 50,50).")
_CONTROL_TRIALS = flags.DEFINE_list("control_trials", ["10", "10"],
                                    "Real, synthetic trials per subject (paper: 10,10).")
_SEED = flags.DEFINE_integer(
    "seed", None, "Study seed, only to remake a study from the seed stored in its database. By "
    "default a new study draws a secret random seed (kept in --db), so nobody can derive from the "
    "code which images are real.")
_RESULTS_KEY = flags.DEFINE_string("results_key", None, "Key of the results page (default: random).")
_DISPLAY_SIZE = flags.DEFINE_integer("display_size", 440, "Images are scaled up by a whole factor to "
                                     "at most this many pixels on the long side.", lower_bound=1)
_REPORT = flags.DEFINE_bool("report", False, "Write the report of --db instead of serving.")
_OUT = flags.DEFINE_string("out", None, "Report prefix (default: the db path without its suffix "
                           "+ '_report'): writes PREFIX.md and PREFIX.csv.")
_SCREENSHOTS = flags.DEFINE_string(
    "screenshots", None, "Instead of serving: fill the new --db with random demo answers and write "
    "turing_trial.png and turing_results.png to this folder (headless chromium).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared TFDS datasets ('' = default).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "", "Built-in target-domain cache ('' = default).")


def _pair(flag) -> tuple[int, int]:
  from simgan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top

  try:
    real, fake = (int(v) for v in flag.value)
  except ValueError:
    raise ConfigError(f"--{flag.name}: expected two integers REAL,FAKE, got {','.join(flag.value)}") from None
  return real, fake


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # pylint: disable=g-import-not-at-top
  from simgan_jax.errors import ConfigError
  try:
    from simgan_jax.turing import server
  except ModuleNotFoundError as e:
    if e.name != "flask":
      raise
    raise ConfigError("the visual Turing test needs flask: pip install -e .[turing]") from None

  if _REPORT.value:
    prefix = _OUT.value or os.path.splitext(_DB.value)[0] + "_report"
    for path in server.write_report(_DB.value, prefix):
      print(f"wrote {path}")
    return
  if not _REAL.value or not (_REFINED.value or _SYNTHETIC.value):
    raise ConfigError("--real and --refined (and/or --synthetic) are needed to serve a study")
  specs = {"real": _REAL.value, "refined": _REFINED.value, "synthetic": _SYNTHETIC.value}
  trials = {"refined": _pair(_TRIALS), "synthetic": _pair(_CONTROL_TRIALS)}
  if _SCREENSHOTS.value:
    for path in server.screenshots(_DB.value, specs, _NUM_IMAGES.value, trials, _SEED.value,
                                   _SCREENSHOTS.value, _DATA_DIR.value, _CACHE_DIR.value):
      print(f"wrote {path}")
    return
  server.serve(
      db=_DB.value, specs=specs, num_images=_NUM_IMAGES.value, trials=trials, seed=_SEED.value,
      host=_HOST.value, port=_PORT.value, results_key=_RESULTS_KEY.value,
      display_size=_DISPLAY_SIZE.value, data_dir=_DATA_DIR.value, cache_dir=_CACHE_DIR.value)


if __name__ == "__main__":
  common.run(main)
