"""Several SimGAN seeds in one reproduction (``config.simgan_seeds``).

A refiner is one draw from SimGAN's training: another seed gives another refiner,
another selected checkpoint and other refined images. With ``simgan_seeds`` = (a,
b, ...) ``reproduce.run`` trains one SimGAN run per seed, selects a checkpoint,
refines and trains the refined rows' estimators (``refined_seeds``, default
``seeds``) for each; the rows that do not depend on the refiner (synthetic,
synthetic_4x, oracle, target) are trained once. A refined row is then the mean ±
standard deviation over every (SimGAN seed x estimator seed) run, and the spread
over SimGAN seeds alone (of the per-refiner means) is reported beside it.

Layout: the first SimGAN seed's stages stay at the workdir's top level
(``simgan/``, ``selection.json``, ``refined/``, ``gaze/refined/seed_<e>/``, ...),
so a single-seed workdir (``simgan_seeds`` empty: ``simgan.seed`` alone) is
unchanged and resumes; seed ``s`` of the others has the same layout under
``simgan_seed<s>/``.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Callable

import numpy as np

from simgan_jax import train
from simgan_jax.errors import ConfigError
from simgan_jax.experiments import caveats
from simgan_jax.probe import selection as selection_lib

# The rows whose images come from the refiner: trained once per SimGAN seed.
REFINER_ROWS = ("refined", "refined_4x")


def runs_text(s) -> str:
  """'3 seeds', or '6 runs: 3 SimGAN seeds x 2 estimator seeds' for a row over several refiners."""
  if s.get("num_simgan_seeds", 1) > 1:
    return f"{s['num_seeds']} runs: {s['num_simgan_seeds']} SimGAN seeds x {s['num_estimator_seeds']} estimator seeds"
  return f"{s['num_seeds']} seeds"


def simgan_seeds(config) -> list[int]:
  """The SimGAN seeds of a run: ``config.simgan_seeds``, or ``simgan.seed`` alone."""
  return [int(s) for s in (config.get("simgan_seeds") or (config.simgan.seed,))]


def refined_seeds(config) -> list[int]:
  """Estimator seeds of the refined rows, per SimGAN seed: ``refined_seeds`` or ``seeds``."""
  return [int(s) for s in (config.get("refined_seeds") or config.seeds)]


def validate(config) -> None:
  for field in ("simgan_seeds", "refined_seeds"):
    value = config.get(field) or ()
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
      raise ConfigError(f"config.{field}: expected a list of integers >= 0 (empty: the default), got {value!r}")
    if len(set(value)) != len(value):
      raise ConfigError(f"config.{field}: a seed is listed twice in {tuple(value)!r}")


def stage_root(config, workdir: str, seed: int) -> str:
  """Where SimGAN seed ``seed``'s stages live (the workdir itself for the first seed)."""
  return workdir if seed == simgan_seeds(config)[0] else os.path.join(workdir, f"simgan_seed{seed}")


def tag(config, seed: int) -> str:
  """The suffix of seed ``seed``'s stage names in ``timings.json`` ('' for the first)."""
  return "" if seed == simgan_seeds(config)[0] else f"_seed{seed}"


def simgan_config(config, seed: int):
  c = copy.deepcopy(config.simgan)
  c.seed = int(seed)
  return c


def shared_config(config):
  """``config`` with the rows trained once (those that do not depend on the refiner)."""
  c = copy.deepcopy(config)
  c.training_sets = tuple(n for n in config.training_sets if n not in REFINER_ROWS)
  return c


def refined_config(config):
  """``config`` with the refined rows only and their estimator seeds."""
  c = copy.deepcopy(config)
  c.training_sets = tuple(n for n in config.training_sets if n in REFINER_ROWS)
  c.seeds = tuple(refined_seeds(config))
  return c


def _write_json(path: str, value) -> None:
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".tmp", path)


