"""Registers the built-in hand sources with ``simgan_jax.data.sources``.

* ``handsim``: simulator depth hands rendered on device from the per-example keys
  (``device_data()`` is ``{}``), with the NYU builder's labels (``joints``,
  ``joints_uvd``, ``joints_xyz``, ``centre_depth``, ``crop_box``). Optional config
  fields: any ``HandSimConfig`` range (e.g. ``yaw_deg = (-30., 30.)``).
* ``handsim_target``: the cached Kinect-like pool (``hands_target``) as an
  ``ArraySource`` of uint8 images, cached like ``eyesim_target``
  (``<cache>/handsim_target/<hash>/``; labelled ``validation`` and ``test``
  splits, an unlabelled ``train`` split). Fields: ``split``, ``cache_dir``,
  ``num_train``, ``num_validation``, ``num_test``, ``seed``.

The image size comes from the main config's ``image_shape`` (H, W, 1).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import numpy as np

from simgan_jax.data.sources import ArraySource, register_source
from simgan_jax.simulators import hands, hands_target, sources as eye_sources, target_dataset

LABEL_FIELDS = ("joints", "joints_uvd", "joints_xyz", "centre_depth", "crop_box")


@dataclasses.dataclass(frozen=True)
class HandTargetDatasetConfig:
  """What the cached hand target dataset is generated from (all of it is hashed)."""

  target: hands_target.HandTargetConfig = hands_target.HandTargetConfig()
  num_train: int = 20_000
  num_validation: int = 2_000
  num_test: int = 2_000
  seed: int = 0
  generator_version: int = 1  # bump when the hand renderer's pixels change
  cache_name: ClassVar[str] = "handsim_target"
  label_fields: ClassVar[tuple[str, ...]] = LABEL_FIELDS

  def size(self, split: str) -> int:
    return getattr(self, f"num_{split}")

  def render_keys(self, keys_B):
    return _render(keys_B, self.target)


@functools.partial(jax.jit, static_argnums=1)
def _render(keys_B, config):
  return hands_target.render_batch(keys_B, config)


def _scene_config(base: hands.HandSimConfig, image_shape, source: str, **overrides):
  if len(image_shape) != 3 or image_shape[2] != 1:
    raise ValueError(f"{source}: image_shape must be (H, W, 1) for depth, got {tuple(image_shape)}")
  try:
    return dataclasses.replace(base, height=int(image_shape[0]), width=int(image_shape[1]), **overrides)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: {e}") from None


@dataclasses.dataclass(frozen=True)
class HandSimulatorSource:
  """Renders simulator hands on device; one hand per key."""

  config: hands.HandSimConfig

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (self.config.height, self.config.width, 1)

  def device_data(self) -> dict:
    return {}

  def sample(self, data, keys_B: jax.Array) -> dict[str, jax.Array]:
    del data
    images, labels = hands.render_batch(keys_B, self.config)
    return {"image": images, **labels}


@register_source("handsim")
def handsim_source(config, image_shape) -> HandSimulatorSource:
  overrides = {}
  for field, value in eye_sources._fields(config).items():  # pylint: disable=protected-access
    if field in eye_sources._TARGET_FIELDS:  # pylint: disable=protected-access
      continue
    if field not in hands.PARAM_NAMES:
      raise ValueError(f"handsim config field {field!r}: unknown; known: name, "
                       f"{', '.join(sorted(hands.PARAM_NAMES))}")
    overrides[field] = tuple(value)
  return HandSimulatorSource(_scene_config(hands.HandSimConfig(), image_shape, "handsim", **overrides))


def dataset_config(config, image_shape) -> HandTargetDatasetConfig:
  """The ``HandTargetDatasetConfig`` a ``handsim_target`` config section names."""
  fields = eye_sources._fields(config)  # pylint: disable=protected-access
  known = eye_sources._TARGET_FIELDS  # pylint: disable=protected-access
  for field in fields:
    if field not in known:
      raise ValueError(f"handsim_target config field {field!r}: unknown; known: {', '.join(known)}")
  defaults = HandTargetDatasetConfig()
  counts = {}
  for field in ("num_train", "num_validation", "num_test", "seed"):
    value = fields.get(field, getattr(defaults, field))
    low = 0 if field == "seed" else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"handsim_target config field {field!r}: expected an integer >= {low}, "
                       f"got {value!r}")
    counts[field] = int(value)
  scene = _scene_config(hands_target.TARGET_SCENE, image_shape, "handsim_target")
  return dataclasses.replace(defaults, target=dataclasses.replace(defaults.target, scene=scene), **counts)


def load_labelled_split(config, image_shape, split: str = "test"
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(uint8 images [N, H, W, 1], labels) of a labelled target split, for evaluation code."""
  if split not in ("validation", "test"):
    raise ValueError(f"split: expected 'validation' or 'test' (train is unlabelled), got {split!r}")
  return target_dataset.load_split(split, dataset_config(config, image_shape),
                                   cache_dir=eye_sources._fields(config).get("cache_dir"))  # pylint: disable=protected-access


@register_source("handsim_target")
def handsim_target_source(config, image_shape) -> ArraySource:
  split = eye_sources._fields(config).get("split", "train")  # pylint: disable=protected-access
  if split not in target_dataset.SPLITS:
    raise ValueError(f"handsim_target config field 'split': expected one of "
                     f"{', '.join(target_dataset.SPLITS)}, got {split!r}")
  images, labels = target_dataset.load_split(split, dataset_config(config, image_shape),
                                             cache_dir=eye_sources._fields(config).get("cache_dir"))  # pylint: disable=protected-access
  return ArraySource(images, labels)
