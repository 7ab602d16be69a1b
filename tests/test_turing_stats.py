"""Statistics of the visual Turing test, checked against the paper's figures and scipy."""

import math

import pytest
from scipy import stats as scipy_stats

from simgan_jax.turing import stats


def test_paper_refined_vs_real():
  # SIMGAN.md: 517 of 1000 correct, one-sided p = 0.148, two-sided 0.297, Wilson 48.6-54.8%.
  # Catches a test of the wrong tail (0.852), a two-sided p not doubled, or a Wald interval.
  assert round(stats.binomial_p_one_sided(517, 1000), 3) == 0.148
  assert round(stats.binomial_p_two_sided(517, 1000), 3) == 0.297
  low, high = stats.wilson_interval(517, 1000)
  assert (round(100 * low, 1), round(100 * high, 1)) == (48.6, 54.8)


def test_paper_synthetic_vs_real():
  assert stats.binomial_p_one_sided(162, 200) < 1e-8
  assert stats.binomial_p_two_sided(162, 200) < 1e-8


@pytest.mark.parametrize("correct,n", [(0, 1), (1, 1), (3, 10), (5, 10), (8, 10), (483, 1000),
                                       (517, 1000), (162, 200), (0, 20), (20, 20)])
def test_matches_scipy(correct, n):
  # Catches an off-by-one tail (P(X > k) instead of P(X >= k)) and the lower-tail case.
  greater = scipy_stats.binomtest(correct, n, 0.5, alternative="greater").pvalue
  two = scipy_stats.binomtest(correct, n, 0.5).pvalue
  assert stats.binomial_p_one_sided(correct, n) == pytest.approx(greater, rel=1e-9, abs=1e-300)
  assert stats.binomial_p_two_sided(correct, n) == pytest.approx(two, rel=1e-9, abs=1e-300)
  low, high = stats.wilson_interval(correct, n)
  ci = scipy_stats.binomtest(correct, n).proportion_ci(0.95, method="wilson")
  assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_hand_computed():
  # 8 of 10: P(X >= 8) = (45 + 10 + 1) / 1024.
  assert stats.binomial_p_one_sided(8, 10) == 56 / 1024
  assert stats.binomial_p_two_sided(5, 10) == 1.0
  assert stats.correct_needed(10) == 9  # P(X >= 9) = 11/1024 < 0.05 <= P(X >= 8)
  assert stats.correct_needed(1000) == 527


def test_bad_counts():
  for correct, n in ((3, 2), (-1, 5), (1.5, 3)):
    with pytest.raises(ValueError, match="binomial counts"):
      stats.binomial_p_one_sided(correct, n)


def test_confusion_and_per_subject():
  truths = ["real", "real", "refined", "refined", "real"]
  answers = ["real", "refined", "refined", "real", "real"]
  assert stats.confusion(truths, answers, "refined") == {
      "real": {"real": 2, "refined": 1}, "refined": {"real": 1, "refined": 1}}
  with pytest.raises(ValueError, match="labels"):
    stats.confusion(["real"], ["synthetic"], "refined")
  per = stats.per_subject([("a", True), ("b", False), ("a", False), ("a", True)])
  assert list(per) == ["a", "b"]
  assert (per["a"].correct, per["a"].n, per["b"].correct, per["b"].n) == (2, 3, 0, 1)


def test_interval_width_table():
  rows = stats.interval_width_table([10], [100])
  # 500/1000: Wilson half-width ~ 1.96 * sqrt(0.25 / 1000) = 3.1 points (Wald; Wilson is 0.2% less).
  assert rows[0]["answers"] == 1000
  assert rows[0]["width"] == pytest.approx(2 * 1.959964 * math.sqrt(0.25 / 1000), rel=5e-3)
  assert rows[0]["needed"] == 0.527
