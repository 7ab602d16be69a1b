r"""Ships a trained refiner with the package (``--checkpoint=pretrained:NAME``); logic in
simgan_jax.pretrained.

  python launch/export_refiner.py --workdir=runs/repro_cpu/simgan --step=best --name=eyesim \
      --command="python launch/reproduce.py --experiment=eyesim_gaze:cpu --workdir=runs/repro_cpu"

Writes simgan_jax/pretrained/NAME/: config.json, refiner.msgpack (the refiner's
parameters only), meta.json and MODEL_CARD.md (config, the command that trained it,
the checkpoint's scores from metrics.jsonl, the date). ``--step=best`` takes the
checkpoint with the lowest selection_score, as ``refine.py --step=best`` does.
"""

import datetime
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
_OUT = flags.DEFINE_string("out", "", "Output folder (default: simgan_jax/pretrained/NAME).")
flags.mark_flags_as_required(["workdir", "name"])

_SCORES = (("realism_kid", "realism KID (lower is more real)"),
           ("realism_kid_unrefined", "realism KID of the unrefined synthetic images"),
           ("two_sample_accuracy", "two-sample classifier accuracy, refined vs real (0.5: indistinguishable)"),
           ("two_sample_low", "its 95% Wilson interval, low"), ("two_sample_high", "its 95% Wilson interval, high"),
           ("label_drift", "label drift of a synthetic-trained task network"),
           ("selection_score", "selection score"))


def model_card(name: str, config, info: dict, command: str, note: str) -> str:
  scores = info.get("scores", {})
  rows = "\n".join(f"| {label} | {scores[key]:.4g} |" for key, label in _SCORES if key in scores)
  return f"""# Shipped refiner `pretrained:{name}`

{note}

- Date exported: {info['date']}; checkpoint step {info['step']} of `{info['workdir']}`; {info['num_parameters']:,} parameters.
- Trained by: `{command or '(not given)'}`
- Refiner: {config.refiner.num_blocks} ResNet blocks x {config.refiner.features} features, {config.refiner.kernel_size}x{config.refiner.kernel_size} kernels, padding {config.refiner.get('padding', 'SAME')}, {config.refiner.get('noise_channels', 0)} noise channel(s), output {config.refiner.output_activation}; input {config.image_height}x{config.image_width}x{config.channels} in [-1, 1].
- Data: `{config.synthetic_data.name}` refined towards `{config.real_data.name}`; batch {config.batch_size}, lambda {config.loss.self_regularization_weight}, {config.optimizer.name} lr {config.optimizer.learning_rate}, Kg {config.kg}, Kd {config.kd}.

Scores logged at that checkpoint (`metrics.jsonl`, label-free; simgan_jax/evaluation):

| measure | value |
|---|---|
{rows}

Use: `python launch/refine.py --checkpoint=pretrained:{name} --data=eyesim --num_examples=64 --format=png --out=runs/refined_pretrained`.
Only the refiner ships (no discriminator, optimiser state or history): it refines, it does not resume training.
"""


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from simgan_jax import pretrained  # pylint: disable=g-import-not-at-top
  from simgan_jax.evaluation import refine, selection  # pylint: disable=g-import-not-at-top

  workdir = _WORKDIR.value
  config = refine.load_config(workdir)
  step = selection.resolve_step(config, workdir, _STEP.value)
  if step is None:
    step = refine.saved_steps(workdir)[-1] if refine.saved_steps(workdir) else None
  scores = selection.checkpoint_metrics(workdir).get(step, {})
  out = _OUT.value or str(pretrained.ROOT / _NAME.value)
  info = {"workdir": os.path.abspath(workdir), "command": _COMMAND.value,
          "date": datetime.date.today().isoformat(), "scores": scores}
  pretrained.export(config, workdir, step, out, info)
  info = pretrained.meta(out)
  with open(os.path.join(out, pretrained.CARD), "w") as f:
    f.write(model_card(_NAME.value, config, info, _COMMAND.value, _NOTE.value))
  size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
  print(f"exported the refiner of step {info['step']} to {out} ({size / 1e6:.2f} MB); "
        f"use --checkpoint=pretrained:{_NAME.value}")
  print(json.dumps({k: scores[k] for k, _ in _SCORES if k in scores}))


if __name__ == "__main__":
  common.run(main)
