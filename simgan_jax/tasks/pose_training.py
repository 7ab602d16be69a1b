"""The hand pose estimator's training and evaluation: the old names of ``tasks.pose``
on ``tasks.loop`` (one loop for every downstream estimator; see there)."""

from __future__ import annotations

import functools

from simgan_jax.tasks import loop
from simgan_jax.tasks import pose as _pose

AXIS = loop.AXIS
TASK = _pose.TASK
PoseTrainState = loop.TrainState
PoseSetup = loop.Setup
init_state = loop.init_state
state_specs = loop.state_specs
create_state = loop.create_state
train_step = loop.train_step
compile_train_step = loop.compile_train_step
predict = loop.predict
make_predict_fn = _pose.make_predict_fn
evaluate = _pose.evaluate
make_setup = functools.partial(loop.make_setup, TASK)
validate_config = functools.partial(loop.validate_config, TASK)
train_pose_estimator = functools.partial(loop.train_estimator, TASK)
restore_params = functools.partial(loop.restore_params, TASK)
