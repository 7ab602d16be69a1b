"""Why a checkpoint does not fit the config: the one line ``train_and_evaluate`` raises.

``mismatch_message`` rebuilds the train state's shapes from the workdir's
config.json one changed field at a time, to name the config fields that changed
the shapes since the checkpoint was written.
"""

from __future__ import annotations

import json
import os

import jax

from simgan_jax import checkpoints
from simgan_jax import training


def mismatch_message(e: checkpoints.ShapeMismatch, config, workdir: str) -> str:
  """One line: the checkpoint step, the config fields that changed shapes since the
  workdir's config.json (found by rebuilding the state's shapes one field at a
  time), and the first differing arrays."""
  fields = []
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      stored = json.load(f)
  except (OSError, ValueError):
    stored = None
  if stored is not None:
    fields = _shape_fields(stored, config)
  head = f"config does not fit checkpoint step {e.step} in {e.directory}"
  if fields:
    head += ": " + ", ".join(f"config.{name} is {new!r}, the checkpoint's run had {old!r}"
                             for name, old, new in fields)
  arrays = "; ".join(e.differences[:2]) + ("; ..." if len(e.differences) > 2 else "")
  return f"{head} ({arrays}). Use another --workdir, or the checkpoint's values"


def _flat(tree, prefix="") -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
  return out


def _state_shapes(config_dict: dict):
  import ml_collections  # pylint: disable=g-import-not-at-top

  config = ml_collections.ConfigDict(config_dict)
  setup = training.make_setup(config, None, None, 1)
  return checkpoints._shapes(jax.eval_shape(lambda: training.init_state(setup)))  # pylint: disable=protected-access


def _shape_fields(stored: dict, config) -> list[tuple[str, object, object]]:
  """(field, stored value, new value) for each differing field that alone changes shapes."""
  new = json.loads(config.to_json_best_effort())
  flat_old, flat_new = _flat(stored), _flat(new)
  changed = [k for k in flat_new if k in flat_old and flat_old[k] != flat_new[k]]
  try:
    base = _state_shapes(stored)
  except Exception:  # pylint: disable=broad-except
    return []
  out = []
  for name in changed[:40]:
    trial = json.loads(json.dumps(stored))
    node = trial
    *parents, leaf = name.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = new_value = _get(new, name)
    try:
      if _state_shapes(trial) != base:
        out.append((name, flat_old[name], new_value if not isinstance(new_value, list) else tuple(new_value)))
    except Exception:  # pylint: disable=broad-except
      continue
  return out


def _get(tree: dict, name: str):
  for part in name.split("."):
    tree = tree[part]
  return tree
