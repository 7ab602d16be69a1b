"""The gaze estimator's training and evaluation: the old names of ``tasks.gaze`` on
``tasks.loop`` (one loop for every downstream estimator; see there)."""

from __future__ import annotations

import functools

from simgan_jax.tasks import gaze as _gaze
from simgan_jax.tasks import loop

AXIS = loop.AXIS
TASK = _gaze.TASK
GazeTrainState = loop.TrainState
GazeSetup = loop.Setup
init_state = loop.init_state
state_specs = loop.state_specs
create_state = loop.create_state
train_step = loop.train_step
compile_train_step = loop.compile_train_step
predict = loop.predict
make_predict_fn = _gaze.make_predict_fn
evaluate = _gaze.evaluate
make_setup = functools.partial(loop.make_setup, TASK)
validate_config = functools.partial(loop.validate_config, TASK)
train_gaze_estimator = functools.partial(loop.train_estimator, TASK)
restore_params = functools.partial(loop.restore_params, TASK)
