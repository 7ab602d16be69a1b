"""The domain a refiner was trained on, and the check before it refines other data.

A refiner learnt one mapping: synthetic images of one source, at one size and
channel count, towards one target. ``train.py`` records these in the workdir's
``config.json`` (``synthetic_data.name``, ``real_data.name``, ``image_height``,
``image_width``, ``channels``), as does a shipped refiner (``pretrained/NAME/config.json``);
``refiner_domain`` reads them back. ``check`` compares them with the data about to
be refined: another source of the same subject (eyes, hands) or an unknown one is a
warning; another subject (eyes, hands) is an error of one line unless the user allows
it on purpose (``launch/refine.py --allow_domain_mismatch``); another channel count
always is (the refiner's first convolution takes only its own), and so is another
image size unless the user's own config (``--config``) asks for that size.
"""

from __future__ import annotations

import re
from typing import Any

import ml_collections

from simgan_jax.errors import ConfigError
from simgan_jax.tasks import data as data_lib

# What the images show, for the sources whose subject is known.
SUBJECTS = {"eyesim": "eyes", "eyesim_target": "eyes", "unityeyes": "eyes", "mpiigaze": "eyes",
            "handsim": "hands", "handsim_target": "hands", "nyu_hand": "hands"}
ALLOW_FLAG = "--allow_domain_mismatch"


class DomainMismatch(ConfigError):
  """The data to refine is not what the refiner was trained on."""


def refiner_domain(config) -> dict[str, Any]:
  """{"source", "target", "image_shape": [H, W, C], "subject"} of a SimGAN config."""
  source = str(config.synthetic_data.get("name", ""))
  return {"source": source, "target": str(config.real_data.get("name", "")),
          "image_shape": [int(config.image_height), int(config.image_width), int(config.channels)],
          "subject": SUBJECTS.get(source)}


def describe(d: dict[str, Any]) -> str:
  h, w, c = d["image_shape"]
  subject = f" ({d['subject']})" if d.get("subject") else ""
  return f"{h}x{w}x{c} {d['source']} images{subject} refined towards {d['target']}"


def check(trained: dict[str, Any], data_name: str, image_shape, *, allow: bool = False,
          where: str = "--data", asked_shape=None) -> list[str]:
  """Warnings for refining ``data_name`` images of ``image_shape`` (H, W, C) with a refiner of
  domain ``trained``; raises DomainMismatch (one line) for another channel count (always: the
  refiner's first convolution takes only its own), another subject (unless ``allow``) or
  another size (unless it is ``asked_shape``, the size the user's config asks for)."""
  h, w, c = (int(v) for v in image_shape)
  th, tw, tc = trained["image_shape"]
  subject = SUBJECTS.get(data_name)
  if c != tc:
    raise DomainMismatch(f"{where}={data_name}: {c}-channel images, the refiner was trained on {tc}-channel "
                         f"ones and takes no other (prepare the images with --channels={tc})")
  if (h, w) != (th, tw) and (asked_shape is None or (h, w) != tuple(asked_shape[:2])):
    raise DomainMismatch(f"{where}={data_name}: {h}x{w} images, the refiner was trained at {th}x{tw}; "
                         f"prepare them at {th}x{tw}, or pass a --config of {h}x{w} to refine at that size")
  warnings = []
  if (h, w) != (th, tw):
    warnings.append(f"refining at {h}x{w} as the given config asks; the refiner was trained at {th}x{tw}")
  if subject and trained.get("subject") and subject != trained["subject"]:
    line = (f"{where}={data_name}: {data_name} images show {subject}, the refiner was trained on "
            f"{trained['source']} ({trained['subject']})")
    if not allow:
      raise DomainMismatch(f"{line}; pass {ALLOW_FLAG} to refine them anyway")
    warnings.append(f"{line} (allowed by {ALLOW_FLAG})")
  elif data_name != trained["source"]:
    known = "" if subject else " (a source of unknown subject)"
    warnings.append(f"{where}={data_name}{known}: the refiner was trained on {trained['source']} images; "
                    "its output may not be realistic")
  return warnings


def data_shape(section, shape) -> tuple[int, int, int]:
  """The image shape of ``section``'s data when known without reading it (a prepared
  image_folder set: its builder config ``HxWxC``), else ``shape`` (simulators render at the
  config's shape; other sets are checked against it when loaded)."""
  match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", str(section.get("builder_config") or ""))
  if section.name == "image_folder" and match:
    return tuple(int(v) for v in match.groups())
  return tuple(shape)


def check_refine(config, trained_config, data_spec: str, *, allow: bool = False, where: str = "--data",
                 asked: bool = False) -> list[str]:
  """``check`` for ``launch/refine.py``: refining ``data_spec`` at ``config``'s image shape with
  the refiner whose training config is ``trained_config`` (its ``config.json``); ``asked``:
  ``config`` is the user's own (--config), so its image size is asked for."""
  # tasks.data pulls in jax and the simulators; only this check needs it.

  options = ml_collections.ConfigDict({"data_dir": "", "cache_dir": "", "max_examples": 0})
  section = data_lib.data_config(data_spec, options, training=True)
  shape = (config.image_height, config.image_width, config.channels)
  return check(refiner_domain(trained_config), str(section.name), data_shape(section, shape), allow=allow,
               where=where, asked_shape=shape if asked else None)
