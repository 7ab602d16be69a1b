"""Statistics of a visual Turing test: exact binomial tests, Wilson intervals, confusion.

The paper (SIMGAN.md, "Visual Turing test") reports 517 of 1,000 answers correct:
one-sided exact binomial p = 0.148 against chance (0.5), two-sided 0.297, Wilson
95% interval 48.6-54.8%; synthetic vs real, 162 of 200 correct (p < 1e-8).

The tests are exact: under chance every answer is a fair coin, so
``P(X >= k) = sum_{i >= k} C(n, i) / 2^n``, computed with integers and divided
once. Answers are treated as independent, as the paper does; the per-subject
table is there to see whether a few subjects carry the result.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from fractions import Fraction
from typing import Iterable, Sequence

Z_95 = statistics.NormalDist().inv_cdf(0.975)  # 1.959964...


def _check(correct: int, n: int) -> None:
  if isinstance(correct, bool) or isinstance(n, bool) or int(correct) != correct or int(n) != n:
    raise ValueError(f"binomial counts must be integers, got correct={correct!r}, n={n!r}")
  if n < 0 or not 0 <= correct <= n:
    raise ValueError(f"binomial counts: need 0 <= correct <= n, got correct={correct}, n={n}")


def _tail_at_least(k: int, n: int) -> Fraction:
  """P(X >= k) for X ~ Binomial(n, 1/2), exactly."""
  if k <= 0:
    return Fraction(1)
  if k > n:
    return Fraction(0)
  return Fraction(sum(math.comb(n, i) for i in range(k, n + 1)), 2**n)


def binomial_p_one_sided(correct: int, n: int) -> float:
  """P(X >= correct) under chance: evidence that subjects do *better* than 0.5."""
  _check(correct, n)
  return float(_tail_at_least(correct, n))


def binomial_p_two_sided(correct: int, n: int) -> float:
  """Exact two-sided p against 0.5: twice the smaller tail, at most 1 (the symmetric
  case of the usual 'as or less likely' rule, which scipy's binomtest uses too)."""
  _check(correct, n)
  if n == 0:
    return 1.0
  upper = _tail_at_least(correct, n)
  lower = _tail_at_least(n - correct, n)  # P(X <= correct), by symmetry
  return float(min(Fraction(1), 2 * min(upper, lower)))


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
  """Wilson score interval for the proportion ``correct / n`` (95% by default)."""
  _check(correct, n)
  if n == 0:
    return 0.0, 1.0
  p = correct / n
  denominator = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denominator
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
  return max(0.0, centre - half), min(1.0, centre + half)


def correct_needed(n: int, alpha: float = 0.05) -> int:
  """Smallest number correct out of ``n`` whose one-sided p is below ``alpha``
  (``n + 1`` when none is): how well subjects must do for a study of n answers
  to tell refined images from real ones."""
  total, tail = 2**n, 0
  for k in range(n, -1, -1):
    tail += math.comb(n, k)
    if Fraction(tail, total) >= alpha:
      return k + 1
  return 0


@dataclasses.dataclass(frozen=True)
class Summary:
  """Accuracy of ``n`` answers with its tests against chance."""

  correct: int
  n: int
  p_one_sided: float
  p_two_sided: float
  wilson_low: float
  wilson_high: float

  @property
  def accuracy(self) -> float:
    return self.correct / self.n if self.n else float("nan")


def summarize(correct: int, n: int) -> Summary:
  low, high = wilson_interval(correct, n)
  return Summary(correct, n, binomial_p_one_sided(correct, n), binomial_p_two_sided(correct, n),
                 low, high)


def confusion(truths: Sequence[str], answers: Sequence[str], fake: str) -> dict[str, dict[str, int]]:
  """``{truth: {answer: count}}`` over ``real`` and ``fake`` (the paper's 2x2 table)."""
  if len(truths) != len(answers):
    raise ValueError(f"confusion: {len(truths)} truths for {len(answers)} answers")
  labels = ("real", fake)
  table = {t: {a: 0 for a in labels} for t in labels}
  for truth, answer in zip(truths, answers):
    if truth not in labels or answer not in labels:
      raise ValueError(f"confusion: labels must be {labels}, got truth={truth!r}, answer={answer!r}")
    table[truth][answer] += 1
  return table


def per_subject(rows: Iterable[tuple[str, bool]]) -> dict[str, Summary]:
  """``(subject, correct?)`` pairs -> {subject: Summary}, subjects in first-seen order."""
  counts: dict[str, list[int]] = {}
  for subject, is_correct in rows:
    c = counts.setdefault(subject, [0, 0])
    c[0] += bool(is_correct)
    c[1] += 1
  return {s: summarize(k, n) for s, (k, n) in counts.items()}


def interval_width_table(subjects: Sequence[int], trials: Sequence[int], accuracy: float = 0.5
                         ) -> list[dict[str, float]]:
  """Wilson 95% width (in accuracy points) for subjects x trials answers at ``accuracy``,
  and the accuracy needed for one-sided p < 0.05: for planning a study."""
  rows = []
  for s in subjects:
    for t in trials:
      n = s * t
      low, high = wilson_interval(round(accuracy * n), n)
      rows.append({"subjects": s, "trials": t, "answers": n, "width": high - low,
                   "needed": correct_needed(n) / n})
  return rows
