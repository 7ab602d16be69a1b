"""Choosing a refiner checkpoint that is realistic and not broken.

At every checkpoint the training loop writes ``selection_score`` to
``metrics.jsonl`` (``score`` below): the realism measure named by
``config.selection.metric`` (``realism_kid`` by default; lower is better), or
``+inf`` (never select) when the refiner collapsed or its label drift is over
``config.drift.max_drift``. A collapse is refined output that is near-constant:
the mean per-image standard deviation, or the spread across images, below
``config.selection.min_std_ratio`` times the synthetic input's; or a label drift
over ``EXPLODE`` times the bound.

``best_checkpoint`` picks, from ``metrics.jsonl``, the checkpoint with the
lowest finite score among those still on disk (adversarial phase; pretraining
checkpoints only when there is no other), as ``launch/refine.py --step=best``
and ``launch/reproduce.py`` do. It recomputes each score from the logged
measures with the config it is given, so a run can be re-selected under another
drift bound without retraining. With ``config.selection.metric = "label_drift"``
the least-drifting checkpoint wins among those whose ``realism_kid`` is within
``config.selection.realism_ratio`` times the run's lowest (``kid_window``: the lowest floored at ``KID_NOISE``, as KID can be
<= 0). The ``:cpu`` default is ``two_sample_accuracy`` with no KID window: over 3
SimGAN seeds on the eye validation split it lost least to the best checkpoint of
the label-free rules compared (docs/selection_eyesim.md).

A checkpoint whose refiner has barely started (``barely_refined``: its realism_kid less
than ``config.selection.min_kid_gain`` of the way from the unrefined images' KID to 0)
competes only when every candidate is so: a probe can score a refiner that has hardly
changed its input better than one that has.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from simgan_jax.errors import ConfigError, DataError
from simgan_jax.probe import drift

EXPLODE = 3.0  # drift over EXPLODE x max_drift counts as a collapse
KID_NOISE = 0.1  # KID of sets that match, to about its subset std (kid_window)


def output_spread(synthetic_u8: np.ndarray, refined_u8: np.ndarray) -> dict[str, float]:
  """Refined / synthetic ratios of the mean per-image std and of the mean per-pixel std across images."""
  syn, ref = np.asarray(synthetic_u8, np.float32), np.asarray(refined_u8, np.float32)

  def per_image(x):
    return float(np.mean(np.std(x.reshape(len(x), -1), axis=1)))

  def across(x):
    return float(np.mean(np.std(x, axis=0)))

  return {"refined_std_ratio": per_image(ref) / max(per_image(syn), 1e-6),
          "refined_spread_ratio": across(ref) / max(across(syn), 1e-6)}


def collapse_reasons(config, scores: dict[str, float], max_drift: float | None) -> list[str]:
  """Why a checkpoint's refiner counts as collapsed (empty: it does not)."""
  reasons = []
  floor = float(config.selection.min_std_ratio)
  for key, what in (("refined_std_ratio", "per-image std"), ("refined_spread_ratio", "spread across images")):
    if key in scores and scores[key] < floor:
      reasons.append(f"refined {what} is {scores[key]:.3g} x the synthetic input's "
                     f"(< config.selection.min_std_ratio {floor:g})")
  drift = scores.get("label_drift")
  if drift is not None and max_drift is not None and drift > EXPLODE * max_drift:
    reasons.append(f"label drift {drift:.3g} is over {EXPLODE:g} x config.drift.max_drift ({max_drift:g})")
  return reasons


# The measures a run can be selected by (config.selection.metric), each logged per checkpoint.
METRICS = ("realism_kid", "two_sample_accuracy", "label_drift")


