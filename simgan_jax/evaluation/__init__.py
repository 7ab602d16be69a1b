"""Downstream evaluation: does refinement help a gaze estimator? (SIMGAN.md).

``gaze`` (the estimator and its metrics), ``gaze_training`` (its data-parallel
training and evaluation: the old names of ``simgan_jax.tasks``, the loop shared
with pose), ``data`` (named training and evaluation sets),
``pupil`` (a training-free pupil localiser, to measure whether refinement moves
the pupil), ``refine`` (a trained refiner over a whole dataset, written as a
TFDS dataset), ``realism`` (a label-free realism score, KID on fixed features,
for choosing refiner checkpoints), ``reproduce`` and ``report`` (the paper's
experiment end to end, ``launch/reproduce.py``).
"""
