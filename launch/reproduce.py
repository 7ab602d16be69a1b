r"""Reproduces the paper's experiment end to end; all logic in simgan_jax.experiments.reproduce.

  python launch/reproduce.py --experiment=eyesim_gaze:cpu --workdir=runs/repro_cpu
  python launch/reproduce.py --experiment=eyesim_gaze --workdir=runs/repro        # accelerator
  python launch/reproduce.py --experiment=unityeyes_mpiigaze --workdir=runs/repro_mpiigaze
  python launch/reproduce.py --experiment=handsim_pose:cpu --workdir=runs/hand_cpu   # Table 4
  python launch/reproduce.py --experiment=image_folder:cpu --synthetic=DIR --real=DIR \
      --real_test=DIR --workdir=runs/folder_cpu      # your own folders (experiments/image_folder.py)

Trains SimGAN, selects a refiner checkpoint by the label-free realism score,
refines the synthetic training sets, trains gaze estimators on synthetic,
synthetic 4x, refined, refined 4x and target-labelled data (several seeds each),
measures label preservation and writes WORKDIR/report.md with its figures. A rerun
with the same flags resumes. ``--set FIELD=VALUE`` changes any config field
(simgan_jax/configs/reproduce.py); ``--publish=docs/results_eyesim.md`` copies the
report and its figures into the repository. After looking at WORKDIR/samples.png, rerun
with ``--samples_note="what you saw"``: the report prints it under the grid, and drops
it if a later run draws a different grid.

At the end a closing block says what was done (wall time), the refiner checkpoint
selected with its scores, the runner-up and the rule, where the report, figures and
checkpoints are, and what to run next; the same facts go as one JSON line to
WORKDIR/summary.jsonl.

Before anything runs, the synthetic set to refine (``synthetic_data``) is checked
against the SimGAN config's training data (simgan_jax/domain.py): another subject
stops with one line unless --allow_domain_mismatch.
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_EXPERIMENT = flags.DEFINE_string("experiment", "eyesim_gaze",
                                  "eyesim_gaze | unityeyes_mpiigaze | handsim_pose | nyu_hand | image_folder, optionally :cpu or :smoke.")
_SYNTHETIC = flags.DEFINE_string("synthetic", None, "image_folder: labelled synthetic images (with labels.csv).")
_REAL = flags.DEFINE_string("real", None, "image_folder: unlabelled real images.")
_REAL_TEST = flags.DEFINE_string("real_test", None, "image_folder: labelled real test images (optional).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every stage's outputs and report.md.")
_SET = flags.DEFINE_multi_string("set", [], "FIELD=VALUE config override, e.g. seeds=0,1,2.")
_PUBLISH = flags.DEFINE_string("publish", None, "Also copy report.md (and figures) to this .md path.")
_SAMPLES_NOTE = flags.DEFINE_string(
    "samples_note", None, "What you saw in WORKDIR/samples.png (after a first run): printed in the report's "
    "Samples section for as long as the grid stays the one you looked at.")
_ALLOW_MISMATCH = flags.DEFINE_bool(
    "allow_domain_mismatch", False, "Refine a synthetic_data set of another subject than SimGAN "
    "trains on (hands for an eye SimGAN) on purpose; the mismatch is then a warning.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Library imports inside main: flag errors and --help come before the slow imports.
  from simgan_jax.configs import reproduce as reproduce_config  # pylint: disable=g-import-not-at-top
  from simgan_jax import domain, summary  # pylint: disable=g-import-not-at-top
  from simgan_jax.experiments import reproduce  # pylint: disable=g-import-not-at-top
  from simgan_jax.experiments import seeds as seeds_lib  # pylint: disable=g-import-not-at-top

  config = reproduce_config.apply_overrides(reproduce_config.get_config(_EXPERIMENT.value), _SET.value)
  folders = {"synthetic_dir": _SYNTHETIC, "real_dir": _REAL, "real_test_dir": _REAL_TEST}
  run = reproduce.run
  if config.get("estimator") == "image_folder":  # your own folders: the experiment prepares them first
    from simgan_jax.experiments import image_folder  # pylint: disable=g-import-not-at-top
    config.update({field: flag.value or config[field] for field, flag in folders.items()})
    run = image_folder.run
  elif any(flag.value for flag in folders.values()):
    raise ValueError("--synthetic/--real/--real_test: only for --experiment=image_folder")
  # (image_folder refines the very folder its SimGAN trains on: nothing to check)
  for line in [] if run is not reproduce.run else domain.check_refine(
      config.simgan, config.simgan, config.synthetic_data, allow=_ALLOW_MISMATCH.value,
      where="--set synthetic_data"):
    print(f"warning: {line}", flush=True)
  if _SAMPLES_NOTE.value is not None:
    from simgan_jax.experiments import caveats  # pylint: disable=g-import-not-at-top
    caveats.write_samples_note(_WORKDIR.value, _SAMPLES_NOTE.value)
  start = time.time()
  result = run(config, _WORKDIR.value)
  for name, s in result["summary"].items():
    if "metric" in s:  # the image_folder experiment
      unit = "%" if s["metric"] == "accuracy" else ""
      print(f"{name}: {s['metric']} {s['mean']:.4g}{unit} +- {s['std']:.2g}{unit} ({seeds_lib.runs_text(s)})")
      continue
    if "within5_mean" in s:  # the hand experiment
      print(f"{name}: all joints within {s['within_px']} px {s['within5_mean']:.1f} +- {s['within5_std']:.1f}%, mean joint "
            f"error {s['error_mean']:.2f} +- {s['error_std']:.2f} px ({seeds_lib.runs_text(s)})")
      continue
    print(f"{name}: within 7 deg {s['within7_mean']:.1f} +- {s['within7_std']:.1f}%, mean error "
          f"{s['error_mean']:.2f} +- {s['error_std']:.2f} deg ({seeds_lib.runs_text(s)})")
  if result.get("verdict"):
    print(result["verdict"])
  if _PUBLISH.value:
    print(f"published: {reproduce.publish(_WORKDIR.value, _PUBLISH.value)}")
  facts = summary.reproduce_summary(config, _WORKDIR.value, result, seconds=time.time() - start)
  if _PUBLISH.value:
    facts["outputs"]["published"], facts["next"] = _PUBLISH.value, facts["next"][1:]
  facts["outputs"]["summary"] = summary.append_json(_WORKDIR.value, facts)
  print(summary.format_block(facts), flush=True)


if __name__ == "__main__":
  common.run(main)
