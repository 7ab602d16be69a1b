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
"""

import datetime
import os
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

_EXPERIMENT = flags.DEFINE_string("experiment", "eyesim_gaze:cpu", "An eye experiment of configs/reproduce.py.")
_SET = flags.DEFINE_multi_string("set", [], "FIELD=VALUE config override (as launch/reproduce.py).")
_GROUPS = flags.DEFINE_list("groups", list(GROUPS), "Groups to switch off, one row each (names above).")
_OUT = flags.DEFINE_string("out", None, "Write the table as markdown to this path (also printed).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
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
  config.num_synthetic = config.final_two_sample.num_images
  tester, n = reproduce.final_two_sample_tester(config, config.num_synthetic)
  rows = [("none (the perfect refiner)", ()), *((g, GROUPS[g]) for g in _GROUPS.value),
          ("all (the raw simulator images)", target.APPEARANCE_FACTORS)]
  results = []
  for name, factors in rows:
    t0 = time.time()
    r = tester.score(reproduce.oracle_pool(config, None, factors)[:n])
    results.append((name, factors, r))
    print(f"{name}: {100 * r['two_sample_accuracy']:.1f}% ({time.time() - t0:.0f} s)", flush=True)

  t = config.final_two_sample
  lines = [
      "# Which target appearance factors does the final two-sample test see? (eyes)", "",
      f"Made by `python launch/diagnose_realism.py --experiment={_EXPERIMENT.value}"
      + "".join(f" --set {s}" for s in _SET.value)
      + (f" --groups={','.join(_GROUPS.value)}" if _GROUPS.value != list(GROUPS) else "")
      + f"` on {datetime.date.today().isoformat()} in {(time.time() - start) / 60:.1f} min.", "",
      f"The synthetic scenes through the target's appearance model with a group of factors off, "
      f"scored by the reproduction's final two-sample test ({n} images per side, {tester.num_test} of them "
      f"held out; classifier widths {tuple(t.features)}, {t.steps} steps, seed {t.seed}): the held-out "
      "accuracy of telling them from target images (50%: indistinguishable). A single classifier seed; "
      "the interval is the Wilson 95% interval (test-set noise only).", "",
      "| factors off | two-sample accuracy | 95% interval | rise over the perfect refiner |",
      "|---|---|---|---|"]
  base = results[0][2]["two_sample_accuracy"]
  for name, factors, r in results:
    label = name if not factors or len(factors) > 3 else f"{name} (`{'`, `'.join(factors)}`)"
    lines.append(f"| {label} | {100 * r['two_sample_accuracy']:.1f}% | "
                 f"[{100 * r['two_sample_low']:.1f}, {100 * r['two_sample_high']:.1f}] | "
                 f"{100 * (r['two_sample_accuracy'] - base):+.1f} points |")
  text = "\n".join(lines) + "\n"
  print(text)
  if _OUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
      f.write(text)


if __name__ == "__main__":
  app.run(main)
