"""Trained refiners shipped with the package: ``--checkpoint=pretrained:NAME``.

A shipped refiner is a folder ``simgan_jax/pretrained/NAME/`` with the run's
``config.json`` (as ``train.py`` wrote it), ``refiner.msgpack`` (the refiner's
parameters, ``flax.serialization``), ``meta.json`` (source workdir, step, scores)
and ``MODEL_CARD.md``. ``export`` makes one from a SimGAN workdir
(``launch/export_refiner.py``); ``refine.load_config`` / ``refine.restore_refiner``
/ ``refine.refine_dataset`` accept ``pretrained:NAME`` (or such a folder) wherever
they accept a workdir. Only the refiner ships: no discriminator, optimiser state
or history, so it refines but cannot resume training.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax.errors import ConfigError

PREFIX = "pretrained:"
ROOT = pathlib.Path(__file__).with_name("pretrained")
PARAMS, META, CONFIG, CARD = "refiner.msgpack", "meta.json", "config.json", "MODEL_CARD.md"


def available() -> list[str]:
  return sorted(p.name for p in ROOT.iterdir() if (p / PARAMS).is_file()) if ROOT.is_dir() else []


def resolve(checkpoint: str) -> str:
  """``pretrained:NAME`` -> its folder; anything else unchanged."""
  if not str(checkpoint).startswith(PREFIX):
    return checkpoint
  name = str(checkpoint)[len(PREFIX):]
  if name not in available():
    raise ConfigError(f"--checkpoint {checkpoint}: no shipped refiner {name!r}; "
                      f"shipped: {', '.join(available()) or 'none'}")
  return str(ROOT / name)


def is_pretrained(directory: str) -> bool:
  return os.path.isfile(os.path.join(directory, PARAMS))


def meta(directory: str) -> dict[str, Any]:
  with open(os.path.join(directory, META)) as f:
    return json.load(f)


def load_refiner(config, directory: str) -> tuple[Any, int]:
  """(refiner params as host arrays, the step they were saved at)."""
  from simgan_jax import models  # pylint: disable=g-import-not-at-top

  refiner = models.make_refiner(config)
  shape = (1, config.image_height, config.image_width, config.channels)
  noise = models.refiner_noise(refiner, jax.random.PRNGKey(0)[None], shape[1:3])
  like = jax.eval_shape(lambda: refiner.init(jax.random.PRNGKey(0), jnp.zeros(shape), noise)["params"])
  path = os.path.join(directory, PARAMS)
  try:
    with open(path, "rb") as f:
      params = flax.serialization.from_bytes(jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like), f.read())
  except (OSError, ValueError, KeyError) as e:
    raise ConfigError(f"{path}: cannot read the shipped refiner ({type(e).__name__}: {e})") from None
  mismatched = [jax.tree_util.keystr(k) for (k, a), b in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                                             jax.tree.leaves(like)) if a.shape != b.shape]
  if mismatched:
    raise ConfigError(f"{path}: parameters do not fit its config.json ({', '.join(mismatched)})")
  return params, int(meta(directory)["step"])


def export(config, workdir: str, step: int | None, out_dir: str, *, name: str, command: str = "",
           note: str = "") -> dict[str, Any]:
  """Writes the refiner of ``workdir``'s checkpoint ``step`` (None: newest) as a shipped
  refiner with its model card; returns its meta (step, scores, ...)."""
  from simgan_jax.evaluation import refine, selection  # pylint: disable=g-import-not-at-top

  params, step = refine.restore_refiner(config, workdir, step)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, PARAMS), "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  with open(os.path.join(workdir, CONFIG)) as src, open(os.path.join(out_dir, CONFIG), "w") as dst:
    dst.write(src.read())
  info = {"step": step, "num_parameters": int(sum(np.size(x) for x in jax.tree.leaves(params))),
          "workdir": os.path.abspath(workdir), "command": command, "date": datetime.date.today().isoformat(),
          "scores": selection.checkpoint_metrics(workdir).get(step, {})}
  with open(os.path.join(out_dir, META), "w") as f:
    json.dump(info, f, indent=1, sort_keys=True)
  with open(os.path.join(out_dir, CARD), "w") as f:
    f.write(_model_card(name, config, info, command, note))
  return info


CARD_SCORES = (("realism_kid", "realism KID (lower is more real)"),
           ("realism_kid_unrefined", "realism KID of the unrefined synthetic images"),
           ("two_sample_accuracy", "two-sample classifier accuracy, refined vs real (0.5: indistinguishable)"),
           ("two_sample_low", "its 95% Wilson interval, low"), ("two_sample_high", "its 95% Wilson interval, high"),
           ("label_drift", "label drift of a synthetic-trained task network"),
           ("selection_score", "selection score"))


def _model_card(name: str, config, info: dict, command: str, note: str) -> str:
  scores = info.get("scores", {})
  rows = "\n".join(f"| {label} | {scores[key]:.4g} |" for key, label in CARD_SCORES if key in scores)
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
