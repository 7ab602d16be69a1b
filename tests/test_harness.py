"""The test harness itself (tests/conftest.py): which tests compile with XLA's optimisation passes."""

import os
import subprocess
import sys

import jax
import pytest

KEY = "JAX_DISABLE_MOST_OPTIMIZATIONS"


def _disabled() -> bool:
  return bool(jax.config._read("jax_disable_most_optimizations"))


def _disabled_in_a_child() -> str:
  """What a launch script started from this test reads."""
  return subprocess.run([sys.executable, "-c", f"import os; print(os.environ.get('{KEY}'))"],
                        capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") != "1",
                    reason="the suite was started with the optimisation passes on")
def test_unmarked_tests_skip_the_optimisation_passes():
  assert _disabled() and _disabled_in_a_child() == "1"


@pytest.mark.xla_optimized
def test_marked_tests_and_their_subprocesses_run_them():
  assert not _disabled() and _disabled_in_a_child() == "0"


def test_the_context_manager_switches_the_passes_on_and_restores_both_settings(optimized_xla):
  """Deterministic, unlike test order under xdist or random ordering: fails if the
  setting leaks out of a marked test or a module fixture."""
  env = os.environ.get(KEY)
  # The flag agrees with the environment at the start too: a marked test run before this
  # one in the same worker must not have left the passes on.
  assert _disabled() == (env == "1")
  with optimized_xla():
    assert not _disabled() and _disabled_in_a_child() == "0"
  assert _disabled() == (env == "1") and os.environ.get(KEY) == env
  with optimized_xla(), optimized_xla():  # nested (a marked test using the drift fixture)
    pass
  assert _disabled() == (env == "1") and os.environ.get(KEY) == env
