r"""Which label-free selection rule picks the checkpoint that helps most? Logic:
simgan_jax/probe/compare.py.

  python launch/compare_selection.py --workdir=runs/cpu --out=runs/cpu_selection
  python launch/compare_selection.py --workdir=runs/mine \
      --downstream_data=image_folder/32x32x1:validation --out=runs/mine_selection

For every checkpoint of a finished SimGAN run: the logged probe measures and the
rules of simgan_jax/probe/rules.py (reverse validation, agreement, entropy), and
the downstream truth they try to predict: the error on --downstream_data (labelled
target-domain images; a validation split: the test split is refused) of a small
task network trained on the checkpoint's refined images. Prints and writes
OUT/compare.json and OUT/compare.md: per rule its pick, that pick's error beside
the best and worst checkpoint's, the regret (0 = picked the best) and the Spearman
correlation over all checkpoints. Minutes per checkpoint on 2 CPU cores at
``:cpu`` sizes (module docstring of simgan_jax/probe/compare.py).
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "A SimGAN training workdir (config.json, checkpoints/).")
_OUT = flags.DEFINE_string("out", None, "Folder for compare.json and compare.md.")
_DOWNSTREAM = flags.DEFINE_string("downstream_data", "eyesim_target:validation",
                                  "Labelled target-domain set to judge the checkpoints on (not a test split).")
_NUM = flags.DEFINE_integer("num_images", 1024, "Synthetic images refined per checkpoint.")
_NUM_REAL = flags.DEFINE_integer("num_real", 1024, "Unlabelled real images the rules use.")
_SEEDS = flags.DEFINE_list("downstream_seeds", ["0"], "Seeds of the downstream task networks.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared TFDS datasets ('' = the default).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from simgan_jax.refining import refine  # pylint: disable=g-import-not-at-top
  from simgan_jax.probe import compare  # pylint: disable=g-import-not-at-top

  config = refine.load_config(_WORKDIR.value)
  saved = os.path.join(_OUT.value, "compare.json")
  settings = {"workdir": os.path.abspath(_WORKDIR.value), "downstream_data": _DOWNSTREAM.value,
              "num_images": _NUM.value, "num_real": _NUM_REAL.value, "downstream_seeds": _SEEDS.value}
  previous = compare.load_result(saved) if os.path.exists(saved) else None
  if previous is not None and previous.get("settings") == settings:
    result = previous  # done before with the same flags: only the tables are written again
    common.say(f"compare: {saved} has this comparison already; writing the tables again")
  else:
    downstream = compare.load_downstream(_DOWNSTREAM.value, config, _DATA_DIR.value)
    result = compare.compare(config, _WORKDIR.value, downstream, num_images=_NUM.value,
                             num_real=_NUM_REAL.value, downstream_seeds=[int(s) for s in _SEEDS.value],
                             log=common.say)
    os.makedirs(_OUT.value, exist_ok=True)
    compare.save_result(saved, result, settings=settings)
  lines = [f"# Selection rules on {_WORKDIR.value}", "",
           f"`python launch/compare_selection.py --workdir={_WORKDIR.value} --downstream_data={_DOWNSTREAM.value} "
           f"--num_images={_NUM.value} --num_real={_NUM_REAL.value} --downstream_seeds={','.join(_SEEDS.value)} "
           f"--out={_OUT.value}` ({result['seconds'] / 60:.1f} min)", "", *compare.table(result)]
  with open(os.path.join(_OUT.value, "compare.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(compare.table(result)))
  print(f"written: {os.path.join(_OUT.value, 'compare.md')}, compare.json")


if __name__ == "__main__":
  common.run(main)
