"""The SimGAN training loop: ``train_and_evaluate(config, workdir)``.

Runs Algorithm 1 as one global step counter: ``refiner_pretrain_steps`` refiner
steps, then ``discriminator_pretrain_steps`` discriminator steps, then
``num_iterations`` adversarial iterations (Kg refiner + Kd discriminator updates
each, in one compiled call). Writes into ``workdir``:

* ``checkpoints/<step>/``: the whole train state (orbax), every
  ``checkpoint_every`` steps and at the end; a rerun resumes from the newest;
* ``metrics.jsonl`` and ``tensorboard/``: losses, discriminator accuracies, Kg,
  images/s, every ``log_every`` steps; ``realism_kid`` at every checkpoint
  (``make_realism_probe``; off when ``config.realism.num_images`` is 0);
* ``samples/step_<step>.png``: synthetic | refined | real, every ``sample_every``;
* ``config.json``: the config of the (last) run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax import checkpoints
from simgan_jax import images as images_lib
from simgan_jax import metric_writer
from simgan_jax import parallel
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, TrainingDivergedError

PHASE_ORDER = ("refiner_pretrain", "discriminator_pretrain", "adversarial")


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


def validate_config(config, num_devices: int) -> None:
  """Raises ConfigError naming the first bad field."""
  for field in ("refiner_pretrain_steps", "discriminator_pretrain_steps", "num_iterations"):
    if not isinstance(config[field], int) or config[field] < 0:
      raise ConfigError(f"config.{field}: must be an integer >= 0, got {config[field]!r}")
  for field in ("batch_size", "kg", "kd", "log_every", "sample_every", "checkpoint_every",
                "history_size", "image_height", "image_width", "channels", "max_checkpoints_to_keep"):
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f"config.{field}: must be an integer > 0, got {config[field]!r}")
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


def check_image_shapes(config, synthetic, real) -> None:
  expected = (config.image_height, config.image_width, config.channels)
  for field, source in (("synthetic_data", synthetic), ("real_data", real)):
    if tuple(source.image_shape) != expected:
      raise ConfigError(
          f"config.{field}: images are {tuple(source.image_shape)} (H, W, C) but config.image_height, "
          f"image_width, channels say {expected}")


def prepare_workdir(workdir: str) -> None:
  try:
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    probe = os.path.join(workdir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--workdir {workdir}: not writable ({e.strerror or e})") from None


def _to_host(tree):
  """Replicated device arrays -> numpy, reading this host's own copy."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves))


