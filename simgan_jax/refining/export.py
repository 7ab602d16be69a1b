"""Exporting a trained refiner as a shipped one (``launch/export_refiner.py``): its params,
config, scores and a model card, in the layout ``pretrained.py`` reads."""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import flax.serialization
import jax
import numpy as np

from simgan_jax import models
from simgan_jax import run_setup
from simgan_jax.refining import pretrained
from simgan_jax.refining import refine
from simgan_jax.probe import selection


def export(config, workdir: str, step: int | None, out_dir: str, *, name: str, command: str = "",
           note: str = "") -> dict[str, Any]:
  """Writes the refiner of ``workdir``'s checkpoint ``step`` (None: newest) as a shipped
  refiner with its model card; returns its meta (step, scores, ...)."""
  params, step = refine.restore_refiner(config, workdir, step)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, pretrained.PARAMS), "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  with open(os.path.join(workdir, pretrained.CONFIG)) as src, open(os.path.join(out_dir, pretrained.CONFIG), "w") as dst:
    dst.write(src.read())
  info = {"step": step, "num_parameters": int(sum(np.size(x) for x in jax.tree.leaves(params))),
          "workdir": workdir,  # as given (e.g. runs/...), not this machine's absolute path
          "command": command, "date": datetime.date.today().isoformat(),
          "scores": checkpoint_scores(config, workdir, step)}
  with open(os.path.join(out_dir, pretrained.META), "w") as f:
    json.dump(info, f, indent=1, sort_keys=True)
  with open(os.path.join(out_dir, pretrained.CARD), "w") as f:
    f.write(model_card(name, config, info, command, note))
  return info


def checkpoint_scores(config, workdir: str, step: int) -> dict[str, Any]:
  """The probe entry logged at ``step``, with ``selection_score`` recomputed under
  ``config``'s selection rule (the one shipped in config.json): a run re-selected under a
  newer rule logged its scores under the old one."""
  scores = dict(selection.checkpoint_metrics(workdir).get(step, {}))
  recomputed = selection.selection_scores(config, workdir)
  if step in recomputed:
    scores["selection_score"] = recomputed[step]
  return scores


CARD_SCORES = (("realism_kid", "realism KID (lower is more real)"),
           ("realism_kid_unrefined", "realism KID of the unrefined synthetic images"),
           ("two_sample_accuracy", "two-sample classifier accuracy, refined vs real (0.5: indistinguishable)"),
           ("two_sample_low", "its 95% Wilson interval, low"), ("two_sample_high", "its 95% Wilson interval, high"),
           ("label_drift", "label drift of a synthetic-trained task network"),
           ("selection_score", "selection score"))


# Synthetic sources whose name is also a complete data spec for launch/refine.py --data.
SIMULATOR_SPECS = ("eyesim", "handsim")


def model_card(name: str, config, info: dict, command: str, note: str) -> str:
  scores = info.get("scores", {})
  data = config.synthetic_data.name if config.synthetic_data.name in SIMULATOR_SPECS else "YOUR_DATA_SPEC"
  labels = dict(CARD_SCORES)
  if config.get("selection") is not None:
    labels["selection_score"] = f"selection score (`{config.selection.metric}`, lower is better)"
  rows = "\n".join(f"| {labels[key]} | {scores[key]:.4g} |" for key, _ in CARD_SCORES if key in scores)
  return f"""# Shipped refiner `pretrained:{name}`

{note}

- Date exported: {info['date']}; checkpoint step {info['step']} of `{info['workdir']}`; {info['num_parameters']:,} parameters.
- Trained by: `{command or '(not given)'}`
- Refiner: {models.trunk_text(config.refiner)}, padding {config.refiner.get('padding', 'SAME')}, {config.refiner.get('noise_channels', 0)} noise channel(s), output {config.refiner.output_activation}{''.join(', ' + e for e in models.refiner_extras(config.refiner))}; input {config.image_height}x{config.image_width}x{config.channels} in [-1, 1].
- Data: `{config.synthetic_data.name}` refined towards `{config.real_data.name}`; batch {config.batch_size}, {run_setup.self_regularization_text(config)}, {run_setup.learning_rate_text(config)}, Kg {config.kg}, Kd {config.kd}.

Scores logged at that checkpoint (`metrics.jsonl`, label-free; simgan_jax/probe):

| measure | value |
|---|---|
{rows}

Use: `python launch/refine.py --checkpoint=pretrained:{name} --data={data} --num_examples=64 --format=png --out=runs/refined_pretrained`.
Only the refiner ships (no discriminator, optimiser state or history): it refines, it does not resume training.
"""
