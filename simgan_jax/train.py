"""The SimGAN training loop: ``train_and_evaluate(config, workdir)``.

Runs Algorithm 1 as one global step counter: ``refiner_pretrain_steps`` refiner
steps, then ``discriminator_pretrain_steps`` discriminator steps, then
``num_iterations`` adversarial iterations (Kg refiner + Kd discriminator updates
each, in one compiled call). Writes into ``workdir``:

* ``checkpoints/<step>/``: the whole train state (orbax), every
  ``checkpoint_every`` steps, every ``checkpoint_every_minutes``, at the end of
  each phase and when stopped by SIGTERM/SIGINT; a rerun resumes from the newest
  intact one (damaged ones are moved to ``damaged_checkpoints/``). Kept: the newest
  ``max_checkpoints_to_keep`` and the ``keep_best_checkpoints`` best by score;
* ``metrics.jsonl`` and ``tensorboard/``: losses, discriminator accuracies, Kg,
  ``steps_per_second`` and ``refined_images_per_second``, every ``log_every``
  steps; ``realism_kid`` (the probe's scores) at every ``checkpoint_every``
  checkpoint and at the end (``probe/checkpoint.py``; off when
  ``config.realism.num_images`` is 0);
* ``samples/step_<step>.png``: synthetic | refined | real, every ``sample_every``;
* ``config.json``: the config of the (last) run, written once the config, the
  data and the checkpoint to resume from have been checked.

Stopping: on SIGTERM or SIGINT the loop finishes the current step, saves, and
raises ``Stopped`` (launch/train.py prints its one line and exits with 128 +
the signal number); the same command resumes. With several processes, the stop
and the time-based checkpoint are decided together: every ``sync_every_steps``
steps the processes all-gather two small integers (signal received, checkpoint
due by time), so all of them stop or save at the same step. One process decides
at every step, without any collective.
"""

from __future__ import annotations

import collections
import functools
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp

from simgan_jax import checkpoint_mismatch
from simgan_jax import checkpoints
from simgan_jax import images as images_lib
from simgan_jax import metric_writer
from simgan_jax import models
from simgan_jax import parallel
from simgan_jax import preemption
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, TrainingDivergedError
from simgan_jax.probe import selection
from simgan_jax.probe import checkpoint as checkpoint_probe

# Stopping on SIGTERM/SIGINT and time-based checkpoints live in preemption.py (shared
# with the estimator loop, tasks/loop.py); the old names stay importable from here.
Stopped = preemption.Stopped
_StopSignals = preemption.StopSignals
_Decisions = preemption.Decisions

PHASE_ORDER = ("refiner_pretrain", "discriminator_pretrain", "adversarial")
MAX_IN_FLIGHT = 2  # dispatched steps not yet finished, at most (train_and_evaluate)


def phase_lengths(config) -> dict[str, int]:
  return {
      "refiner_pretrain": config.refiner_pretrain_steps,
      "discriminator_pretrain": config.discriminator_pretrain_steps,
      "adversarial": config.num_iterations,
  }


def phase_at(step: int, config) -> str:
  """The phase that global step ``step`` (0-based) belongs to."""
  for phase, length in phase_lengths(config).items():
    if step < length:
      return phase
    step -= length
  return "done"


# Refiner fields that act on the ResNet trunk's input or output (what each does, for the error).
# (The camera stages are not here: with the identity output they act on the input itself.)
_TRUNK_ONLY_FIELDS = (("smooth_noise_cells", "feeds the trunk"), ("block_quantizer", "quantises the trunk's output"))