def train_and_evaluate(config, workdir: str, synthetic: sources_lib.ImageSource | None = None,
                       real: sources_lib.ImageSource | None = None) -> training.TrainState:
  """Trains SimGAN as ``config`` says, resuming from ``workdir``; returns the final state."""
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  num_devices = mesh.devices.size
  validate_config(config, num_devices)
  is_chief = jax.process_index() == 0
  if is_chief:
    prepare_workdir(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  image_shape = (config.image_height, config.image_width, config.channels)
  synthetic = synthetic or sources_lib.make_source(config.synthetic_data, image_shape, "synthetic_data")
  real = real or sources_lib.make_source(config.real_data, image_shape, "real_data")
  check_image_shapes(config, synthetic, real)

  setup = training.make_setup(config, synthetic, real, num_devices)
  data = parallel.put_replicated({"synthetic": synthetic.device_data(), "real": real.device_data()}, mesh)
  task = _task_network(config, setup, data, workdir, is_chief)
  if task is not None and config.loss.get("task_consistency_weight", 0.0):
    setup = dataclasses.replace(setup, task_network=task)
  state = training.create_state(setup, mesh)
  specs = training.state_specs(state)
  mngr = checkpoints.manager(workdir, config.max_checkpoints_to_keep)
  restored = checkpoints.restore_latest(mngr, state)
  if restored is not None:
    state = restored
  step = int(state.step)  # the one host read of the state before the loop
  last_saved = step if restored is not None else None
  total = sum(phase_lengths(config).values())
  step_fns = {phase: training.compile_step(fn, setup, mesh, specs) for phase, fn in training.PHASES.items()}
  sample_fn = training.make_sample_fn(setup, config.num_sample_images)
  realism_probe = make_realism_probe(config, setup, data, task) if is_chief else None
  writer = metric_writer.MetricWriter(workdir, enabled=is_chief)
  if is_chief:
    metric_writer.print_line(
        f"simgan_jax: {num_devices} device(s) on {jax.process_count()} process(es), "
        f"{'resuming at' if restored is not None else 'starting at'} step {step} of {total}, workdir {workdir}")

  window = {"time": time.time(), "step": step}

  def report(entry) -> None:
    at, phase, metrics = entry
    scalars = {k: float(v) for k, v in _to_host(metrics).items()}
    for name, value in scalars.items():
      if not math.isfinite(value):
        saved = f"step {last_saved}" if last_saved is not None else "none yet"
        raise TrainingDivergedError(
            f"step {at} ({phase}): {name} is {value}; stopped. Last good checkpoint: {saved}, "
            f"kept in {os.path.join(workdir, 'checkpoints')}")
    now = time.time()
    seconds_per_step = (now - window["time"]) / max(at - window["step"], 1)
    scalars["images_per_second"] = config.batch_size / seconds_per_step
    window.update(time=now, step=at)
    writer.write(at, scalars)
    if is_chief:
      metric_writer.print_line(metric_writer.console_line(at, total, phase, scalars,
                                                          (total - at) * seconds_per_step))

  pending = None
  while step < total:
    phase = phase_at(step, config)
    state, metrics = step_fns[phase](state, data)
    step += 1
    # Metrics of the previous step are read only now, after this step was dispatched.
    if pending is not None:
      report(pending)
      pending = None
    if step % config.log_every == 0 or step == total:
      pending = (step, phase, metrics)
    if step % config.sample_every == 0 or step == total:
      _write_samples(workdir, writer, step, _to_host(sample_fn(state, data)), is_chief)
    if step % config.checkpoint_every == 0 or step == total:
      if pending is not None:
        report(pending)
        pending = None
      if not bool(_to_host(_all_finite(state))):
        raise TrainingDivergedError(
            f"step {step} ({phase}): the train state holds NaN or Inf; not saved. Last good checkpoint: "
            f"step {last_saved}, kept in {os.path.join(workdir, 'checkpoints')}")
      checkpoints.save(mngr, step, state)
      last_saved = step
      if realism_probe is not None:
        scores = realism_probe(_to_host(state.refiner_params))
        writer.write(step, scores)
        for line in probe_lines(step, scores, config, realism_probe.max_drift,
                                task.info.get("unit", "") if task is not None else ""):
          metric_writer.print_line(line)
  if pending is not None:
    report(pending)
  writer.close()
  mngr.close()
  return state


def make_realism_probe(config, setup: training.Setup, data, task=None):
  """``refiner params (host) -> scores`` at a checkpoint, or None when
  ``config.realism.num_images`` is 0.

  The same ``num_images`` synthetic images (fixed keys from ``config.realism.seed``)
  are refined at each call and compared with ``num_images`` real-pool images:
  ``realism_kid`` (+ ``_std``, ``_unrefined``) by KID on fixed random features
  (``evaluation/realism.py``); ``two_sample_accuracy`` (+ ``_low``, ``_high``,
  ``_unrefined``) of a fresh refined-vs-real classifier (``evaluation/two_sample.py``,
  ``config.two_sample``); ``label_drift`` (+ ``_p90``) of ``task``, the synthetic-trained
  task network (``evaluation/drift.py``); the output spread and ``collapsed``; and
  ``selection_score`` (``evaluation/selection.py``) with the seconds each part took.
  ``probe.evaluate(refined_uint8)`` scores already refined images (tests use it).
  Runs on this process's first device only (no collectives), so only the chief
  needs to call it.
  """
  r = config.get("realism")
  if r is None or not r.num_images:
    return None
  from simgan_jax.evaluation import realism, refine, selection, two_sample  # pylint: disable=g-import-not-at-top
  from simgan_jax.evaluation import drift as drift_lib  # pylint: disable=g-import-not-at-top

  if r.subset_size > r.num_images:
    raise ConfigError(f"config.realism.subset_size: {r.subset_size} is more than num_images "
                      f"{r.num_images}")
  key = jax.random.PRNGKey(r.seed)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(r.num_images))
  device = jax.local_devices()[0]
  local = jax.tree.map(lambda x: x.addressable_data(0), data)

  @jax.jit
  def pick(d, keys):
    real_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    batch = setup.synthetic.sample(d["synthetic"], keys)
    return batch, setup.real.sample(d["real"], real_keys)["image"]

  batch, real = jax.device_get(pick(local, jax.device_put(keys, device)))
  synthetic = batch["image"]
  synthetic_u8 = sources_lib.from_unit_range(synthetic)
  image_shape = tuple(synthetic.shape[1:])
  scorer = realism.RealismScorer(real, image_shape, seed=r.seed, subset_size=r.subset_size,
                                 num_subsets=r.num_subsets)
  fixed = {"realism_kid_unrefined": scorer.score(synthetic)["kid"]}
  t = config.get("two_sample")
  tester = None
  if t is not None and t.enabled:
    if not 1 <= t.num_test < r.num_images:
      raise ConfigError(f"config.two_sample.num_test: {t.num_test} must be >= 1 and below "
                        f"config.realism.num_images {r.num_images}")
    tester = two_sample.TwoSampleTest(sources_lib.from_unit_range(real), t.num_test, steps=t.steps,
                                      batch_size=t.batch_size, features=t.features, seed=t.seed)
    fixed["two_sample_accuracy_unrefined"] = tester.score(synthetic_u8)["two_sample_accuracy"]
  max_drift, drift_before = None, None
  if task is not None:
    max_drift = task.max_drift(config)
    drift_before = drift_lib.predict(task, synthetic_u8)
    if task.label in batch:
      fixed["task_error_synthetic"] = drift_lib.synthetic_error(task, drift_before, np.asarray(batch[task.label]))
  mesh = jax.sharding.Mesh(np.array([device]), (parallel.AXIS,))

  def evaluate(refined_u8) -> dict[str, float]:
    scores, seconds = dict(fixed), {}
    start = time.time()
    kid = scorer.score(refined_u8)
    scores.update(realism_kid=kid["kid"], realism_kid_std=kid["kid_std"])
    seconds["realism"] = time.time() - start
    if tester is not None:
      start = time.time()
      scores.update(tester.score(refined_u8))
      seconds["two_sample"] = time.time() - start
    if task is not None:
      start = time.time()
      scores.update(drift_lib.measure(task, drift_before, refined_u8))
      seconds["drift"] = time.time() - start
    scores.update(selection.output_spread(synthetic_u8, refined_u8))
    collapsed = bool(selection.collapse_reasons(config, scores, max_drift))
    scores["collapsed"] = float(collapsed)
    scores["selection_score"] = selection.score(config, scores, max_drift, collapsed)
    scores.update({f"probe_seconds_{k}": v for k, v in seconds.items()})
    return scores

  def probe(refiner_params):
    start = time.time()
    refined = refine.refine_arrays(config, refiner_params, synthetic, mesh, chunk=250)
    scores = evaluate(refined)
    scores["probe_seconds_refine"] = time.time() - start - sum(
        v for k, v in scores.items() if k.startswith("probe_seconds_"))
    return scores

  probe.evaluate = evaluate
  probe.max_drift = max_drift
  probe.synthetic_u8 = synthetic_u8  # the images every call refines
  return probe


