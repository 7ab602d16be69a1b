"""Downstream estimators (gaze, hand pose, classification, regression) on one training loop.

``loop`` holds the loop (state, data-parallel step, checkpoints, stop on
SIGTERM/SIGINT); ``gaze``, ``pose`` and ``labels`` (classification and
regression of a numeric ``label``) define the tasks (``loop.Task``) on the
networks and metrics of ``gaze_net`` (the paper's gaze CNN) and ``pose_net`` (the
stacked hourglass); ``data`` and ``pose_data`` name their training and evaluation
sets; ``registry`` names the tasks for ``launch/train_estimator.py``.
"""

from simgan_jax.tasks.loop import Task, TrainState, restore_params, restore_state, train_estimator
from simgan_jax.tasks.registry import TASKS, TaskEntry, get, train_and_evaluate

__all__ = ["TASKS", "Task", "TaskEntry", "TrainState", "get", "restore_params", "restore_state",
           "train_and_evaluate", "train_estimator"]
