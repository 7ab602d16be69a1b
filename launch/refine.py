r"""Refines a synthetic dataset with a trained SimGAN refiner. Logic: simgan_jax.refining.refine.

  python launch/refine.py --checkpoint=runs/eyesim --data=eyesim --num_examples=100000 \
      --out=runs/refined_eyesim
  python launch/refine.py --checkpoint=runs/unity --data=unityeyes --out=runs/refined_unity
  python launch/train_gaze.py --train_data=tfds:runs/refined_eyesim --workdir=runs/gaze_refined
  python launch/refine.py --checkpoint=runs/eyesim --data=image_folder/35x55x1 --format=png \
      --out=runs/refined_mine
  python launch/refine.py --checkpoint=runs/eyesim --step=best --data=eyesim --num_examples=100000 \
      --out=runs/refined_best

--data: eyesim (needs --num_examples) | npz:PATH | NAME[/BUILDER_CONFIG][:SPLIT] |
tfds:PATH[:SPLIT] | eyesim_target:validation|test. The config is the run's
CHECKPOINT/config.json unless --config names one. --format=tfds (default): --out
becomes a TFDS dataset folder (array_record, split 'train'): refined ``image``, the
input's labels unchanged, ``index``, ``file_name`` when the input has one.
--format=png: --out becomes a folder of PNG files under the input's own relative
file names (an image_folder set: the user's names, suffix .png; others: 000000.png
...) with labels.csv carrying the labels row for row. SIGTERM/SIGINT stops
after the chunk being saved, with one line and exit status 128 + the signal; an
interrupted run resumes when rerun with the same flags; with several processes (--multihost) --out must be
on a shared filesystem.

Domain check: the refiner's training data (source, image size, channels; its
CHECKPOINT/config.json) is compared with --data before refining. Another source of
the same subject (eyesim refiner on unityeyes) or an unknown one (image_folder,
npz, tfds) is a warning; another subject (eyes vs hands) stops with one line
unless --allow_domain_mismatch says it is on purpose; another channel count
always stops, and so does another image size (an image_folder set prepared at
another size) unless a --config of that size asks for it.

At the end a closing block says what was refined with which checkpoint (under
--step=best: its scores, the runner-up and the rule that ranked them), where the
output is and what to run next; the same facts go as one JSON line to
OUT/summary.jsonl.
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "SimGAN training workdir to take the refiner from, or "
                                  "pretrained:NAME for a refiner shipped with the package (pretrained:eyesim).")
_STEP = flags.DEFINE_string("step", None, "Checkpoint step (default: the newest), or 'best': the lowest "
                            "selection_score in CHECKPOINT/metrics.jsonl among the checkpoints on disk.")
_CONFIG = common.define_config_file(
    "config", None, "SimGAN config file (default: CHECKPOINT/config.json).")
_DATA = flags.DEFINE_string("data", "eyesim", "Synthetic set to refine (a data spec).")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 0, "Images to render (eyesim) or the first N (0 = all).")
_OUT = flags.DEFINE_string("out", None, "Output folder (a TFDS dataset, or PNG files with --format=png).")
_FORMAT = flags.DEFINE_enum("format", "tfds", ["tfds", "png"], "Output: a TFDS dataset, or PNG files + labels.csv.")
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 4096, "Examples per chunk (the unit of resuming).")
_SEED = flags.DEFINE_integer("seed", 0, "Simulator seed: image i comes from fold_in(PRNGKey(seed), i).")
_KEEP_SYNTHETIC = flags.DEFINE_bool("keep_synthetic", False, "Also store the input image as 'synthetic'.")
_DATA_DIR = flags.DEFINE_string("data_dir", "",
                                "Prepared TFDS datasets ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "", "Built-in target-domain cache ('' = default).")
_ALLOW_MISMATCH = flags.DEFINE_bool(
    "allow_domain_mismatch", False, "Refine images of another subject than the refiner's training "
    "data (an eye refiner on hands) on purpose; the mismatch is then a warning.")
flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  common.say(f"refine: loading the refiner from {_CHECKPOINT.value} and the {_DATA.value} data "
             f"(compiling the refiner takes seconds to a minute on a CPU)")
  common.maybe_initialize_distributed()
  # Imported after maybe_initialize_distributed: jax must not start before it.
  import jax  # pylint: disable=g-import-not-at-top
  from simgan_jax import domain, summary  # pylint: disable=g-import-not-at-top
  from simgan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from simgan_jax.refining import refine  # pylint: disable=g-import-not-at-top

  try:
    trained = refine.load_config(_CHECKPOINT.value)  # what the refiner was trained on
  except ConfigError:
    if _CONFIG.value is None:
      raise
    trained = _CONFIG.value  # a workdir without config.json: --config is all we know
  config = _CONFIG.value if _CONFIG.value is not None else trained
  warnings = domain.check_refine(config, trained, _DATA.value, allow=_ALLOW_MISMATCH.value,
                                 asked=_CONFIG.value is not None)
  for line in warnings:
    common.say(f"warning: {line}")
  chosen = summary.refine_selection(config, _CHECKPOINT.value) if _STEP.value == "best" else {}
  for line in summary.selection_lines(chosen):
    common.say(line)
  start = time.time()
  already = refine.is_done(_OUT.value)
  out = refine.refine_dataset(
      config, _CHECKPOINT.value, _DATA.value, _OUT.value, num_examples=_NUM_EXAMPLES.value,
      step=_STEP.value, chunk_size=_CHUNK_SIZE.value, seed=_SEED.value,
      keep_synthetic=_KEEP_SYNTHETIC.value, data_dir=_DATA_DIR.value, cache_dir=_CACHE_DIR.value,
      format=_FORMAT.value)
  seconds = time.time() - start
  num = refine.num_examples(out)
  rate = "already done" if already else f"{num / max(seconds, 1e-9):.3g} img/s"
  if _FORMAT.value == "png":
    labels = " and labels.csv" if os.path.exists(os.path.join(out, refine.LABELS_CSV)) else ""
    print(f"refined images: {out} ({num} PNG files{labels}, {rate}, {seconds:.1f} s)")
  else:
    print(f"refined dataset: {out} ({num} images, {rate}, {seconds:.1f} s); "
          f"train on it with --train_data=tfds:{out}")
  step = refine.read_manifest(out).get("step")
  facts = summary.refine_summary(config, _CHECKPOINT.value, out, step=step, num=num, fmt=_FORMAT.value,
                                 seconds=None if already else seconds, chosen=chosen, warnings=warnings)
  if jax.process_index() == 0:
    facts["outputs"]["summary"] = summary.append_json(out, facts)
    print(summary.format_block(facts), flush=True)


if __name__ == "__main__":
  common.run(main)
