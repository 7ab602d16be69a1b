"""Training and evaluation of the gaze estimator, data-parallel like SimGAN's steps.

Everything that changes during training is one ``GazeTrainState`` pytree
(params, optimiser state, step, root key). A step is
``state, metrics = step_fn(state, data)``: ``jax.shard_map`` over the mesh of
``parallel.make_mesh`` (axis ``"batch"``), jit with the state donated, gradients
averaged by ``parallel.mean_grad``. Each device samples its share of the batch inside
the step from the source (an image pool or the simulator), one key per example
from its *global* index (``parallel.example_keys``), so 1 and 8 devices train on
the same batches. Loss: the squared L2 distance to the unit gaze vector.

``train_gaze_estimator`` writes into ``workdir``: ``checkpoints/<step>/`` (the
whole state; a rerun resumes), ``metrics.jsonl`` / ``tensorboard/``,
``config.json`` and ``results.json`` (mean angular error and the within-d curve
on each evaluation set).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from simgan_jax import checkpoints
from simgan_jax import metric_writer
from simgan_jax import parallel
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError, TrainingDivergedError
from simgan_jax.evaluation import gaze

AXIS = parallel.AXIS
_INIT, _BATCH = 1, 2  # named random streams


@flax.struct.dataclass
class GazeTrainState:
  step: jax.Array  # int32
  key: jax.Array  # uint32[2]: root key from config.seed
  params: Any
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class GazeSetup:
  """Static pieces of a run."""

  model: gaze.GazeEstimator
  tx: optax.GradientTransformation
  source: sources_lib.ImageSource
  image_shape: tuple[int, int, int]
  batch_size: int  # global
  num_devices: int
  seed: int

  @property
  def local_batch(self) -> int:
    return self.batch_size // self.num_devices


def make_setup(config, source, num_devices: int) -> GazeSetup:
  return GazeSetup(
      model=gaze.make_gaze_estimator(config),
      tx=training.make_optimizer(config),  # the same optimizer section as SimGAN's
      source=source,
      image_shape=(config.image_height, config.image_width, config.channels),
      batch_size=config.batch_size,
      num_devices=num_devices,
      seed=config.seed)


def init_state(s: GazeSetup) -> GazeTrainState:
  key = jax.random.PRNGKey(s.seed)
  params = s.model.init(jax.random.fold_in(key, _INIT), jnp.zeros((1, *s.image_shape)))["params"]
  return GazeTrainState(step=jnp.zeros((), jnp.int32), key=key, params=params,
                        opt_state=s.tx.init(params))


def state_specs(state: GazeTrainState) -> GazeTrainState:
  """Everything replicated."""
  return jax.tree.map(lambda _: P(), state)


def create_state(s: GazeSetup, mesh: Mesh) -> GazeTrainState:
  specs = state_specs(jax.eval_shape(functools.partial(init_state, s)))
  return jax.jit(functools.partial(init_state, s), out_shardings=parallel.shardings(mesh, specs))()


def train_step(s: GazeSetup, state: GazeTrainState, data):
  """One Adam/SGD update on a batch sampled from ``data``; metrics averaged over devices."""
  key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), _BATCH)
  batch = s.source.sample(data, parallel.example_keys(key, s.local_batch))
  true = batch["gaze"].astype(jnp.float32)

  def loss_fn(params):
    pred = s.model.apply({"params": params}, batch["image"])
    return gaze.gaze_l2_loss(pred, true), pred

  # Equal shares per device, so the mean of device means is the global mean.
  (loss, pred), grads = parallel.mean_value_and_grad(loss_fn, state.params, has_aux=True)
  updates, opt_state = s.tx.update(grads, state.opt_state, state.params)
  metrics = {"loss": loss, "angular_error_deg": jnp.mean(gaze.angular_error_deg(pred, true))}
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state)
  return state, lax.pmean(metrics, AXIS)


def compile_train_step(s: GazeSetup, mesh: Mesh, specs: GazeTrainState, data_specs: Any = P()):
  """jit(shard_map(train_step)); ``data_specs`` from ``sources.place`` (replicated by default)."""
  mapped = jax.shard_map(functools.partial(train_step, s), mesh=mesh, in_specs=(specs, data_specs),
                         out_specs=(specs, P()))
  return jax.jit(mapped, donate_argnums=0)


# ----------------------------------------------------------------------------- evaluation


def make_predict_fn(model: gaze.GazeEstimator, mesh: Mesh):
  """(params, images [N, H, W, C] sharded over the batch axis) -> raw gaze [N, 3], replicated."""

  def predict(params, images):
    if images.dtype == jnp.uint8:
      images = sources_lib.to_unit_range(images)
    pred = model.apply({"params": params}, images.astype(jnp.float32))
    # Gathered so every host can read all predictions (multi-host safe). The
    # gathered value is the same on every device, which shard_map cannot infer
    # for all_gather, hence check_vma=False.
    return lax.all_gather(pred, AXIS, tiled=True)

  return jax.jit(jax.shard_map(predict, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                               check_vma=False))


def predict(predict_fn, params, images: np.ndarray, mesh: Mesh, chunk: int) -> np.ndarray:
  """Raw predictions [N, 3] for host images, in fixed-size chunks (one compiled shape)."""
  num_devices = mesh.devices.size
  chunk = -(-chunk // num_devices) * num_devices
  sharding = NamedSharding(mesh, P(AXIS))
  outputs = []
  for start in range(0, len(images), chunk):
    part = images[start:start + chunk]
    if len(part) < chunk:  # pad the last chunk; padded rows are cut below
      part = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)])
    array = jax.make_array_from_callback(part.shape, sharding, lambda idx, part=part: part[idx])
    # Read back before the next chunk is dispatched: many in-flight programs with
    # collectives can deadlock XLA:CPU's thread pool (seen with 8 fake devices).
    outputs.append(np.asarray(predict_fn(params, array).addressable_data(0)))
  return np.concatenate(outputs)[:len(images)]


def evaluate(predict_fn, params, images, gaze_N3, mesh: Mesh, chunk: int,
             thresholds=gaze.WITHIN_THRESHOLDS_DEG) -> dict[str, Any]:
  """Mean angular error (degrees) and the within-d curve on one labelled set."""
  errors = np.asarray(gaze.angular_error_deg(predict(predict_fn, params, images, mesh, chunk),
                                             np.asarray(gaze_N3, np.float32)))
  return {
      "num_images": int(len(errors)),
      "mean_angular_error_deg": gaze.mean_angular_error(errors),
      "median_angular_error_deg": float(np.median(errors)),
      "within_deg": {str(d): share for d, share in gaze.within_curve(errors, thresholds).items()},
  }


# ----------------------------------------------------------------------------- loop


def validate_config(config, num_devices: int) -> None:
  for field in ("batch_size", "num_steps", "log_every", "checkpoint_every", "eval_batch_size",
                "max_checkpoints_to_keep", "image_height", "image_width", "channels"):
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f"config.{field}: must be an integer > 0, got {config[field]!r}")
  if not isinstance(config.eval_every, int) or config.eval_every < 0:
    raise ConfigError(f"config.eval_every: must be an integer >= 0, got {config.eval_every!r}")
  if config.batch_size % num_devices:
    raise ConfigError(f"config.batch_size: {config.batch_size} is not divisible by {num_devices} devices")


def _check_data(config, source, eval_sets) -> None:
  shape = (config.image_height, config.image_width, config.channels)
  if tuple(source.image_shape) != shape:
    raise ConfigError(f"train data: images are {tuple(source.image_shape)} (H, W, C) but the config "
                      f"says {shape}")
  keys = jax.ShapeDtypeStruct((1, 2), jnp.uint32)
  batch = jax.eval_shape(source.sample, source.device_data(), keys)
  if "gaze" not in batch or batch["gaze"].shape[-1] != 3:
    raise DataError(f"train data: the source gives no 'gaze' [B, 3] label (fields: {', '.join(batch)})")
  for name, (images, gaze_N3) in eval_sets.items():
    if tuple(images.shape[1:]) != shape or np.shape(gaze_N3) != (len(images), 3):
      raise DataError(f"eval set {name}: images {images.shape} and gaze {np.shape(gaze_N3)} do not "
                      f"match [N, {', '.join(map(str, shape))}] and [N, 3]")


def _to_host(tree):
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def train_gaze_estimator(config, train_source: sources_lib.ImageSource,
                         eval_sets: dict[str, tuple[np.ndarray, np.ndarray]], workdir: str
                         ) -> dict[str, Any]:
  """Trains the estimator on ``train_source`` (resuming from ``workdir``), then evaluates it.

  ``eval_sets`` maps a name to (images [N, H, W, C] uint8 or float in [-1, 1],
  unit gaze [N, 3]). Returns (and writes to ``workdir/results.json``)
  ``{"steps", "train_seconds", "final_train_loss", "eval": {name: metrics}}``.
  """
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  num_devices = mesh.devices.size
  validate_config(config, num_devices)
  _check_data(config, train_source, eval_sets)
  is_chief = jax.process_index() == 0
  if is_chief:
    try:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    except OSError as e:
      raise ConfigError(f"--workdir {workdir}: not writable ({e.strerror or e})") from None

  s = make_setup(config, train_source, num_devices)
  data, data_specs = sources_lib.place(train_source, mesh)  # sharded if the pool is (sources.py)
  state = create_state(s, mesh)
  specs = state_specs(state)
  mngr = checkpoints.manager(workdir, config.max_checkpoints_to_keep)
  restored = checkpoints.restore_latest(mngr, state)
  state = state if restored is None else restored
  step = int(state.step)  # the one host read of the state before the loop
  step_fn = compile_train_step(s, mesh, specs, data_specs)
  predict_fn = make_predict_fn(s.model, mesh)
  writer = metric_writer.MetricWriter(workdir, enabled=is_chief)
  log = metric_writer.print_line if is_chief else (lambda line: None)
  log(f"gaze estimator: {num_devices} device(s), {'starting at' if restored is None else 'resuming at'} step "
      f"{step} of {config.num_steps}, batch {config.batch_size}, workdir {workdir}")

  def run_eval(at, params):
    results = {name: evaluate(predict_fn, params, images, g, mesh, config.eval_batch_size)
               for name, (images, g) in eval_sets.items()}
    for name, r in results.items():
      writer.write(at, {f"eval/{name}/mean_angular_error_deg": r["mean_angular_error_deg"],
                        f"eval/{name}/within_7_deg": r["within_deg"]["7"]})
      log(f"step {at}: {name}: mean angular error {r['mean_angular_error_deg']:.2f} deg, "
          f"within 7 deg {100 * r['within_deg']['7']:.1f}%")
    return results

  start_time, window = time.time(), {"time": time.time(), "step": step}
  last = {}

  def report(at, metrics) -> None:
    scalars = {k: float(v) for k, v in _to_host(metrics).items()}
    if not all(math.isfinite(v) for v in scalars.values()):
      raise TrainingDivergedError(f"step {at}: gaze estimator metrics {scalars}; stopped")
    now = time.time()
    scalars["images_per_second"] = config.batch_size * (at - window["step"]) / max(now - window["time"], 1e-9)
    window.update(time=now, step=at)
    writer.write(at, scalars)
    last.update(scalars)
    log(f"step {at}/{config.num_steps} loss {scalars['loss']:.4f} "
        f"train error {scalars['angular_error_deg']:.2f} deg | {scalars['images_per_second']:.0f} img/s")

  pending = None
  while step < config.num_steps:
    state, metrics = step_fn(state, data)
    step += 1
    # Metrics of the previous step are read only now, after this step was dispatched.
    if pending is not None:
      report(*pending)
      pending = None
    if step % config.log_every == 0 or step == config.num_steps:
      pending = (step, metrics)
    if step % config.checkpoint_every == 0 or step == config.num_steps:
      checkpoints.save(mngr, step, state)
    if config.eval_every and step % config.eval_every == 0 and step < config.num_steps:
      run_eval(step, state.params)
  if pending is not None:
    report(*pending)
  results = {"steps": step, "train_seconds": time.time() - start_time,
             "final_train_loss": last.get("loss"), "eval": run_eval(step, state.params)}
  writer.close()
  mngr.close()
  if is_chief:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=1)
  return results


def restore_params(config, workdir: str, step: int | None = None):
  """The estimator's params saved in ``workdir`` (newest, or ``step``), e.g. in a notebook."""
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  s = make_setup(config, None, mesh.devices.size)
  abstract = jax.eval_shape(functools.partial(init_state, s))
  like = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), abstract,
                      parallel.shardings(mesh, state_specs(abstract)))
  return checkpoints.restore(workdir, like, step).params
