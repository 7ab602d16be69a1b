"""Downstream evaluation: does refinement help a gaze estimator? (SIMGAN.md).

``gaze`` (the estimator and its metrics), ``gaze_training`` (its data-parallel
training and evaluation), ``data`` (named training and evaluation sets) and
``pupil`` (a training-free pupil localiser, to measure whether refinement moves
the pupil).
"""