def train_refiners(config, workdir: str, timed: Callable, log: Callable, refine_fn: Callable) -> dict[int, dict]:
  """Stages 1-3 for each SimGAN seed: {seed: {"root", "selection", "pools"}}.
  ``refine_fn(config, root, simgan_dir, step, log)`` is ``reproduce.load_or_refine``."""
  out, all_seeds = {}, simgan_seeds(config)
  for seed in all_seeds:
    root, suffix = stage_root(config, workdir, seed), tag(config, seed)
    simgan_dir, c = os.path.join(root, "simgan"), simgan_config(config, seed)
    which = f" (SimGAN seed {seed}, {all_seeds.index(seed) + 1} of {len(all_seeds)})" if len(all_seeds) > 1 else ""
    log(f"[1/6] SimGAN training in {simgan_dir}{which}")
    caveats.stamp_origin(simgan_dir)
    timed("simgan" + suffix, lambda: train.train_and_evaluate(c, simgan_dir))  # pylint: disable=cell-var-from-loop
    log(f"[2/6] refiner selection by {config.simgan.selection.metric} (no target labels)")
    selection = selection_lib.best_checkpoint(c, simgan_dir)
    _write_json(os.path.join(root, "selection.json"), selection)
    step = str(selection["step"])
    log(f"selected step {step} (realism KID {selection['scores'][step]:.4g}, "
        f"selection score {selection['selection_scores'][step]:.4g})")
    log(f"[3/6] refining {config.num_synthetic * config.data_multiplier} synthetic images")
    pools = timed("refine" + suffix, lambda: refine_fn(config, root, simgan_dir, selection["step"], log))  # pylint: disable=cell-var-from-loop
    out[seed] = {"root": root, "selection": selection, "pools": pools}
  return out


def train_estimators(config, stages, refiners: dict[int, dict], workdir: str, log: Callable):
  """Stage 4: the rows that do not depend on the refiner once (with the first SimGAN
  seed's pools), the refined rows per SimGAN seed. Returns (summary, results)."""
  first = refiners[simgan_seeds(config)[0]]
  shared = stages.train_estimators(shared_config(config), first["pools"], workdir, log)
  refined = refined_config(config)
  per_seed = {seed: stages.train_estimators(refined, r["pools"], r["root"], log) for seed, r in refiners.items()}
  results = merge(shared, per_seed)
  results = {name: results[name] for name in config.training_sets if name in results}
  summary = stages.summarize(results)
  if len(per_seed) > 1:
    add_spread(summary, {seed: stages.summarize(r) for seed, r in per_seed.items()}, len(refined.seeds))
  return summary, results


def other_preservations(config, stages, refiners: dict[int, dict], workdir: str, timed: Callable,
                        two_sample_fn: Callable) -> dict[str, dict]:
  """Stage 5 for the SimGAN seeds after the first (each in its ``simgan_seed<s>/``):
  {str(seed): per_seed_record}. ``two_sample_fn`` is ``reproduce.final_two_sample``."""
  out = {}
  for seed in simgan_seeds(config)[1:]:
    r, suffix = refiners[seed], tag(config, seed)
    p = timed("preservation" + suffix, lambda: stages.label_preservation(config, r["pools"], workdir))  # pylint: disable=cell-var-from-loop
    final = timed("two_sample" + suffix, lambda: two_sample_fn(config, r["pools"], r["root"]),  # pylint: disable=cell-var-from-loop
                  record_none=False)
    if final is not None:
      p["two_sample"] = final
    _write_json(os.path.join(r["root"], "preservation.json"), p)
    out[str(seed)] = per_seed_record(r["selection"], p)
  return out


def merge(shared: dict, per_simgan_seed: dict[int, dict]) -> dict[str, dict[str, Any]]:
  """{row: {run: results.json}} over all runs. With one SimGAN seed a refined row's runs
  are keyed by estimator seed as before; with several, ``simgan<s>/seed<e>``."""
  out = dict(shared)
  several = len(per_simgan_seed) > 1
  for s, results in per_simgan_seed.items():
    for row, by_seed in results.items():
      out.setdefault(row, {}).update({(f"simgan{s}/seed{e}" if several else e): r for e, r in by_seed.items()})
  return out


