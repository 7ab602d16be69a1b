"""The rows of a reproduction's table: training-set names, their titles, the gap closed.

Shared by the experiments (``reproduce.py``, ``hand_reproduce.py``, ``image_folder.py``)
and their reports (``report.py``, ``hand_report.py``), which therefore need not import
each other; ``train_rows`` is the estimator stage's loop over rows and seeds.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from simgan_jax.errors import DataError
from simgan_jax.experiments import caveats

TRAINING_SETS = ("synthetic", "synthetic_4x", "refined", "refined_4x", "oracle", "target")
TITLES = {
    "synthetic": "synthetic",
    "synthetic_4x": "synthetic, {m}x data",
    "refined": "refined synthetic",
    "refined_4x": "refined synthetic, {m}x data",
    "oracle": "synthetic scenes, target appearance (a perfect refiner)",
    "target": "target-domain labels (upper bound)",
}


def gap_closed(summary, refined: str, synthetic: str) -> float | None:
  """Share of the synthetic-to-target error gap that training on ``refined`` closes
  (None without the three rows or without a gap)."""
  if not {"target", refined, synthetic} <= summary.keys():
    return None
  gap = summary[synthetic]["error_mean"] - summary["target"]["error_mean"]
  if gap <= 0:
    return None
  return (summary[synthetic]["error_mean"] - summary[refined]["error_mean"]) / gap


def error_change(summary, refined: str, synthetic: str) -> tuple[float, float, str]:
  """(drop in mean error from ``synthetic`` to ``refined``, the larger seed spread of the
  two, "more than" / "not more than"): the comparison every report prints for a pair of
  rows (a rise is a negative drop; the verdict compares its size with the spread)."""
  r, s = summary[refined], summary[synthetic]
  drop = s["error_mean"] - r["error_mean"]
  spread = max(r["error_std"], s["error_std"])
  return drop, spread, "more than" if abs(drop) > spread else "not more than"


def oracle_share(summary, refined: str = "refined", synthetic: str = "synthetic") -> float | None:
  """Share of the perfect refiner's gain (``oracle`` over ``synthetic``, in mean error)
  that ``refined`` gets (None without the three rows or when the oracle gains nothing)."""
  if not {"oracle", refined, synthetic} <= summary.keys():
    return None
  gain = summary[synthetic]["error_mean"] - summary["oracle"]["error_mean"]
  if gain <= 0:
    return None
  return (summary[synthetic]["error_mean"] - summary[refined]["error_mean"]) / gain


# The share of the perfect refiner's gain a refined row is held to (issue 22's bar).
ORACLE_BAR = 0.8


def oracle_bar(summary, refined: str, share: float = ORACLE_BAR,
               synthetic: str = "synthetic") -> tuple[float, float, str] | None:
  """(the mean error that gets ``share`` of the perfect refiner's gain, how far ``refined``'s
  mean error is below it, "beyond" / "within" / "short of"): "beyond" when it is below by
  more than ``refined``'s seed spread, "short of" when above it (None as ``oracle_share``)."""
  if oracle_share(summary, refined, synthetic) is None:
    return None
  s = summary[synthetic]["error_mean"]
  bar = s - share * (s - summary["oracle"]["error_mean"])
  margin = bar - summary[refined]["error_mean"]
  verdict = "short of" if margin < 0 else ("beyond" if margin > summary[refined]["error_std"] else "within")
  return bar, margin, verdict


def eval_record(spec: str, section) -> dict[str, Any]:
  """What an estimator stage's test set is made from (``train_rows``' ``eval_data``): the
  data spec and the size caps of the estimator config ``section`` that shape it."""
  return {"test": spec, **{k: section.get(k) for k in ("target_eval_examples", "num_simulator_eval")
                           if section.get(k) is not None}}


# Estimator config fields that do not change what is trained (logging, checkpointing,
# where data lives, device count, evaluation sizes, which eval_record covers):
# estimator_settings leaves them out.
BOOKKEEPING_FIELDS = frozenset({
    "log_every", "checkpoint_every", "max_checkpoints_to_keep", "eval_every", "checkpoint_every_minutes",
    "sync_every_steps", "eval_batch_size", "data_dir", "cache_dir", "num_devices", "conv_impl",
    "target_eval_examples", "num_simulator_eval"})