def require_measured(config, metric: str, why: str) -> None:
  """Stops with one line, before training rather than at the first scored checkpoint,
  when the run selects by ``metric`` but ``why`` says the run will not measure it (the
  one check for every probe: train.validate_config for the two-sample test,
  probe/checkpoint.py for label drift)."""
  if config.get("selection") is not None and config.selection.metric == metric:
    others = " or ".join(m for m in METRICS if m != metric)
    raise ConfigError(f"config.selection.metric: {metric!r} is not measured: {why}; select by {others} instead")


def score(config, scores: dict[str, float], max_drift: float | None, collapsed: bool) -> float:
  """``selection_score``: the realism metric, or +inf when collapsed or drifting over the bound."""
  metric = config.selection.metric
  if metric not in scores:
    raise ConfigError(f"config.selection.metric: {metric!r} is not measured at checkpoints "
                      f"(measured: {', '.join(sorted(scores))})")
  if collapsed:
    return math.inf
  drift = scores.get("label_drift")
  if drift is not None and max_drift is not None and drift > max_drift:
    return math.inf
  return float(scores[metric])


# ----------------------------------------------------------------------------- reading a run


def checkpoint_metrics(workdir: str) -> dict[int, dict[str, float]]:
  """{step: entry} of the probe entries in ``metrics.jsonl`` (the last per step wins)."""
  out: dict[int, dict[str, float]] = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        entry = json.loads(line)
        if "selection_score" in entry or "realism_kid" in entry:
          out[int(entry["step"])] = entry
  return out


def run_max_drift(config, workdir: str) -> float | None:
  """The drift bound that applies to a run: ``config.drift.max_drift``, else the default
  for the kind of task network the run trained (None: no task network)."""

  if float(config.drift.get("max_drift", 0.0)) > 0:
    return float(config.drift.max_drift)
  info = drift.read_info(workdir) or {}
  return drift.DEFAULT_MAX_DRIFT.get(info.get("kind"))


def _entry_score(config, entry, max_drift: float | None) -> float:
  """The entry's selection score under *this* config (so a changed drift bound applies to
  a finished run); entries without the realism metric keep the logged score, and runs
  from before selection_score was logged are ranked by their KID."""
  logged = float(entry["selection_score"] if "selection_score" in entry else entry["realism_kid"])
  measured = "label_drift" in entry or "refined_std_ratio" in entry
  if (config.selection.metric not in entry or not measured
      or ("label_drift" in entry and max_drift is None)):
    return logged
  if "refined_std_ratio" in entry:
    collapsed = bool(collapse_reasons(config, entry, max_drift))
  else:
    collapsed = bool(entry.get("collapsed"))
  return score(config, entry, max_drift, collapsed)


def checkpoint_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def _rank(config, workdir: str) -> dict[str, Any]:
  """The selection rule on the run in ``workdir``: on-disk scored checkpoints, their
  scores under ``config``, and the qualified ones best first (``ranked``)."""
  entries = checkpoint_metrics(workdir)
  on_disk = checkpoint_steps(workdir)
  saved = [s for s in on_disk if s in entries]
  pretrain = config.refiner_pretrain_steps + config.discriminator_pretrain_steps
  candidates = [s for s in saved if s > pretrain] or saved
  if _min_step(config):
    candidates = [s for s in candidates if s >= _min_step(config)]
  max_drift = run_max_drift(config, workdir) if saved else None
  totals = {s: _entry_score(config, entries[s], max_drift) for s in saved}
  qualified = [s for s in candidates if math.isfinite(totals[s])]
  ratio = float(config.selection.get("realism_ratio", 0.0))
  if ratio > 0 and config.selection.metric != "realism_kid" and qualified:
    # Ranked by another measure (label drift): only checkpoints about as realistic as the
    # run's most realistic one compete; early, barely refined ones drift little.
    kid = {s: float(entries[s].get("realism_kid", math.inf)) for s in qualified}
    bound = kid_window(min(kid.values()), ratio)
    qualified = _refuse(qualified, totals, [s for s in qualified if kid[s] <= bound])
  if config.selection.get("refuse_kid_above_unrefined", False):
    # A refiner that made the images less real than not refining at all is never picked;
    # when that leaves no candidate, the last pretraining checkpoint (R about the
    # identity) is: on a hand run whose drop-out head erased nine tenths of each hand by
    # step 400 (KID 63.7, unrefined 20.7; every later checkpoint collapsed) the old rule
    # picked step 400 and its estimators erred by 52 px (synthetic's: 32).
    worse = [s for s in qualified if less_real_than_unrefined(entries[s])]
    if worse:
      qualified = _refuse(qualified, totals, [s for s in qualified if s not in worse])
      pretrained = [s for s in saved if s <= pretrain and math.isfinite(totals[s])]
      if not qualified and pretrained and candidates != saved:
        qualified = [max(pretrained)]
  gain = float(config.selection.get("min_kid_gain", 0.0))
  if gain > 0 and qualified:
    # A refiner that has barely left the unrefined images competes only when no candidate
    # has: on the grid-phase eye run the probe preferred such checkpoints (KID 9.6 of the
    # unrefined 10.5, 74%) to every later one (78.5%+) on 2 of 3 seeds.
    started = [s for s in qualified if not barely_refined(entries[s], gain)]
    if started:
      qualified = _refuse(qualified, totals, started)
  return {"entries": entries, "on_disk": on_disk, "saved": saved, "candidates": candidates,
          "totals": totals, "ranked": sorted(qualified, key=lambda s: (totals[s], s))}


