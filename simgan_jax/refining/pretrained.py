"""Trained refiners shipped with the package: ``--checkpoint=pretrained:NAME``.

A shipped refiner is a folder ``simgan_jax/refining/pretrained/NAME/`` with the run's
``config.json`` (as ``train.py`` wrote it), ``refiner.msgpack`` (the refiner's
parameters, ``flax.serialization``), ``meta.json`` (source workdir, step, scores)
and ``MODEL_CARD.md``. ``simgan_jax.refining.export`` makes one from a SimGAN workdir
(``launch/export_refiner.py``); ``refine.load_config`` / ``refine.restore_refiner``
/ ``refine.refine_dataset`` accept ``pretrained:NAME`` (or such a folder) wherever
they accept a workdir. Only the refiner ships: no discriminator, optimiser state
or history, so it refines but cannot resume training.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax.errors import ConfigError
from simgan_jax import models

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