def probe_lines(step: int, scores: dict[str, float], config, max_drift=None, unit: str = "") -> list[str]:
  """The console lines of a checkpoint's probe: the scores, and a warning on a collapse."""
  from simgan_jax.evaluation import selection  # pylint: disable=g-import-not-at-top

  line = (f"step {step}: realism KID {scores['realism_kid']:.4g} (+- {scores['realism_kid_std']:.2g}; "
          f"unrefined {scores['realism_kid_unrefined']:.4g})")
  if "two_sample_accuracy" in scores:
    line += (f" | two-sample acc {100 * scores['two_sample_accuracy']:.1f}% "
             f"[{100 * scores['two_sample_low']:.1f}, {100 * scores['two_sample_high']:.1f}]")
  if "label_drift" in scores:
    line += f" | label drift {scores['label_drift']:.3g} {unit}".rstrip()
  line += f" | selection score {scores['selection_score']:.4g}"
  lines = [line]
  reasons = selection.collapse_reasons(config, scores, max_drift)
  if reasons:
    lines.append(f"WARNING: step {step}: the refiner collapsed ({'; '.join(reasons)}); "
                 "this checkpoint is never selected")
  return lines


def _task_network(config, setup: training.Setup, data, workdir: str, is_chief: bool):
  """The synthetic-trained task network (evaluation/drift.py), when the probe or the
  task-consistency loss needs one; None otherwise."""
  weight = config.loss.get("task_consistency_weight", 0.0)
  if not math.isfinite(weight) or weight < 0:
    raise ConfigError(f"config.loss.task_consistency_weight: must be a finite number >= 0, got {weight!r}")
  d = config.get("drift")
  probe_on = is_chief and d is not None and d.enabled and config.get("realism") and config.realism.num_images
  if not (weight or probe_on):
    return None
  if d is None:
    raise ConfigError("config.drift: the task-consistency loss needs the config.drift section")
  from simgan_jax.evaluation import drift as drift_lib  # pylint: disable=g-import-not-at-top

  local = jax.tree.map(lambda x: x.addressable_data(0), data["synthetic"])
  log = metric_writer.print_line if is_chief else (lambda line: None)
  task = drift_lib.task_network(config, setup.synthetic, local, setup.image_shape, workdir, log)
  if task is None and weight:
    raise ConfigError("config.loss.task_consistency_weight: > 0 needs a task network, but the "
                      "synthetic data has no numeric label (see config.drift.label)")
  return task


def restore_state(config, workdir: str, step: int | None = None) -> training.TrainState:
  """The train state saved in ``workdir`` (newest, or ``step``), on this process's devices."""
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  setup = training.make_setup(config, None, None, mesh.devices.size)
  abstract = jax.eval_shape(lambda: training.init_state(setup))
  like = jax.tree.map(lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract,
                      parallel.shardings(mesh, training.state_specs(abstract)))
  return checkpoints.restore(workdir, like, step)


def _write_samples(workdir, writer, step, samples, is_chief) -> None:
  if not is_chief:
    return
  image = images_lib.grid([samples["synthetic"], samples["refined"], samples["real"]])
  images_lib.save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), image)
  writer.write_image(step, "synthetic|refined|real", image)
