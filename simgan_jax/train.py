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

import functools
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
  placed = {"synthetic": sources_lib.place(synthetic, mesh), "real": sources_lib.place(real, mesh)}
  data = {name: d for name, (d, _) in placed.items()}
  data_specs = {name: spec for name, (_, spec) in placed.items()}
  state = training.create_state(setup, mesh)
  specs = training.state_specs(state)
  mngr = checkpoints.manager(workdir, config.max_checkpoints_to_keep)
  restored = checkpoints.restore_latest(mngr, state)
  if restored is not None:
    state = restored
  step = int(state.step)  # the one host read of the state before the loop
  last_saved = step if restored is not None else None
  total = sum(phase_lengths(config).values())
  step_fns = {phase: training.compile_step(fn, setup, mesh, specs, data_specs)
              for phase, fn in training.PHASES.items()}
  sample_fn = training.make_sample_fn(setup, config.num_sample_images)
  realism_probe = make_realism_probe(config, setup, data, mesh, is_chief)
  writer = metric_writer.MetricWriter(workdir, enabled=is_chief)
  if is_chief:
    metric_writer.print_line(
        f"simgan_jax: {num_devices} device(s) on {jax.process_count()} process(es), "
        f"{'resuming at' if restored is not None else 'starting at'} step {step} of {total}, workdir {workdir}")
    metric_writer.print_line(pool_memory_line({"synthetic": synthetic, "real": real}, data, num_devices))

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
        metric_writer.print_line(f"step {step}: realism KID {scores['realism_kid']:.4g} "
                                 f"(+- {scores['realism_kid_std']:.2g}; unrefined "
                                 f"{scores['realism_kid_unrefined']:.4g})")
  if pending is not None:
    report(pending)
  writer.close()
  mngr.close()
  return state


def pool_memory_line(sources: dict, data: dict, num_devices: int) -> str:
  """'simgan_jax: pools per device: synthetic 1.2 MiB of 9.6 MiB (sharded 1/8), real ...'."""
  parts = []
  for name, source in sources.items():
    held = sources_lib.bytes_per_device(data[name])
    if not held and not jax.tree.leaves(data[name]):
      parts.append(f"{name} none (rendered on device)")
      continue
    total = getattr(source, "pool_bytes", held)
    how = f"sharded 1/{num_devices}" if getattr(source, "sharded", False) else "replicated"
    parts.append(f"{name} {_size(held)} of {_size(total)} ({how})")
  return "simgan_jax: pools per device: " + ", ".join(parts)


def _size(num_bytes: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if num_bytes < 1024 or unit == "GiB":
      return f"{num_bytes:.3g} {unit}"
    num_bytes /= 1024


def make_realism_probe(config, setup: training.Setup, data, mesh, is_chief: bool = True):
  """``refiner params (host) -> {"realism_kid", "realism_kid_std", "realism_kid_unrefined"}``,
  or None when ``config.realism.num_images`` is 0.

  The same ``num_images`` synthetic images (fixed keys from ``config.realism.seed``)
  are refined at each call and compared with ``num_images`` real-pool images by
  KID on fixed random features (``evaluation/realism.py``). Every process calls
  it (the images are picked once from the pools, which may be sharded); the
  probe itself runs on the chief's first device only, and is None elsewhere.
  """
  r = config.get("realism")
  if r is None or not r.num_images:
    return None
  from simgan_jax.evaluation import realism, refine  # pylint: disable=g-import-not-at-top

  if r.subset_size > r.num_images:
    raise ConfigError(f"config.realism.subset_size: {r.subset_size} is more than num_images "
                      f"{r.num_images}")
  key = jax.random.PRNGKey(r.seed)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(r.num_images))
  device = jax.local_devices()[0]

  # Over the global (replicated or sharded) pools, on every process; replicated out.
  @functools.partial(jax.jit, out_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  def pick(d, keys):
    real_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    return (setup.synthetic.sample(d["synthetic"], keys)["image"],
            setup.real.sample(d["real"], real_keys)["image"])

  keys = parallel.put_replicated(np.asarray(keys), mesh)
  synthetic, real = (np.asarray(x.addressable_data(0)) for x in pick(data, keys))
  if not is_chief:
    return None
  image_shape = tuple(synthetic.shape[1:])
  scorer = realism.RealismScorer(real, image_shape, seed=r.seed, subset_size=r.subset_size,
                                 num_subsets=r.num_subsets)
  unrefined = scorer.score(synthetic)["kid"]
  mesh = jax.sharding.Mesh(np.array([device]), (parallel.AXIS,))

  def probe(refiner_params):
    refined = refine.refine_arrays(config, refiner_params, synthetic, mesh, chunk=250)
    scores = scorer.score(refined)
    return {"realism_kid": scores["kid"], "realism_kid_std": scores["kid_std"],
            "realism_kid_unrefined": unrefined}

  return probe


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