def _refuse(qualified: list[int], totals: dict[int, float], kept: list[int]) -> list[int]:
  """``kept``; every other qualified step's total becomes +inf (refused)."""
  for s in qualified:
    if s not in kept:
      totals[s] = math.inf
  return kept


def barely_refined(entry: dict[str, float], gain: float) -> bool:
  """Whether a checkpoint's realism KID is less than ``gain`` (a fraction) of the way from
  the unrefined images' KID to 0, i.e. above (1 - gain) x the unrefined KID (also when
  refining made the images *less* realistic); False when the entry lacks either KID or
  the unrefined images already score <= 0."""
  try:
    kid, before = float(entry["realism_kid"]), float(entry["realism_kid_unrefined"])
  except KeyError:
    return False
  return before > 0 and kid > (1.0 - gain) * before


def less_real_than_unrefined(entry: dict[str, float]) -> bool:
  """Whether a checkpoint's realism KID is above the unrefined images' (False when the
  entry lacks either)."""
  try:
    return float(entry["realism_kid"]) > float(entry["realism_kid_unrefined"])
  except KeyError:
    return False


def kid_window(lowest_kid: float, ratio: float) -> float:
  """The largest KID that counts as "about as realistic as the run's best": ``ratio``
  times the lowest, where the lowest is floored at ``KID_NOISE``. KID is unbiased, so a
  refiner as real as the target scores about 0, often below (clean sets: -0.07, std
  0.06 over subsets, probe/realism.py); ``ratio`` times a value <= 0 would admit
  nothing, not even the best checkpoint."""
  return ratio * max(lowest_kid, KID_NOISE)


def rule_text(config) -> str:
  """In words: how ``best_checkpoint`` ranks checkpoints under ``config`` (the closing
  summary of train.py and the experiments' reports say it the same way)."""
  metric = config.selection.metric
  ratio = float(config.selection.get("realism_ratio", 0.0))
  never = "collapsed or over config.drift.max_drift: never"
  gain = float(config.selection.get("min_kid_gain", 0.0))
  if gain > 0:
    never += (f"; KID less than {gain:g} of the way from the unrefined images' to 0: only if all are "
              f"(config.selection.min_kid_gain)")
  if config.selection.get("refuse_kid_above_unrefined", False):
    never += ("; KID above the unrefined images': never, the last pretraining checkpoint if no other "
              "qualifies (config.selection.refuse_kid_above_unrefined)")
  min_step = _min_step(config)
  among = f" from step {min_step} on (config.selection.min_step)" if min_step else ""
  if metric != "realism_kid" and ratio > 0:
    return (f"lowest {metric}{among} among checkpoints with realism_kid within {ratio:g}x the run's lowest "
            f"(floored at {KID_NOISE:g}; config.selection.metric, realism_ratio; {never})")
  return f"lowest {metric}{among} (config.selection.metric; {never})"


