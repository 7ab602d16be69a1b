"""The domain a refiner was trained on, and the check before it refines other data.

A refiner learnt one mapping: synthetic images of one source, at one size and
channel count, towards one target. ``train.py`` records these in the workdir's
``config.json`` (``synthetic_data.name``, ``real_data.name``, ``image_height``,
``image_width``, ``channels``), as does a shipped refiner (``pretrained/NAME/config.json``);
``refiner_domain`` reads them back. ``check`` compares them with the data about to
be refined: another source of the same subject (eyes, hands) or an unknown one is a
warning; another subject, another channel count, or another image size is an
error of one line, unless the user allows the mismatch on purpose
(``launch/refine.py --allow_domain_mismatch``).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from simgan_jax.errors import ConfigError

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
          where: str = "--data") -> list[str]:
  """Warnings for refining ``data_name`` images of ``image_shape`` (H, W, C) with a refiner of
  domain ``trained``; raises DomainMismatch (one line) for a hard mismatch unless ``allow``."""
  h, w, c = (int(v) for v in image_shape)
  th, tw, tc = trained["image_shape"]
  subject = SUBJECTS.get(data_name)
  hard = []
  if c != tc:
    hard.append(f"{c}-channel images, the refiner was trained on {tc}-channel ones")
  if subject and trained.get("subject") and subject != trained["subject"]:
    hard.append(f"{data_name} images show {subject}, the refiner was trained on {trained['source']} "
                f"({trained['subject']})")
  if (h, w) != (th, tw):
    hard.append(f"{h}x{w} images, the refiner was trained at {th}x{tw}")
  warnings = []
  if hard:
    line = f"{where}={data_name}: " + "; ".join(hard)
    if not allow:
      raise DomainMismatch(f"{line}; pass {ALLOW_FLAG} to refine them anyway")
    warnings.append(f"{line} (allowed by {ALLOW_FLAG})")
  elif data_name != trained["source"]:
    known = "" if subject else " (a source of unknown subject)"
    warnings.append(f"{where}={data_name}{known}: the refiner was trained on {trained['source']} images; "
                    "its output may not be realistic")
  return warnings


def check_refine(config, trained_config, data_spec: str, *, allow: bool = False,
                 where: str = "--data") -> list[str]:
  """``check`` for ``launch/refine.py``: refining ``data_spec`` at ``config``'s image shape with
  the refiner whose training config is ``trained_config`` (its ``config.json``)."""
  # evaluation.data pulls in jax and the simulators; only this check needs it.
  from simgan_jax.evaluation import data as data_lib  # pylint: disable=g-import-not-at-top

  options = ml_collections.ConfigDict({"data_dir": "", "cache_dir": "", "max_examples": 0})
  name = str(data_lib.data_config(data_spec, options, training=True).name)
  shape = (config.image_height, config.image_width, config.channels)
  return check(refiner_domain(trained_config), name, shape, allow=allow, where=where)
