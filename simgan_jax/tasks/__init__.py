"""Downstream estimators (gaze, hand pose, classification, regression) on one training loop.

``loop`` holds the loop (state, data-parallel step, checkpoints, stop on
SIGTERM/SIGINT); ``gaze``, ``pose`` and ``labels`` (classification and
regression of a numeric ``label``) define the tasks (``loop.Task``);
``registry`` names them for ``launch/train_estimator.py``.
"""

from simgan_jax.tasks.loop import Task, TrainState, restore_params, restore_state, train_estimator
from simgan_jax.tasks.registry import TASKS, TaskEntry, get, train_and_evaluate

__all__ = ["TASKS", "Task", "TaskEntry", "TrainState", "get", "restore_params", "restore_state",
           "train_and_evaluate", "train_estimator"]
