"""The rows of a reproduction's table: training-set names, their titles, the gap closed.

Shared by the experiments (``reproduce.py``, ``hand_reproduce.py``, ``image_folder.py``)
and their reports (``report.py``, ``hand_report.py``), which therefore need not import
each other; ``train_rows`` is the estimator stage's loop over rows and seeds.
"""

from __future__ import annotations

import os
from typing import Any, Callable

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


def oracle_share(summary, refined: str = "refined", synthetic: str = "synthetic") -> float | None:
  """Share of the perfect refiner's gain (``oracle`` over ``synthetic``, in mean error)
  that ``refined`` gets (None without the three rows or when the oracle gains nothing)."""
  if not {"oracle", refined, synthetic} <= summary.keys():
    return None
  gain = summary[synthetic]["error_mean"] - summary["oracle"]["error_mean"]
  if gain <= 0:
    return None
  return (summary[synthetic]["error_mean"] - summary[refined]["error_mean"]) / gain


def train_rows(sources: dict[str, Callable], seeds, root: str, log, what: str,
               eval_sets: Callable[[], dict], train: Callable) -> dict[str, dict[str, Any]]:
  """{row: {str(seed): results.json}} for each row of ``sources`` (row -> a function making
  its training source) and estimator seed: ``train(seed, source, eval_sets, run_dir)`` runs
  in ``root/<row>/seed_<seed>`` unless its results.json is there, which is read back.
  The evaluation sets and a row's source are built only when something trains."""
  evaluation, results = None, {}
  for name, make_source in sources.items():
    results[name], source = {}, None
    for seed in seeds:
      run_dir = os.path.join(root, name, f"seed_{seed}")
      done = caveats.read_json(os.path.join(run_dir, "results.json"))
      if done is None:
        evaluation = evaluation if evaluation is not None else eval_sets()
        source = source or make_source()
        log(f"{what}: training set {name}, seed {seed}")
        done = train(seed, source, evaluation, run_dir)
      results[name][str(seed)] = done
  return results
