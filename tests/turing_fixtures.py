"""Tiny image sets and a study for the Turing-test tests (no JAX, no training)."""

import numpy as np

from simgan_jax.turing import app as app_lib
from simgan_jax.turing import images as images_lib
from simgan_jax.turing import study as study_lib

TRIALS = {"refined": (3, 3), "synthetic": (2, 2)}
RESULTS_KEY = "test-key"


def tiny_sets(n: int = 5, shape=(7, 11, 1)) -> dict:
  rng = np.random.default_rng(0)
  return {name: images_lib.ImageSet(f"fixture:{name}", rng.integers(0, 256, (n, *shape), np.uint8))
          for name in ("real", "refined", "synthetic")}


def plan(subject: str, arm: str = "refined", trials=TRIALS, study_seed: int = 3, pool: int = 5):
  """The trial plan of ``subject``'s ``arm`` in a study made with seed ``study_seed``."""
  real = study_lib.real_indices(study_seed, subject, arm, pool, trials)
  return study_lib.trial_plan(study_lib.subject_seed(study_seed, subject, arm), real, pool,
                              trials[arm][1], arm)


def make_app(db_path, sets=None, trials=TRIALS):
  sets = sets or tiny_sets()
  study = study_lib.open_study(str(db_path), sets, trials, seed=3)
  return app_lib.create_app(study, sets, RESULTS_KEY, display_size=44), study, sets
