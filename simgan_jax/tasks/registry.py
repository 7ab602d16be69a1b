"""Downstream tasks by name, with their configs and named data sets: ``train_and_evaluate``."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from simgan_jax.configs import classification as classification_config
from simgan_jax.configs import gaze as gaze_config
from simgan_jax.configs import pose as pose_config
from simgan_jax.configs import regression as regression_config
from simgan_jax.errors import ConfigError
from simgan_jax.tasks import data as gaze_data
from simgan_jax.tasks import pose_data
from simgan_jax.tasks import gaze
from simgan_jax.tasks import labels
from simgan_jax.tasks import loop
from simgan_jax.tasks import pose


@dataclasses.dataclass(frozen=True)
class TaskEntry:
  """A task with where its config and data come from."""

  task: loop.Task
  get_config: Callable[..., Any]  # variant -> ConfigDict (configs/<name>.py)
  config_file: str  # relative to the repository root
  train_source: Callable[[str, Any], Any]  # (spec, config) -> ImageSource
  eval_sets: Callable[[str, Any], dict]  # (comma-separated specs, config) -> {spec: (images, labels)}
  train_data: str  # default --train_data
  eval_data: str  # default --eval_data


TASKS = {
    "gaze": TaskEntry(gaze.TASK, gaze_config.get_config, "simgan_jax/configs/gaze.py",
                      gaze_data.train_source, gaze_data.eval_sets, "eyesim", "eyesim_target:test"),
    "pose": TaskEntry(pose.TASK, pose_config.get_config, "simgan_jax/configs/pose.py",
                      pose_data.train_source, pose_data.eval_sets, "handsim", "handsim_target:test"),
    # Any labelled image set (an image folder's labels.csv); no built-in data: name the sets.
    "classification": TaskEntry(labels.CLASSIFICATION, classification_config.get_config,
                                "simgan_jax/configs/classification.py", labels.train_source, labels.eval_sets,
                                "", ""),
    "regression": TaskEntry(labels.REGRESSION, regression_config.get_config, "simgan_jax/configs/regression.py",
                            labels.train_source, labels.eval_sets, "", ""),
}


def get(name: str) -> TaskEntry:
  if name not in TASKS:
    raise ConfigError(f"--task={name}: unknown task; known: {', '.join(sorted(TASKS))}")
  return TASKS[name]


def train_and_evaluate(name: str, config, workdir: str, train_data: str | None = None,
                       eval_data: str | None = None, **kwargs) -> dict[str, Any]:
  """Loads the named sets (the task's defaults when None) and runs ``loop.train_estimator``."""
  entry = get(name)
  source = entry.train_source(train_data or entry.train_data, config)
  sets = entry.eval_sets(eval_data or entry.eval_data, config)
  return loop.train_estimator(entry.task, config, source, sets, workdir, **kwargs)
