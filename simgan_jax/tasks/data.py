"""Named training and evaluation sets for the gaze estimator.

A set is named by a short spec, as on the command line:

* ``eyesim``: the built-in simulator, rendered inside the train step; as an
  evaluation set, ``config.num_simulator_eval`` fixed renders;
* ``eyesim_target[:SPLIT]``: the built-in target domain; ``validation`` (the
  default for training: the ``train`` split is unlabelled by design) or ``test``;
  ``config.target_eval_examples`` > 0 renders only the split's first N examples
  (example i has its own key, so they are the first N of the full split);
* ``npz:PATH``: an ``.npz`` with ``images`` and ``gaze`` arrays;
* ``tfds:PATH[:SPLIT]``: a TFDS dataset folder (the one holding
  ``dataset_info.json``), e.g. the output of ``launch/refine.py``; split ``train``
  by default;
* ``NAME[/BUILDER_CONFIG][:SPLIT]``: a prepared TFDS dataset from
  ``config.data_dir``, e.g. ``mpiigaze:test`` or ``unityeyes/35x55``; split
  ``train`` by default (TFDS slicing allowed); builder config ``35x55`` for
  ``unityeyes`` and ``crop`` for ``mpiigaze`` by default (the estimator's input).

Every spec becomes a data section of ``configs.default.data_config`` and goes
through the project's source registry (``data.sources.make_source``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from simgan_jax.configs import default
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.simulators import hand_sources, sources as eye_sources
from simgan_jax.simulators import target_dataset

# Simulator evaluation renders come from their own key, not the config seed, so a
# simulator test set is the same for every training run.
_SIMULATOR_EVAL_SEED = 20_170_721
_RENDER_CHUNK = 512
# The prepared builder configs whose images are the estimator's 35x55 grey input.
_DEFAULT_BUILDER_CONFIGS = {"unityeyes": "35x55", "mpiigaze": "crop"}


def _npz(spec, rest, config, training):
  del config, training
  if not rest:
    raise ConfigError(f"data spec {spec!r}: npz needs a path, as in npz:/data/eyes.npz")
  return default.data_config("npz", path=rest)


def _eyesim(spec, rest, config, training):
  del config, training
  if rest:
    raise ConfigError(f"data spec {spec!r}: the simulator has no splits; use 'eyesim'")
  return ml_collections.ConfigDict({"name": "eyesim"})


def _eyesim_target(spec, rest, config, training):
  split = rest or ("validation" if training else "test")
  if split == "train":
    raise ConfigError(f"data spec {spec!r}: the target train split is unlabelled by design; "
                      "use eyesim_target:validation or eyesim_target:test")
  return default.data_config("eyesim_target", split=split, cache_dir=config.cache_dir,
                             **target_split_sizes(config, target_dataset.TargetDatasetConfig()))


def target_split_sizes(config, defaults) -> dict[str, int]:
  """``num_validation``/``num_test`` of a built-in target's labelled splits:
  ``config.target_eval_examples`` (if > 0) caps the defaults; {} leaves them as they are."""
  limit = config.get("target_eval_examples", 0)
  if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
    raise ConfigError(f"config.target_eval_examples: expected an integer >= 0 (0: the whole split), got {limit!r}")
  if not limit:
    return {}
  return {f: min(int(limit), getattr(defaults, f)) for f in ("num_validation", "num_test")}


def _tfds_dir(spec, rest, config, training):
  del training
  path, split = rest, "train"
  if ":" in rest:
    path, split = rest.rsplit(":", 1)
  if not path:
    raise ConfigError(f"data spec {spec!r}: tfds needs a dataset folder, as in tfds:/data/refined")
  return default.data_config("tfds_dir", path=path, split=split or "train",
                             max_examples=config.max_examples, labels="all")


def _handsim(spec, rest, config, training):
  del config, training
  if rest:
    raise ConfigError(f"data spec {spec!r}: the simulator has no splits; use 'handsim'")
  return ml_collections.ConfigDict({"name": "handsim"})


def _handsim_target(spec, rest, config, training):
  split = rest or ("validation" if training else "test")
  if split == "train":
    raise ConfigError(f"data spec {spec!r}: the target train split is unlabelled by design; "
                      "use handsim_target:validation or handsim_target:test")
  return default.data_config("handsim_target", split=split, cache_dir=config.cache_dir,
                             **target_split_sizes(config, hand_sources.HandTargetDatasetConfig()))


# Specs with their own syntax; any other name is a prepared TFDS dataset.
_SPECIAL = {"npz": _npz, "eyesim": _eyesim, "eyesim_target": _eyesim_target, "tfds": _tfds_dir,
            "handsim": _handsim, "handsim_target": _handsim_target}


def data_config(spec: str, config, training: bool) -> ml_collections.ConfigDict:
  """The data section that ``spec`` names (see the module docstring)."""
  name, _, rest = spec.partition(":")
  if not name:
    raise ConfigError(f"data spec {spec!r}: expected NAME, NAME:SPLIT, npz:PATH or tfds:PATH")
  if name in _SPECIAL:
    return _SPECIAL[name](spec, rest, config, training)
  name, _, builder_config = name.partition("/")
  return default.data_config(name, split=rest or "train", data_dir=config.data_dir,
                             builder_config=builder_config or _DEFAULT_BUILDER_CONFIGS.get(name, ""),
                             max_examples=config.max_examples, labels="gaze")


def image_shape(config) -> tuple[int, int, int]:
  return (config.image_height, config.image_width, config.channels)


def train_source(spec: str, config) -> sources_lib.ImageSource:
  """The source to train on; an in-memory pool keeps only its gaze labels."""
  source = sources_lib.make_source(data_config(spec, config, training=True), image_shape(config),
                                   "train_data")
  if isinstance(source, sources_lib.ArraySource):
    if "gaze" not in source.labels:
      raise DataError(f"--train_data={spec}: no 'gaze' labels (found: "
                      f"{', '.join(source.labels) or 'none'})")
    # replace, not a new ArraySource: shard_pool and a host_shard share (rows, offset) stay.
    source = dataclasses.replace(source, labels={"gaze": source.labels["gaze"].astype(np.float32)})
  return source


def eval_set(spec: str, config) -> tuple[np.ndarray, np.ndarray]:
  """(images [N, H, W, C], uint8 or float in [-1, 1]; gaze [N, 3]) of an evaluation set."""
  section = data_config(spec, config, training=False)
  shape = image_shape(config)
  if section.name == "eyesim_target":
    images, labels = eye_sources.load_labelled_split(section, shape, section.split)
    return images, labels["gaze"].astype(np.float32)
  source = sources_lib.make_source(section, shape, "eval_data")
  if section.name == "eyesim":
    return render_simulator_set(source, config.num_simulator_eval)
  if "gaze" not in getattr(source, "labels", {}):
    raise DataError(f"--eval_data={spec}: no 'gaze' labels")
  return source.images, np.asarray(source.labels["gaze"], np.float32)


def render_simulator_set(source, num: int) -> tuple[np.ndarray, np.ndarray]:
  """``num`` fixed renders of a simulator source, as uint8 images and gaze."""
  key = jax.random.PRNGKey(_SIMULATOR_EVAL_SEED)
  sample = jax.jit(lambda keys: source.sample({}, keys))
  chunk = min(num, _RENDER_CHUNK)
  images, gaze = [], []
  for start in range(0, num, chunk):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(chunk))
    batch = sample(keys)
    images.append(sources_lib.from_unit_range(batch["image"]))
    gaze.append(np.asarray(batch["gaze"], np.float32))
  return np.concatenate(images)[:num], np.concatenate(gaze)[:num]


def eval_sets(specs: str, config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """A comma-separated list of specs -> {spec: (images, gaze)}."""
  names = [s.strip() for s in specs.split(",") if s.strip()]
  if not names:
    raise ConfigError("--eval_data: no evaluation set named")
  return {name: eval_set(name, config) for name in names}