def selection_scores(config, workdir: str) -> dict[int, float]:
  """{step: selection score} of the on-disk scored checkpoints under ``config``'s rule
  (the logged ``selection_score`` is the rule of the run's own config, which may be older)."""
  return _rank(config, workdir)["totals"]


def ranked_steps(config, workdir: str) -> list[int]:
  """The qualified on-disk checkpoints, best first, by exactly ``best_checkpoint``'s rule
  (keep-best keeps the first ``keep_best_checkpoints``); [] when none qualifies."""
  return _rank(config, workdir)["ranked"]


def best_checkpoint(config, workdir: str) -> dict[str, Any]:
  """{"step", "runner_up", "candidates", "scores", "selection_scores"}: the on-disk
  checkpoint with the lowest finite selection score (and the next one, or None);
  DataError or ConfigError (one line) when none qualifies."""
  r = _rank(config, workdir)
  if not r["saved"]:
    raise DataError(f"{workdir}: no checkpoint on disk has a score in metrics.jsonl "
                    f"(checkpoints: {r['on_disk'] or 'none'}; scored steps: {sorted(r['entries']) or 'none'})")
  if not r["candidates"] and _min_step(config):
    raise ConfigError(f"{workdir}: no scored checkpoint on disk is at or after config.selection.min_step="
                      f"{_min_step(config)} (scored on disk: {', '.join(map(str, r['saved']))}); lower it or train longer")
  if not r["ranked"]:
    candidates = r["candidates"]
    collapsed = sum(1 for s in candidates if r["entries"][s].get("collapsed"))
    raise ConfigError(
        f"{workdir}: no checkpoint qualifies for selection: all {len(candidates)} candidates "
        f"({', '.join(map(str, candidates))}) scored +inf ({collapsed} collapsed, the others over "
        f"config.drift.max_drift); raise the bound or pick a step with --step=N")
  entries, saved = r["entries"], r["saved"]
  return {"step": r["ranked"][0], "runner_up": r["ranked"][1] if len(r["ranked"]) > 1 else None,
          "candidates": r["candidates"],
          "scores": {str(s): float(entries[s].get("realism_kid", float("nan"))) for s in saved},
          "selection_scores": {str(s): r["totals"][s] for s in saved}}


def checkpoint_mark(config, selection: dict[str, Any], step: int) -> str:
  """The reports' word for a scored checkpoint of ``best_checkpoint``'s result
  ``selection`` under ``config`` (the SimGAN config): "selected", "" (a candidate),
  "pretraining", or "before selection.min_step" (adversarial, kept out by min_step)."""
  if step == selection["step"]:
    return "selected"
  if step in selection["candidates"]:
    return ""
  # _rank makes every adversarial checkpoint a candidate unless min_step keeps it out.
  pretraining = step <= config.refiner_pretrain_steps + config.discriminator_pretrain_steps
  return "pretraining" if pretraining else "before selection.min_step"


def _min_step(config) -> int:
  """``config.selection.min_step`` (0 when absent: runs from before the field)."""
  return int(config.selection.get("min_step", 0))


def resolve_step(config, workdir: str, step) -> int | None:
  """``step`` as an int: None (newest), an integer, or ``"best"`` (``best_checkpoint``)."""
  if step is None or isinstance(step, int):
    return step
  text = str(step).strip()
  if text == "best":
    return best_checkpoint(config, workdir)["step"]
  if text.lstrip("-").isdigit():
    return int(text)
  raise ConfigError(f"--step: expected a checkpoint step or 'best', got {step!r}")
