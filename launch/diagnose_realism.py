r"""Which of the eye target's appearance factors does the final two-sample test see?

  python launch/diagnose_realism.py --experiment=eyesim_gaze:cpu --out=docs/diagnosis_eye_realism.md

A perfect refiner (the synthetic scenes through the target's own appearance model,
``experiments/reproduce.py oracle_pool``) is scored by the reproduction's final
two-sample test (``final_two_sample``: the same real images, classifier, seed and
steps) with each group of factors switched off in turn. A group whose absence the
classifier detects easily is something a refiner must draw before refined images
can score near the perfect refiner's accuracy; a group it barely notices is not what
tells refined images apart. One classifier seed per row: the interval is the Wilson
95% interval of the held-out accuracy (test-set noise only). About 1.5 minutes per
row on 2 CPU cores.

``--downstream --workdir=DIR`` also trains the experiment's gaze estimators (``seeds``)
on each row's ``num_synthetic`` images and tests them on ``test_data``: what a refiner
loses downstream by not drawing a group (decide on validation data:
``--set test_data=eyesim_target:validation``). About 2.5 more minutes per row with
three estimator seeds at ``:cpu`` size; finished estimators in DIR are read back.

  python launch/diagnose_realism.py --experiment=eyesim_gaze:cpu --downstream \
      --workdir=runs/diagnose_downstream --set test_data=eyesim_target:validation \
      --out=docs/diagnosis_eye_downstream.md
"""

import datetime
import os
import re
import shlex
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top,unused-import

# Groups of target.APPEARANCE_FACTORS, switched off together.
GROUPS = {
    "JPEG-like 8x8 blocking": ("blocking",),
    "sensor noise": ("read_noise", "shot_noise"),
    "defocus and motion blur": ("defocus_sigma", "motion_blur"),
    "uneven illumination and cast shadow": ("illumination", "shadow"),
    "skin and iris texture, eyelashes": ("skin_texture", "iris_texture", "eyelashes"),
    "extra specular reflections": ("extra_specular",),
    "contrast, brightness, gamma": ("contrast", "brightness", "gamma"),
}
# Asked for by name only (not in the default --groups): everything that the camera-only
# refiner (configs/default.py:cpu,camera) has no stage for. With this row's factors off,
# the perfect refiner is a perfect camera-only refiner: its gaze error is the best that
# refining with the camera stages alone can reach downstream.
GROUPS["no camera stage for it"] = ("skin_texture", "iris_texture", "eyelashes", "extra_specular", "shadow",
                                    "motion_blur")
DEFAULT_GROUPS = list(GROUPS)[:-1]

_EXPERIMENT = flags.DEFINE_string("experiment", "eyesim_gaze:cpu", "An eye experiment of configs/reproduce.py.")
_SET = flags.DEFINE_multi_string("set", [], "FIELD=VALUE config override (as launch/reproduce.py).")
_GROUPS = flags.DEFINE_list("groups", DEFAULT_GROUPS, "Groups to switch off, one row each (names above; "
                            "'no camera stage for it' only when named).")
_OUT = flags.DEFINE_string("out", None, "Write the table as markdown to this path (also printed).")
_DOWNSTREAM = flags.DEFINE_bool("downstream", False, "Also train the gaze estimators on each row and test "
                                "them on test_data (needs --workdir).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where --downstream's estimators are trained (resumable).")


def groups_flag(groups) -> str:
  """--groups' value as a shell word: a name with a comma in double quotes (absl's list
  flags split on commas outside quotes), the whole shell-quoted."""
  return shlex.quote(",".join(f'"{g}"' if "," in g else g for g in groups))


def row_dir(name: str) -> str:
  """A row's estimator folder under --workdir, from its name ("none (the perfect refiner)":
  "none"; "sensor noise": "sensor_noise")."""
  return re.sub(r"[^a-z0-9]+", "_", name.split(" (")[0].lower()).strip("_")