def add_spread(summary: dict, per_seed_summaries: dict[int, dict], num_estimator_seeds: int) -> dict:
  """Adds to each refined row of ``summary`` (mean ± std over all runs) the number of
  SimGAN and estimator seeds and, for every ``<k>_mean``, ``<k>_std_simgan``: the standard
  deviation over SimGAN seeds of the per-SimGAN-seed means (``mean``: ``std_simgan``)."""
  for row, s in summary.items():
    per_seed = [p[row] for p in per_seed_summaries.values() if row in p]
    if row not in REFINER_ROWS or not per_seed:
      continue
    s["num_simgan_seeds"], s["num_estimator_seeds"] = len(per_seed), num_estimator_seeds
    for key in [k for k in s if k == "mean" or k.endswith("_mean")]:
      s[key[:-len("mean")] + "std_simgan"] = float(np.std([p[key] for p in per_seed]))
  return summary


def spread_lines(summary, unit: str, within_key: str, within_label: str) -> list[str]:
  """The report's statement of where a refined row's spread comes from ([] for one SimGAN seed)."""
  rows = [r for r in REFINER_ROWS if summary.get(r, {}).get("num_simgan_seeds", 1) > 1]
  if not rows:
    return []
  s = summary[rows[0]]
  n, m = s["num_simgan_seeds"], s["num_estimator_seeds"]
  alone = "; ".join(f"`{r}` {summary[r]['error_std_simgan']:.2f}{unit} mean error, "
                    f"{summary[r][within_key + '_std_simgan']:.1f} points {within_label}" for r in rows)
  return [f"The refined rows are mean ± standard deviation over {n} SimGAN seeds x {m} estimator seeds "
          f"({n * m} runs: another refiner for each SimGAN seed). The spread over SimGAN seeds alone "
          f"(standard deviation of the {n} per-refiner means): {alone}.", ""]


def per_seed_record(selection, preservation) -> dict[str, Any]:
  """What the report shows of one SimGAN seed's refiner: selection and preservation, compactly."""
  step = str(selection["step"])
  out = {"step": int(selection["step"]), "realism_kid": selection["scores"][step],
         "selection_score": selection.get("selection_scores", {}).get(step, selection["scores"][step])}
  for key, value in preservation.items():
    if isinstance(value, dict) and "mean" in value:
      out[key] = value["mean"]
    elif isinstance(value, float):  # the folder experiment's measures are plain numbers
      out[key] = value
  t = preservation.get("two_sample")
  if t:
    out["two_sample_refined"] = t["refined"]["two_sample_accuracy"]
  return out


def selection_lines(preservation, measures: dict[str, str]) -> list[str]:
  """A compact table of every SimGAN seed's selected refiner ([] for one SimGAN seed).
  ``measures``: preservation key -> column title (means are shown)."""
  per_seed = preservation.get("simgan_seeds") or {}
  if len(per_seed) < 2:
    return []
  shown = [k for k in measures if any(k in r for r in per_seed.values())]
  two = any("two_sample_refined" in r for r in per_seed.values())
  head = (["SimGAN seed", "selected step", "realism KID", "selection score"] + [measures[k] for k in shown]
          + (["two-sample accuracy, refined vs real"] if two else []))
  lines = ["The selected refiner of each SimGAN seed (the first seed's run is the one detailed here; the "
           "others are in `simgan_seed<s>/`; preservation measures are means over the same pairs):", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for seed, r in per_seed.items():
    cells = [seed, str(r["step"]), f"{r['realism_kid']:.4g}", f"{r['selection_score']:.4g}"]
    cells += [f"{r[k]:.3g}" if k in r else "–" for k in shown]
    if two:
      cells.append(f"{100 * r['two_sample_refined']:.1f}%" if "two_sample_refined" in r else "–")
    lines.append("| " + " | ".join(cells) + " |")
  return lines + [""]


def origin_lines(config, workdir: str) -> list[str]:
  """``caveats.origin_lines`` for every SimGAN seed's ``simgan/``."""
  lines = []
  for seed in simgan_seeds(config):
    root = stage_root(config, workdir, seed)
    name = os.path.relpath(os.path.join(root, "simgan"), workdir) + "/"
    lines += caveats.origin_lines(os.path.join(root, "simgan"), name)
  return lines
