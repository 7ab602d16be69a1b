r"""Ships a trained refiner with the package (``--checkpoint=pretrained:NAME``); logic in
simgan_jax.refining.pretrained.

  python launch/export_refiner.py --workdir=runs/repro_cpu/simgan --step=best --name=eyesim \
      --command="python launch/reproduce.py --experiment=eyesim_gaze:cpu --workdir=runs/repro_cpu"

Writes simgan_jax/refining/pretrained/NAME/: config.json, refiner.msgpack (the refiner's
parameters only), meta.json and MODEL_CARD.md (config, the command that trained it,
the checkpoint's scores from metrics.jsonl, the date). ``--step=best`` takes the
checkpoint with the lowest selection_score, as ``refine.py --step=best`` does.
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "SimGAN workdir (train.py's, or reproduce's WORKDIR/simgan).")
_STEP = flags.DEFINE_string("step", "best", "Checkpoint step, or 'best' (lowest selection_score).")
_NAME = flags.DEFINE_string("name", None, "Name: --checkpoint=pretrained:NAME.")
_COMMAND = flags.DEFINE_string("command", "", "The command that trained the run (quoted in the model card).")
_NOTE = flags.DEFINE_string("note", "", "A sentence for the model card (what it is for, what it lacks).")
_OUT = flags.DEFINE_string("out", "", "Output folder (default: simgan_jax/refining/pretrained/NAME).")
flags.mark_flags_as_required(["workdir", "name"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # After absl has parsed the flags: the library pulls in JAX (launch/common.py's quiet console).
  from simgan_jax.refining import export  # pylint: disable=g-import-not-at-top
  from simgan_jax.refining import pretrained  # pylint: disable=g-import-not-at-top
  from simgan_jax.refining import refine  # pylint: disable=g-import-not-at-top
  from simgan_jax.probe import selection  # pylint: disable=g-import-not-at-top

  workdir = _WORKDIR.value
  config = refine.load_config(workdir)
  step = selection.resolve_step(config, workdir, _STEP.value)
  out = _OUT.value or str(pretrained.ROOT / _NAME.value)
  info = export.export(config, workdir, step, out, name=_NAME.value, command=_COMMAND.value, note=_NOTE.value)
  scores = info["scores"]
  size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
  print(f"exported the refiner of step {info['step']} to {out} ({size / 1e6:.2f} MB); "
        f"use --checkpoint=pretrained:{_NAME.value}")
  print(json.dumps({k: scores[k] for k, _ in export.CARD_SCORES if k in scores}))


if __name__ == "__main__":
  common.run(main)
