"""Registers the built-in eye sources with ``simgan_jax.data.sources``.

* ``eyesim``: simulator images rendered on device from the per-example keys
  (``device_data()`` is ``{}``), with their labels. Optional config fields: any
  ``EyeSimConfig`` range (e.g. ``gaze_pitch_deg = (-25., 10.)``) or
  ``gaze_sampling``.
* ``eyesim_target``: the cached target pool (``target_dataset``) as an
  ``ArraySource`` of uint8 images. Optional fields: ``split`` ("train",
  "validation" or "test"; default "train"), ``cache_dir``, ``num_train``,
  ``num_validation``, ``num_test``, ``seed``.

The image size and channel count come from the main config's ``image_shape``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from simgan_jax.data.sources import ArraySource, register_source
from simgan_jax.simulators import eyes, target, target_dataset

# Declared in every data section so the command line can set them; unused here.
GENERIC_FIELDS = ("path", "data_dir", "builder_config", "max_examples", "host_shard", "labels",
                  "shard_pool", "manual_dir")
_TARGET_FIELDS = ("name", "split", "cache_dir", "num_train", "num_validation", "num_test", "seed")


def _fields(config: Any) -> dict[str, Any]:
  """The section's fields, less the generic ones every data section declares
  (``configs.default.data_config``) that these sources do not use."""
  fields = dict(config.items()) if hasattr(config, "items") else {}
  return {k: v for k, v in fields.items() if k not in GENERIC_FIELDS or k in _TARGET_FIELDS}


def _scene_config(base: eyes.EyeSimConfig, image_shape, source: str, **overrides):
  if len(image_shape) != 3 or image_shape[2] not in (1, 3):
    raise ValueError(f"{source}: image_shape must be (H, W, 1 or 3), got {tuple(image_shape)}")
  try:
    return dataclasses.replace(base, height=int(image_shape[0]), width=int(image_shape[1]),
                               channels=int(image_shape[2]), **overrides)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: {e}") from None


@dataclasses.dataclass(frozen=True)
class SimulatorSource:
  """Renders simulator eyes on device; one scene per key."""

  config: eyes.EyeSimConfig

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (self.config.height, self.config.width, self.config.channels)

  def device_data(self) -> dict:
    return {}

  def sample(self, data, keys_B: jax.Array) -> dict[str, jax.Array]:
    del data
    images, labels = eyes.render_batch(keys_B, self.config)
    return {"image": images, **labels}


@register_source("eyesim")
def eyesim_source(config, image_shape) -> SimulatorSource:
  overrides = {}
  scene_fields = set(eyes.PARAM_NAMES) | {"gaze_sampling"}
  for field, value in _fields(config).items():
    if field in _TARGET_FIELDS:  # "name", and the target pool's fields, declared everywhere
      continue
    if field not in scene_fields:
      raise ValueError(f"eyesim config field {field!r}: unknown; known: name, "
                       f"{', '.join(sorted(scene_fields))}")
    overrides[field] = tuple(value) if isinstance(value, (list, tuple)) else value
  return SimulatorSource(_scene_config(eyes.EyeSimConfig(), image_shape, "eyesim", **overrides))


def dataset_config(config, image_shape) -> target_dataset.TargetDatasetConfig:
  """The ``TargetDatasetConfig`` that an ``eyesim_target`` config section names."""
  fields = _fields(config)
  for field in fields:
    if field not in _TARGET_FIELDS:
      raise ValueError(f"eyesim_target config field {field!r}: unknown; known: "
                       f"{', '.join(_TARGET_FIELDS)}")
  defaults = target_dataset.TargetDatasetConfig()
  counts = {}
  for field in ("num_train", "num_validation", "num_test", "seed"):
    value = fields.get(field, getattr(defaults, field))
    low = 0 if field == "seed" else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"eyesim_target config field {field!r}: expected an integer >= {low}, "
                       f"got {value!r}")
    counts[field] = int(value)
  scene = _scene_config(target.TARGET_SCENE, image_shape, "eyesim_target")
  return dataclasses.replace(defaults, target=dataclasses.replace(defaults.target, scene=scene),
                             **counts)


def _split(config) -> str:
  split = _fields(config).get("split", "train")
  if split not in target_dataset.SPLITS:
    raise ValueError(f"eyesim_target config field 'split': expected one of "
                     f"{', '.join(target_dataset.SPLITS)}, got {split!r}")
  return split


def load_labelled_split(config, image_shape, split: str = "test"
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(uint8 images [N, H, W, C], labels) of a target split, for evaluation code.

  ``config`` is the ``real_data`` config section (its ``split`` is ignored), e.g.
  ``load_labelled_split(config.real_data, (35, 55, 1), "test")``.
  """
  if split not in ("validation", "test"):
    raise ValueError(f"split: expected 'validation' or 'test' (train is unlabelled), got {split!r}")
  return target_dataset.load_split(split, dataset_config(config, image_shape),
                                   cache_dir=_fields(config).get("cache_dir"))


@register_source("eyesim_target")
def eyesim_target_source(config, image_shape) -> ArraySource:
  split = _split(config)
  images, labels = target_dataset.load_split(split, dataset_config(config, image_shape),
                                             cache_dir=_fields(config).get("cache_dir"))
  shard_pool = (config.get("shard_pool") if hasattr(config, "get") else None) or "auto"
  return ArraySource(images, labels, shard_pool=shard_pool, where=f"eyesim_target split {split!r}")
