r"""Which label-free selection rule picks the checkpoint that helps most? Logic:
simgan_jax/probe/compare.py.

  python launch/compare_selection.py --workdir=runs/cpu --out=runs/cpu_selection
  python launch/compare_selection.py --workdir=runs/mine \
      --downstream_data=image_folder/32x32x1:validation --out=runs/mine_selection
  # Several SimGAN seeds of one setting (reproduce's simgan_seeds), judged together:
  python launch/compare_selection.py --out=runs/selection_eyes \
      --workdir=runs/repro_cpu/simgan,runs/repro_cpu/simgan_seed1/simgan,runs/repro_cpu/simgan_seed2/simgan

For every checkpoint of a finished SimGAN run: the logged probe measures and the
rules of simgan_jax/probe/rules.py (reverse validation, agreement, entropy), and
the downstream truth they try to predict: the error on --downstream_data (labelled
target-domain images; a validation split: the test split is refused) of a small
task network trained on the checkpoint's refined images. Prints and writes
OUT/compare.json and OUT/compare.md: per rule its pick, that pick's error beside
the best and worst checkpoint's, the regret (0 = picked the best) and the Spearman
correlation over all checkpoints; with several workdirs, OUT/run<k>/ per run and
OUT/compare.md with each rule's mean regret and its spread over the runs. Minutes per checkpoint on 2 CPU cores at
``:cpu`` sizes (module docstring of simgan_jax/probe/compare.py).
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_list("workdir", None, "SimGAN training workdirs (config.json, checkpoints/): one, "
                             "or several runs of the same setting (SimGAN seeds) to judge the rules over.")
_OUT = flags.DEFINE_string("out", None, "Folder for compare.json and compare.md (several workdirs: run<k>/ "
                           "each, and compare.md over all).")
_REPORT = flags.DEFINE_string("report", "", "Also write the markdown report here (e.g. docs/selection_eyesim.md).")
_DOWNSTREAM = flags.DEFINE_string("downstream_data", "eyesim_target:validation",
                                  "Labelled target-domain set to judge the checkpoints on (not a test split).")
_NUM = flags.DEFINE_integer("num_images", 1024, "Synthetic images refined per checkpoint.")
_NUM_REAL = flags.DEFINE_integer("num_real", 1024, "Unlabelled real images the rules use.")
_SEEDS = flags.DEFINE_list("downstream_seeds", ["0"], "Seeds of the downstream task networks.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared TFDS datasets ('' = the default).")
_LABEL = flags.DEFINE_string("label", "", "The synthetic label the rules' and the downstream task networks "
                             "learn (config.drift.label; '' = the run's choice, e.g. 'joints' for hands).")
_STEPS = flags.DEFINE_list("steps", [], "Checkpoint steps to judge ('' = every checkpoint on disk).")
flags.mark_flags_as_required(["workdir", "out"])


def _one_run(workdir: str, out: str, downstream_cache: dict) -> dict:
  """compare.json of one workdir under ``out`` (read back when done before with the same flags)."""
  from simgan_jax.refining import refine  # pylint: disable=g-import-not-at-top
  from simgan_jax.probe import compare  # pylint: disable=g-import-not-at-top

  config = refine.load_config(workdir)
  if _LABEL.value:
    config.drift.label = _LABEL.value
  steps = [int(step) for step in _STEPS.value] or None
  if steps:  # a subset: --step=best's own pick is always judged with it
    from simgan_jax.probe import selection  # pylint: disable=g-import-not-at-top

    steps = sorted(set(steps) | set(selection.ranked_steps(config, workdir)[:1]))
  saved = os.path.join(out, "compare.json")
  settings = {"workdir": os.path.realpath(workdir), "downstream_data": _DOWNSTREAM.value,
              "num_images": _NUM.value, "num_real": _NUM_REAL.value, "downstream_seeds": _SEEDS.value,
              **({"label": _LABEL.value} if _LABEL.value else {}), **({"steps": steps} if steps else {})}
  previous = compare.load_result(saved) if os.path.exists(saved) else None

  def downstream():  # loaded once, and only when something is measured
    if "data" not in downstream_cache:
      downstream_cache["data"] = compare.load_downstream(_DOWNSTREAM.value, config, _DATA_DIR.value)
    return downstream_cache["data"]

  # The measure's noise depends only on the synthetic images and the task network: runs of
  # one setting (SimGAN seeds) share it.
  noise_key = json.dumps([config.synthetic_data.to_dict(), config.drift.to_dict(), _NUM.value], sort_keys=True,
                         default=str)
  noises = downstream_cache.setdefault("noise", {})

  if previous is not None and previous.get("settings") == settings:
    common.say(f"compare: {saved} has this comparison already; writing the tables again")
    if "downstream_noise" not in previous:  # saved before the noise was measured: add it
      previous["downstream_noise"] = noises.get(noise_key) or compare.downstream_noise(
          config, downstream(), num_images=_NUM.value)
      common.say(f"compare: downstream noise of {workdir}: std {previous['downstream_noise']['std']:.3g}")
      compare.save_result(saved, previous)
    noises[noise_key] = previous["downstream_noise"]
    return compare.with_default_rule(previous, config, workdir)  # under today's selection code
  result = compare.compare(config, workdir, downstream(), num_images=_NUM.value,
                           num_real=_NUM_REAL.value, downstream_seeds=[int(s) for s in _SEEDS.value],
                           steps=steps, noise=noises.get(noise_key), log=common.say)
  noises[noise_key] = result["downstream_noise"]
  os.makedirs(out, exist_ok=True)
  compare.save_result(saved, result, settings=settings)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from simgan_jax.probe import compare  # pylint: disable=g-import-not-at-top

  workdirs = _WORKDIR.value
  several = len(workdirs) > 1
  outs = [os.path.join(_OUT.value, f"run{k}") if several else _OUT.value for k in range(len(workdirs))]
  cache = {}
  results = [_one_run(w, o, cache) for w, o in zip(workdirs, outs)]
  command = (f"python launch/compare_selection.py --workdir={','.join(workdirs)} "
             f"--downstream_data={_DOWNSTREAM.value} --num_images={_NUM.value} --num_real={_NUM_REAL.value} "
             f"--downstream_seeds={','.join(_SEEDS.value)} --out={_OUT.value}"
             + (f" --data_dir={_DATA_DIR.value}" if _DATA_DIR.value else "")
             + (f" --label={_LABEL.value}" if _LABEL.value else "")
             + (f" --steps={','.join(_STEPS.value)}" if _STEPS.value else "")
             + (f" --report={_REPORT.value}" if _REPORT.value else ""))
  minutes = sum(r["seconds"] for r in results) / 60
  lines = [f"# Which label-free rule picks the checkpoint that helps most?", "",
           f"Made by `{command}` ({minutes:.1f} min of comparison; {_NUM.value} refined images per "
           f"checkpoint, downstream seeds {','.join(_SEEDS.value)}). Lower is better for every rule.", ""]
  if several:
    lines += ["## Over all runs", "", *compare.summary(results, [f"run{k}" for k in range(len(results))]), ""]
    for k, (workdir, result) in enumerate(zip(workdirs, results)):
      lines += [f"## run{k}: `{workdir}`", "", *compare.table(result), ""]
  else:
    lines += [*compare.table(results[0]),
              "", "One SimGAN run: a rule's pick here is one draw; compare rules over several runs "
              "(--workdir=RUN1,RUN2,RUN3)."]
  os.makedirs(_OUT.value, exist_ok=True)
  paths = [os.path.join(_OUT.value, "compare.md")] + ([_REPORT.value] if _REPORT.value else [])
  for path in paths:
    with open(path, "w") as f:
      f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  print(f"written: {', '.join(paths)}")


if __name__ == "__main__":
  common.run(main)
