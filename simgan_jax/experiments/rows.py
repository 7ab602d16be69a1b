"""The rows of a reproduction's table: training-set names, their titles, the gap closed.

Shared by the experiments (``reproduce.py``, ``hand_reproduce.py``) and their reports
(``report.py``, ``hand_report.py``), which therefore need not import each other.
"""

from __future__ import annotations

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