def validate_config(config, num_devices: int) -> None:
  """Raises ConfigError naming the first bad field."""
  for field in ("refiner_pretrain_steps", "discriminator_pretrain_steps", "num_iterations"):
    if not isinstance(config[field], int) or config[field] < 0:
      raise ConfigError(f"config.{field}: must be an integer >= 0, got {config[field]!r}")
  for field in ("batch_size", "kg", "kd", "log_every", "sample_every", "checkpoint_every",
                "history_size", "image_height", "image_width", "channels", "max_checkpoints_to_keep",
                "sync_every_steps"):
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f"config.{field}: must be an integer > 0, got {config[field]!r}")
  if not isinstance(config.keep_best_checkpoints, int) or config.keep_best_checkpoints < 0:
    raise ConfigError(f"config.keep_best_checkpoints: must be an integer >= 0, got "
                      f"{config.keep_best_checkpoints!r}")
  minutes = config.checkpoint_every_minutes
  if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes >= 0:
    raise ConfigError(f"config.checkpoint_every_minutes: must be a number >= 0 (0: off), got {minutes!r}")
  if config.batch_size % (2 * num_devices):
    raise ConfigError(
        f"config.batch_size: {config.batch_size} is not divisible by 2 x {num_devices} devices; each "
        "device needs an even share (half fresh, half history images for the discriminator)")
  if config.history_size % (config.batch_size // 2):
    raise ConfigError(f"config.history_size: {config.history_size} is not a multiple of "
                      f"batch_size // 2 = {config.batch_size // 2}")
  if config.adaptive_kg and not 1 <= config.kg_min <= config.kg <= config.kg_max:
    raise ConfigError(f"config.kg: adaptive Kg needs 1 <= kg_min <= kg <= kg_max, got "
                      f"{config.kg_min}, {config.kg}, {config.kg_max}")
  if config.adaptive_kg and config.kg_lower_below > config.kg_raise_above:
    raise ConfigError(f"config.kg_lower_below: {config.kg_lower_below} is above kg_raise_above "
                      f"{config.kg_raise_above}; Kg would be raised and lowered at once")
  if config.loss.reduction not in ("sum", "mean"):
    raise ConfigError(f"config.loss.reduction: {config.loss.reduction!r} is not 'sum' or 'mean'")
  if not math.isfinite(config.loss.self_regularization_weight) or config.loss.self_regularization_weight < 0:
    raise ConfigError("config.loss.self_regularization_weight: must be a finite number >= 0")
  for section, name in (("loss", "self_regularization_free_above"), ("refiner", "dropout_value")):
    value = config[section].get(name)
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
      raise ConfigError(f"config.{section}.{name}: {value!r} is not a finite number or None (off)")
  for name in ("grid_phase_period", "dropout_head_kernel", "block_quantizer"):
    value = config.refiner.get(name, 0)
    if not isinstance(value, int) or value < 0:
      raise ConfigError(f"config.refiner.{name}: must be an integer >= 0 (0: off), got {value!r}")
  if config.refiner.get("dropout_slope_head", False) and config.refiner.get("dropout_head_kernel", 0):
    raise ConfigError("config.refiner.dropout_slope_head: the drop-out head reads either the slope or a "
                      "KxK neighbourhood (refiner.dropout_head_kernel), not both")
  gradient = config.refiner.get("dropout_gradient", "straight_through")
  if gradient not in models.DROPOUT_GRADIENTS:
    raise ConfigError(f"config.refiner.dropout_gradient: {gradient!r} is not one of "
                      f"{', '.join(map(repr, models.DROPOUT_GRADIENTS))}")
  if gradient != "straight_through" and config.refiner.get("dropout_value") is None:
    raise ConfigError(f"config.refiner.dropout_gradient: {gradient!r} is how a drop-out head learns, "
                      "and there is none (refiner.dropout_value is None)")
  cells = tuple(config.refiner.get("smooth_noise_cells", ()))
  if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in cells):
    raise ConfigError(f"config.refiner.smooth_noise_cells: must be integers >= 1 (cells along the "
                      f"height; () = off), got {cells!r}")
  if config.refiner.output_activation == "identity":  # no trunk: nothing for these to act on
    for field, what in _TRUNK_ONLY_FIELDS:
      if config.refiner.get(field):
        raise ConfigError(f"config.refiner.{field}: {what}, and output_activation='identity' has no trunk")
  for field, what in (("light_stage_tone", "mean tone"), ("light_stage_exposure", "mean exposure")):
    if config.refiner.get(field, False) and not config.refiner.get("light_stage", False):
      raise ConfigError(f"config.refiner.{field}: the {what} is the light stage's; set "
                        "refiner.light_stage=True as well")
  if config.refiner.get("jpeg_quantizer", False) and config.refiner.get("block_quantizer", 0):
    raise ConfigError("config.refiner.jpeg_quantizer: R's output is quantised either with the "
                      "standard table (jpeg_quantizer) or with learned steps (block_quantizer), not both")
  try:
    models.check_identity_output(config.refiner.output_activation, config.refiner.get("dropout_value"),
                                 config.refiner.get("dropout_head_kernel", 0)
                                 or config.refiner.get("dropout_slope_head", False),
                                 any(config.refiner.get(f, False) for f in models.CAMERA_STAGE_FIELDS))
  except ValueError as e:
    raise ConfigError(str(e)) from None
  trunk_start = config.refiner.get("trunk_start_step", 0)
  if isinstance(trunk_start, bool) or not isinstance(trunk_start, int) or trunk_start < 0:
    raise ConfigError(f"config.refiner.trunk_start_step: must be an integer >= 0 (0: off), got {trunk_start!r}")
  try:
    if trunk_start:
      models.check_frozen_trunk(config.refiner.output_activation, config.refiner.get("dropout_value"),
                                config.refiner.get("block_quantizer", 0))
  except ValueError as e:
    raise ConfigError(str(e)) from None
  two_sample = config.get("two_sample")
  if not (two_sample is not None and two_sample.enabled):
    selection.require_measured(config, "two_sample_accuracy", "config.two_sample.enabled is false")
  min_step = config.selection.get("min_step", 0) if config.get("selection") is not None else 0
  if isinstance(min_step, bool) or not isinstance(min_step, int) or min_step < 0:
    raise ConfigError(f"config.selection.min_step: must be an integer >= 0 (0: every adversarial checkpoint), "
                      f"got {min_step!r}")