def estimator_settings(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{dotted field: value} of an estimator config (a dict, as in its config.json) that
  decide what is trained: everything but BOOKKEEPING_FIELDS; tuples as lists."""
  out = {}
  for key, value in config.items():
    if not prefix and key in BOOKKEEPING_FIELDS:
      continue
    if isinstance(value, dict):
      out.update(estimator_settings(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def check_settings(run_dir: str, config) -> None:
  """Refuses (DataError naming the file and fields) a finished run in ``run_dir`` whose
  ``config.json`` trained with other settings (``estimator_settings``) than ``config``
  (a ConfigDict): its results must not be read as this configuration's."""
  path = os.path.join(run_dir, "config.json")
  was = caveats.read_json(path)
  if was is None:
    raise DataError(f"{path}: missing or unreadable, so the finished run there cannot be checked against "
                    "this configuration; delete the run to retrain it, or use another --workdir")
  was, now = estimator_settings(was), estimator_settings(json.loads(config.to_json_best_effort()))
  differ = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
  if differ:
    shown = "; ".join(f"{k}: {was.get(k)!r} there, {now.get(k)!r} now" for k in differ[:4])
    more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
    raise DataError(f"{path}: this finished run was trained with other estimator settings ({shown}{more}); "
                    "delete the run to retrain it, or use another --workdir")


def train_rows(sources: dict[str, Callable], seeds, root: str, log, what: str,
               eval_sets: Callable[[], dict], train: Callable, *, eval_data: dict[str, str] | None = None,
               evaluate: Callable | None = None, settings: Callable | None = None) -> dict[str, dict[str, Any]]:
  """{row: {str(seed): results.json}} for each row of ``sources`` (row -> a function making
  its training source) and estimator seed: ``train(seed, source, eval_sets, run_dir)`` runs
  in ``root/<row>/seed_<seed>`` unless its results.json is there, which is read back.
  The evaluation sets and a row's source are built only when something trains.

  ``eval_data`` (``eval_record``: what the evaluation sets are made from) is recorded in
  each results.json as ``"eval_data"``. A finished run whose record differs, or that has
  none (written before the record existed, or copied from elsewhere), was scored on other
  data: ``evaluate(seed, eval_sets, run_dir)`` scores its saved estimator on this run's
  sets and results.json is rewritten, so that rows copied from a workdir with another
  test split are never read as this one's. Without ``evaluate`` such a run is refused.
  ``settings(seed)``: the estimator config a run of that seed trains with; a finished run
  trained with other settings (``check_settings``) is refused, never mixed in."""
  evaluation, results = None, {}
  for name, make_source in sources.items():
    results[name], source = {}, None
    for seed in seeds:
      run_dir = os.path.join(root, name, f"seed_{seed}")
      path = os.path.join(run_dir, "results.json")
      done = caveats.read_json(path)
      if done is None:
        evaluation = evaluation if evaluation is not None else eval_sets()
        source = source or make_source()
        log(f"{what}: training set {name}, seed {seed}")
        done = train(seed, source, evaluation, run_dir)
      else:
        if settings is not None:
          check_settings(run_dir, settings(seed))
        if eval_data is not None and done.get("eval_data") != eval_data:
          was = done.get("eval_data") or "no record of its evaluation data"
          if evaluate is None:
            raise DataError(f"{path}: evaluated on {was}, this run evaluates on {eval_data}; "
                            "delete the run to retrain it, or use another --workdir")
          evaluation = evaluation if evaluation is not None else eval_sets()
          log(f"{what}: training set {name}, seed {seed}: finished, evaluated on {was}; evaluating "
              f"its saved estimator on {eval_data}")
          done = {**done, "eval": evaluate(seed, evaluation, run_dir), "eval_data_was": was}
      if eval_data is not None and done.get("eval_data") != eval_data:
        done["eval_data"] = dict(eval_data)
        with open(path, "w") as f:
          json.dump(done, f, indent=1)
      results[name][str(seed)] = done
  return results
