"""Named training and evaluation sets for the hand pose estimator.

The specs of ``tasks.data`` (``npz:PATH``, ``tfds:PATH[:SPLIT]``,
``NAME[/BUILDER_CONFIG][:SPLIT]``, e.g. ``nyu_hand/real:test``) plus the built-in
``handsim`` (rendered inside the train step; as an evaluation set,
``config.num_simulator_eval`` fixed renders) and ``handsim_target[:SPLIT]``
(``validation`` for training by default, ``test`` for evaluation). Every set
must carry a ``joints`` label [N, 14, 2] in image pixels.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import DataError
from simgan_jax.tasks import data as data_lib
from simgan_jax.simulators import hand_sources

_SIMULATOR_EVAL_SEED = 20_170_722
_RENDER_CHUNK = 256


def _section(spec: str, config, training: bool):
  section = data_lib.data_config(spec, config, training)
  if section.name not in ("handsim", "handsim_target") and "labels" in section:
    section.labels = "joints"
  return section


def train_source(spec: str, config) -> sources_lib.ImageSource:
  """The source to train on; an in-memory pool keeps only its joints."""
  source = sources_lib.make_source(_section(spec, config, True), data_lib.image_shape(config), "train_data")
  if isinstance(source, sources_lib.ArraySource):
    if "joints" not in source.labels:
      raise DataError(f"--train_data={spec}: no 'joints' labels (found: {', '.join(source.labels) or 'none'})")
    # replace, not a new ArraySource: shard_pool and a host_shard share (rows, offset) stay.
    source = dataclasses.replace(source, labels={"joints": source.labels["joints"].astype(np.float32)})
  return source


def eval_set(spec: str, config) -> tuple[np.ndarray, np.ndarray]:
  """(images [N, H, W, 1], joints [N, 14, 2]) of an evaluation set."""
  section = _section(spec, config, False)
  shape = data_lib.image_shape(config)
  if section.name == "handsim_target":
    images, labels = hand_sources.load_labelled_split(section, shape, section.split)
    return images, labels["joints"].astype(np.float32)
  source = sources_lib.make_source(section, shape, "eval_data")
  if section.name == "handsim":
    return render_simulator_set(source, config.num_simulator_eval)
  if "joints" not in getattr(source, "labels", {}):
    raise DataError(f"--eval_data={spec}: no 'joints' labels")
  return source.images, np.asarray(source.labels["joints"], np.float32)


def render_simulator_set(source, num: int) -> tuple[np.ndarray, np.ndarray]:
  """``num`` fixed renders of the hand simulator, as uint8 images and joints."""
  key = jax.random.PRNGKey(_SIMULATOR_EVAL_SEED)
  sample = jax.jit(lambda keys: source.sample({}, keys))
  chunk = min(num, _RENDER_CHUNK)
  images, joints = [], []
  for start in range(0, num, chunk):
    batch = sample(jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(chunk)))
    images.append(sources_lib.from_unit_range(batch["image"]))
    joints.append(np.asarray(batch["joints"], np.float32))
  return np.concatenate(images)[:num], np.concatenate(joints)[:num]


def eval_sets(specs: str, config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  names = [s.strip() for s in specs.split(",") if s.strip()]
  if not names:
    raise DataError("--eval_data: no evaluation set named")
  return {name: eval_set(name, config) for name in names}