def downstream(config, reproduce, pool, labels, workdir: str) -> dict[str, float]:
  """Gaze estimators (``config.seeds``) trained on ``pool`` as the oracle row of
  reproduce.train_estimators, tested on ``config.test_data``: {"error_mean", "error_std"}."""
  config = config.copy_and_resolve_references()
  config.training_sets = ("oracle",)
  results = reproduce.train_estimators(config, {"oracle": pool, "labels": labels}, workdir,
                                       lambda line: print(line, flush=True))
  s = reproduce.summarize(results)["oracle"]
  return {"error_mean": s["error_mean"], "error_std": s["error_std"]}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _DOWNSTREAM.value and not _WORKDIR.value:
    raise app.UsageError("--downstream needs --workdir (where the estimators are trained)")
  unknown = [g for g in _GROUPS.value if g not in GROUPS]
  if unknown:
    raise app.UsageError(f"--groups: unknown group(s) {', '.join(map(repr, unknown))}; expected "
                         f"names from {', '.join(map(repr, GROUPS))}")
  from simgan_jax.configs import reproduce as reproduce_config  # pylint: disable=g-import-not-at-top
  from simgan_jax.experiments import reproduce  # pylint: disable=g-import-not-at-top
  from simgan_jax.simulators import target  # pylint: disable=g-import-not-at-top

  config = reproduce_config.apply_overrides(reproduce_config.get_config(_EXPERIMENT.value), _SET.value)
  if config.simgan.real_data.name != "eyesim_target":
    raise app.UsageError(f"--experiment: {_EXPERIMENT.value} trains against {config.simgan.real_data.name!r}; "
                         "this diagnosis needs the eye target eyesim_target (its factors are switched off)")
  start = time.time()
  if not _DOWNSTREAM.value:
    config.num_synthetic = config.final_two_sample.num_images
  tester, n = reproduce.final_two_sample_tester(config, min(config.num_synthetic,
                                                            config.final_two_sample.num_images))
  rows = [("none (the perfect refiner)", ()), *((g, GROUPS[g]) for g in _GROUPS.value),
          ("all (the raw simulator images)", target.APPEARANCE_FACTORS)]
  results = []
  for name, factors in rows:
    t0 = time.time()
    pool, labels = reproduce.oracle_pool(config, None, factors, with_labels=True)
    r = tester.score(pool[:n])
    if _DOWNSTREAM.value:
      r.update(downstream(config, reproduce, pool, labels, os.path.join(_WORKDIR.value, row_dir(name))))
    results.append((name, factors, r))
    gain = f", gaze error {r['error_mean']:.2f} +- {r['error_std']:.2f} deg" if _DOWNSTREAM.value else ""
    print(f"{name}: {100 * r['two_sample_accuracy']:.1f}%{gain} ({time.time() - t0:.0f} s)", flush=True)

  t = config.final_two_sample
  lines = [
      "# Which target appearance factors does the final two-sample test see? (eyes)", "",
      f"Made by `python launch/diagnose_realism.py --experiment={_EXPERIMENT.value}"
      + "".join(f" --set {s}" for s in _SET.value)
      + (f" --groups={groups_flag(_GROUPS.value)}" if _GROUPS.value != DEFAULT_GROUPS else "")
      + (f" --downstream --workdir={_WORKDIR.value}" if _DOWNSTREAM.value else "")
      + f"` on {datetime.date.today().isoformat()} in {(time.time() - start) / 60:.1f} min.", "",
      f"The synthetic scenes through the target's appearance model with a group of factors off, "
      f"scored by the reproduction's final two-sample test ({n} images per side, {tester.num_test} of them "
      f"held out; classifier widths {tuple(t.features)}, {t.steps} steps, seed {t.seed}): the held-out "
      "accuracy of telling them from target images (50%: indistinguishable). A single classifier seed; "
      "the interval is the Wilson 95% interval (test-set noise only)."]
  if _DOWNSTREAM.value:
    lines += ["", f"Gaze error: gaze estimators ({config.gaze.num_steps} steps, seeds "
              f"{', '.join(map(str, config.seeds))}) trained on the row's {config.num_synthetic} images and "
              f"tested on `{config.test_data}`; mean +- standard deviation over estimator seeds (the "
              "rows share scenes, labels and estimator seeds, so the spread is estimator noise alone). "
              "A group whose absence costs gaze error is one a refiner must draw to reach the perfect "
              f"refiner's row. Estimators in `{_WORKDIR.value}`."]
    if config.test_data.endswith(":test"):
      lines += ["", "**Caution: these estimators are tested on the test split.** Decide what a refiner "
                "must draw on `--set test_data=eyesim_target:validation`, not on this table."]
  gaze_head = " gaze error | rise |" if _DOWNSTREAM.value else ""
  lines += ["", f"| factors off | two-sample accuracy | 95% interval | rise over the perfect refiner |{gaze_head}",
            "|---|---|---|---|" + ("---|---|" if _DOWNSTREAM.value else "")]
  base = results[0][2]["two_sample_accuracy"]
  for name, factors, r in results:
    label = name if not factors or factors == target.APPEARANCE_FACTORS else f"{name} (`{'`, `'.join(factors)}`)"
    gaze_cells = (f" {r['error_mean']:.2f} +- {r['error_std']:.2f} deg | "
                  f"{r['error_mean'] - results[0][2]['error_mean']:+.2f} deg |") if _DOWNSTREAM.value else ""
    lines.append(f"| {label} | {100 * r['two_sample_accuracy']:.1f}% | "
                 f"[{100 * r['two_sample_low']:.1f}, {100 * r['two_sample_high']:.1f}] | "
                 f"{100 * (r['two_sample_accuracy'] - base):+.1f} points |{gaze_cells}")
  text = "\n".join(lines) + "\n"
  print(text)
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
      f.write(text)


if __name__ == "__main__":
  app.run(main)