def check_image_shapes(config, synthetic, real) -> None:
  expected = (config.image_height, config.image_width, config.channels)
  for field, source in (("synthetic_data", synthetic), ("real_data", real)):
    if tuple(source.image_shape) != expected:
      raise ConfigError(
          f"config.{field}: images are {tuple(source.image_shape)} (H, W, C) but config.image_height, "
          f"image_width, channels say {expected}")


def prepare_workdir(workdir: str) -> None:
  metric_writer.prepare_workdir(workdir, ("samples",))


_to_host = parallel.to_host


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves))


def _phase_ends(config) -> set[int]:
  ends, at = set(), 0
  for length in phase_lengths(config).values():
    at += length
    if length:
      ends.add(at)
  return ends


def train_and_evaluate(config, workdir: str, synthetic: sources_lib.ImageSource | None = None,
                       real: sources_lib.ImageSource | None = None, *,
                       clock: Callable[[], float] = time.monotonic) -> training.TrainState:
  """Trains SimGAN as ``config`` says, resuming from ``workdir``; returns the final state.

  Raises ``Stopped`` after saving when SIGTERM/SIGINT arrives. ``clock`` (seconds)
  drives ``checkpoint_every_minutes`` only; tests pass a fake one.
  """
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  num_devices = mesh.devices.size
  validate_config(config, num_devices)
  is_chief = jax.process_index() == 0
  if is_chief:
    prepare_workdir(workdir)
  image_shape = (config.image_height, config.image_width, config.channels)
  synthetic = synthetic or sources_lib.make_source(config.synthetic_data, image_shape, "synthetic_data")
  real = real or sources_lib.make_source(config.real_data, image_shape, "real_data")
  check_image_shapes(config, synthetic, real)

  setup = training.make_setup(config, synthetic, real, num_devices)
  placed = {"synthetic": sources_lib.place(synthetic, mesh), "real": sources_lib.place(real, mesh)}
  data = {name: d for name, (d, _) in placed.items()}
  data_specs = {name: spec for name, (_, spec) in placed.items()}
  task = checkpoint_probe.task_network(config, setup, data, workdir, is_chief)
  if task is not None and config.loss.get("task_consistency_weight", 0.0):
    setup = setup.with_task_network(task)
  state = training.create_state(setup, mesh)
  specs = training.state_specs(state)
  # Keep-best keeps exactly what --step=best would pick (the chief deletes; it has metrics.jsonl).
  rank = functools.partial(selection.ranked_steps, config, workdir) if is_chief else None
  mngr = checkpoints.manager(workdir, config.max_checkpoints_to_keep, config.keep_best_checkpoints, rank)
  chief_print = metric_writer.print_line if is_chief else (lambda line: None)
  try:
    restored = checkpoints.restore_newest_intact(mngr, state, report=chief_print)
  except checkpoints.ShapeMismatch as e:
    mngr.close()
    raise ConfigError(checkpoint_mismatch.mismatch_message(e, config, workdir)) from None
  if restored is not None:
    state = restored[0]
  # Written only now: config, data and checkpoint are known to fit together.
  if is_chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  step = int(state.step)  # the one host read of the state before the loop
  last_saved = step if restored is not None else None
  total = sum(phase_lengths(config).values())
  phase_ends = _phase_ends(config)
  step_fns = {phase: metric_writer.timed_first_call(training.compile_step(fn, setup, mesh, specs, data_specs),
                                                   phase.replace("_", " "), is_chief)
              for phase, fn in training.PHASES.items()}
  # Before config.refiner.trunk_start_step R's trunk is skipped (models.Refiner.trunk_frozen):
  # the camera stages alone. Each step compiles at its first call, so unused ones cost nothing.
  trunk_start = config.refiner.get("trunk_start_step", 0)
  frozen = training.with_frozen_trunk(setup) if trunk_start else None
  frozen_fns = {} if not trunk_start else {
      phase: metric_writer.timed_first_call(training.compile_step(fn, frozen, mesh, specs, data_specs),
                                            phase.replace("_", " ") + " (trunk frozen)", is_chief)
      for phase, fn in training.PHASES.items()}
  sample_fn = training.make_sample_fn(setup, config.num_sample_images)
  realism_probe = checkpoint_probe.make_realism_probe(config, setup, data, mesh, is_chief, task)
  probing = bool(config.get("realism") and config.realism.num_images)
  writer = metric_writer.MetricWriter(workdir, enabled=is_chief)
  chief_print(f"simgan_jax: {num_devices} device(s) on {jax.process_count()} process(es), "
              f"{'resuming at' if restored is not None else 'starting at'} step {step} of {total}, "
              f"workdir {workdir}")
  chief_print(sources_lib.pool_memory_line({"synthetic": synthetic, "real": real}, data, num_devices))

  # Throughput since the last report: steps and images the refiner processed.
  kg_now = int(config.kg) if not config.adaptive_kg else int(state.kg)
  window = {"time": time.perf_counter(), "step": step, "refined": 0}

  def report(entry) -> None:
    nonlocal kg_now
    at, phase, metrics = entry
    scalars = {k: float(v) for k, v in _to_host(metrics).items()}
    for name, value in scalars.items():
      if not math.isfinite(value):
        saved = f"step {last_saved}" if last_saved is not None else "none yet"
        raise TrainingDivergedError(
            f"step {at} ({phase}): {name} is {value}; stopped. Last good checkpoint: {saved}, "
            f"kept in {os.path.join(workdir, 'checkpoints')}")
    if "kg" in scalars:
      kg_now = int(scalars["kg"])
    now = time.perf_counter()
    seconds = max(now - window["time"], 1e-9)
    steps_per_second = max(at - window["step"], 1) / seconds
    scalars["steps_per_second"] = steps_per_second
    # With the adaptive Kg, steps between two reports are counted at the Kg last read.
    scalars["refined_images_per_second"] = window["refined"] / seconds
    window.update(time=now, step=at, refined=0)
    writer.write(at, scalars)
    chief_print(metric_writer.console_line(at, total, phase, scalars, (total - at) / steps_per_second))

  def score(at: int) -> dict:
    scores = (realism_probe(_to_host(training.inference_refiner_params(state)))
              if realism_probe is not None else {})
    ranking = checkpoint_probe.broadcast_score(checkpoints.score_of(scores))
    if not is_chief:
      return {"selection_score": ranking}  # only the chief's scores are written
    # In metrics.jsonl before the save, so keep-best (the selection rule) sees this step.
    writer.write(at, scores)
    for line in checkpoint_probe.probe_lines(at, scores, config, getattr(realism_probe, "max_drift", None),
                            task.info.get("unit", "") if task is not None else ""):
      chief_print(line)
    return scores

  def save(at: int, phase: str, with_scores: bool, announce: bool = True) -> None:
    nonlocal last_saved
    if not bool(_to_host(_all_finite(state))):
      raise TrainingDivergedError(
          f"step {at} ({phase}): the train state holds NaN or Inf; not saved. Last good checkpoint: "
          f"step {last_saved}, kept in {os.path.join(workdir, 'checkpoints')}")
    scored = with_scores and probing
    if scored and not announce:
      # A stop is pending: the save must not wait for the probes (a grace period could run
      # out during them); they run after it, while the process may still live.
      checkpoints.save(mngr, at, state)
      last_saved = at
      score(at)
      return
    scores = score(at) if scored else None
    checkpoints.save(mngr, at, state, scores)
    last_saved = at
    if announce and not scored:  # one line per checkpoint; scored ones print their scores
      chief_print(f"step {at}: checkpoint saved ({phase})")

  pending = None
  in_flight = collections.deque()
  try:
    with _StopSignals() as signals:
      decisions = _Decisions(signals, clock, config.checkpoint_every_minutes, config.sync_every_steps)
      while step < total:
        phase = phase_at(step, config)
        state, metrics = (frozen_fns if step < trunk_start else step_fns)[phase](state, data)
        step += 1
        # At most MAX_IN_FLIGHT steps queued: hundreds of dispatched steps, each with
        # collectives over fake devices sharing 2 cores, let devices drift far apart
        # (XLA:CPU aborts a collective that waits too long). Waits, reads nothing.
        in_flight.append(metrics)
        if len(in_flight) > MAX_IN_FLIGHT:
          jax.block_until_ready(in_flight.popleft())
        # Metrics of the previous step are read only now, after this step was dispatched.
        if pending is not None:
          report(pending)
          pending = None
        window["refined"] += training.refined_images_per_step(setup, phase, kg_now)
        if step % config.log_every == 0 or step == total:
          pending = (step, phase, metrics)
        if step % config.sample_every == 0 or step == total:
          _write_samples(workdir, writer, step, _to_host(sample_fn(state, data)), is_chief)
        stop_signum, by_time = decisions.at(step)
        by_step = step % config.checkpoint_every == 0 or step == total
        if by_step or by_time or stop_signum or step in phase_ends:
          if pending is not None:
            report(pending)
            pending = None
          save(step, phase, with_scores=by_step, announce=not stop_signum)  # a stop says where
          decisions.saved()
        if stop_signum and step < total:
          raise Stopped(stop_signum, step, os.path.join(os.path.abspath(workdir), "checkpoints", str(step)))
      if pending is not None:
        report(pending)
  finally:
    writer.close()
    mngr.close()
  return state


# Moved (train.py holds the loop); the old names stay importable from here.
make_realism_probe, probe_lines = checkpoint_probe.make_realism_probe, checkpoint_probe.probe_lines
mismatch_message = checkpoint_mismatch.mismatch_message
pool_memory_line = sources_lib.pool_memory_line


# A notebook's way back to a run's state (checkpoints.restore_train_state).
restore_state = checkpoints.restore_train_state


def _write_samples(workdir, writer, step, samples, is_chief) -> None:
  if not is_chief:
    return
  image = images_lib.grid([samples["synthetic"], samples["refined"], samples["real"]])
  images_lib.save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), image)
  writer.write_image(step, "synthetic|refined|real", image)
