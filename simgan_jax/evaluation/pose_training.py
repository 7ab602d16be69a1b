"""Training and evaluation of the hand pose estimator, data-parallel like gaze_training.

One ``PoseTrainState`` pytree (params, optimiser state, step, root key); a step
is ``state, metrics = step_fn(state, data)``: ``jax.shard_map`` over
``parallel.make_mesh``, jit with the state donated, gradients by
``parallel.mean_value_and_grad``. Each device samples its share of the batch
from the source with one key per example from its global index
(``parallel.example_keys``), augments it (+-20 degree rotation, scale and shift:
``pose.augment``) and regresses Gaussian heatmaps of the ``joints`` label.

``train_pose_estimator`` writes into ``workdir``: ``checkpoints/<step>/`` (the
whole state; a rerun resumes), ``metrics.jsonl``, ``config.json`` and
``results.json`` (mean joint error, the all-joints-within-d curve and the share
within 5 px on each evaluation set).
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
from jax.sharding import Mesh, PartitionSpec as P

from simgan_jax import checkpoints
from simgan_jax import metric_writer
from simgan_jax import parallel
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError, TrainingDivergedError
from simgan_jax.evaluation import gaze_training
from simgan_jax.evaluation import pose

AXIS = parallel.AXIS
_INIT, _BATCH, _AUGMENT = 1, 2, 3  # named random streams


@flax.struct.dataclass
class PoseTrainState:
  step: jax.Array
  key: jax.Array
  params: Any
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class PoseSetup:
  model: pose.StackedHourglass
  tx: optax.GradientTransformation
  source: sources_lib.ImageSource
  image_shape: tuple[int, int, int]
  batch_size: int
  num_devices: int
  seed: int
  sigma: float
  loss: str
  max_rotation_deg: float
  scale: tuple[float, float]
  max_shift: float

  @property
  def local_batch(self) -> int:
    return self.batch_size // self.num_devices


def make_setup(config, source, num_devices: int) -> PoseSetup:
  a = config.augment
  return PoseSetup(model=pose.make_pose_estimator(config), tx=training.make_optimizer(config),
                   source=source, image_shape=(config.image_height, config.image_width, config.channels),
                   batch_size=config.batch_size, num_devices=num_devices, seed=config.seed,
                   sigma=config.heatmap_sigma, loss=config.get("heatmap_loss", "mse"),
                   max_rotation_deg=a.max_rotation_deg,
                   scale=tuple(a.scale), max_shift=a.max_shift)


def init_state(s: PoseSetup) -> PoseTrainState:
  key = jax.random.PRNGKey(s.seed)
  params = s.model.init(jax.random.fold_in(key, _INIT), jnp.zeros((1, *s.image_shape)))["params"]
  return PoseTrainState(step=jnp.zeros((), jnp.int32), key=key, params=params, opt_state=s.tx.init(params))


def state_specs(state: PoseTrainState) -> PoseTrainState:
  return jax.tree.map(lambda _: P(), state)


def create_state(s: PoseSetup, mesh: Mesh) -> PoseTrainState:
  specs = state_specs(jax.eval_shape(functools.partial(init_state, s)))
  return jax.jit(functools.partial(init_state, s), out_shardings=parallel.shardings(mesh, specs))()


def train_step(s: PoseSetup, state: PoseTrainState, data):
  """One optimiser update on an augmented batch; metrics averaged over devices."""
  step_key = jax.random.fold_in(state.key, state.step)
  batch = s.source.sample(data, parallel.example_keys(jax.random.fold_in(step_key, _BATCH), s.local_batch))
  aug_keys = parallel.example_keys(jax.random.fold_in(step_key, _AUGMENT), s.local_batch)
  images, joints = jax.vmap(lambda k, i, j: pose.augment(k, i, j, s.max_rotation_deg, s.scale, s.max_shift))(
      aug_keys, batch["image"], batch["joints"].astype(jnp.float32))
  width, size = s.image_shape[1], s.model.heatmap_size
  targets = pose.heatmap_targets(pose.to_heatmap_coords(joints, width, size), size, s.sigma)

  def loss_fn(params):
    pred = s.model.apply({"params": params}, images)
    return pose.heatmap_loss(pred, targets, s.loss), pred[-1]

  (loss, last), grads = parallel.mean_value_and_grad(loss_fn, state.params, has_aux=True)
  updates, opt_state = s.tx.update(grads, state.opt_state, state.params)
  decoded = pose.to_image_coords(pose.decode_heatmaps(last), width, size)
  error = jnp.mean(jnp.linalg.norm(decoded - joints, axis=-1)) * (pose.PAPER_WIDTH / width)
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state)
  return state, lax.pmean({"loss": loss, "joint_error_px": error}, AXIS)


def compile_train_step(s: PoseSetup, mesh: Mesh, specs: PoseTrainState):
  mapped = jax.shard_map(functools.partial(train_step, s), mesh=mesh, in_specs=(specs, P()),
                         out_specs=(specs, P()))
  return jax.jit(mapped, donate_argnums=0)


# ----------------------------------------------------------------------------- evaluation


def make_predict_fn(model: pose.StackedHourglass, image_width: int, mesh: Mesh):
  """(params, images [N, H, W, 1] sharded) -> joints [N, J, 2] in image pixels, replicated."""

  def predict(params, images):
    if images.dtype == jnp.uint8:
      images = sources_lib.to_unit_range(images)
    heatmaps = model.apply({"params": params}, images.astype(jnp.float32))[-1]
    joints = pose.to_image_coords(pose.decode_heatmaps(heatmaps), image_width, model.heatmap_size)
    return lax.all_gather(joints, AXIS, tiled=True)

  return jax.jit(jax.shard_map(predict, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                               check_vma=False))


def evaluate(predict_fn, params, images, joints_NJ2, mesh: Mesh, chunk: int, image_width: int
             ) -> dict[str, Any]:
  """Mean joint error and the all-joints-within-d curve (224-crop pixels) on one set."""
  pred = gaze_training.predict(predict_fn, params, images, mesh, chunk)
  errors = pose.joint_errors_px(pred, joints_NJ2, image_width)
  curve = pose.within_curve(errors)
  return {"num_images": int(len(errors)), "mean_joint_error_px": float(errors.mean()),
          "median_max_joint_error_px": float(np.median(errors.max(-1))),
          "within_px": {str(d): share for d, share in curve.items()}}


# ----------------------------------------------------------------------------- loop


def validate_config(config, num_devices: int) -> None:
  for field in ("batch_size", "num_steps", "log_every", "checkpoint_every", "eval_batch_size",
                "max_checkpoints_to_keep", "image_height", "image_width", "channels"):
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f"config.{field}: must be an integer > 0, got {config[field]!r}")
  if config.batch_size % num_devices:
    raise ConfigError(f"config.batch_size: {config.batch_size} is not divisible by {num_devices} devices")
  if config.image_height != config.image_width:
    raise ConfigError(f"config.image_height/image_width: the hourglass needs square images, got "
                      f"{config.image_height}x{config.image_width}")


def _check_data(config, source, eval_sets) -> None:
  shape = (config.image_height, config.image_width, config.channels)
  if tuple(source.image_shape) != shape:
    raise ConfigError(f"train data: images are {tuple(source.image_shape)} (H, W, C) but the config "
                      f"says {shape}")
  batch = jax.eval_shape(source.sample, source.device_data(), jax.ShapeDtypeStruct((1, 2), jnp.uint32))
  joints = config.model.num_joints
  if "joints" not in batch or tuple(batch["joints"].shape[1:]) != (joints, 2):
    raise DataError(f"train data: the source gives no 'joints' [B, {joints}, 2] label "
                    f"(fields: {', '.join(batch)})")
  for name, (images, j) in eval_sets.items():
    if tuple(images.shape[1:]) != shape or np.shape(j) != (len(images), joints, 2):
      raise DataError(f"eval set {name}: images {images.shape} and joints {np.shape(j)} do not match "
                      f"[N, {', '.join(map(str, shape))}] and [N, {joints}, 2]")


def train_pose_estimator(config, train_source: sources_lib.ImageSource,
                         eval_sets: dict[str, tuple[np.ndarray, np.ndarray]], workdir: str) -> dict[str, Any]:
  """Trains on ``train_source`` (resuming from ``workdir``), then evaluates on ``eval_sets``
  ({name: (images [N, H, W, 1], joints [N, J, 2])}). Returns and writes ``results.json``."""
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
  data = parallel.put_replicated(train_source.device_data(), mesh)
  state = create_state(s, mesh)
  specs = state_specs(state)
  mngr = checkpoints.manager(workdir, config.max_checkpoints_to_keep)
  restored = checkpoints.restore_latest(mngr, state)
  state = state if restored is None else restored
  step = int(state.step)
  step_fn = compile_train_step(s, mesh, specs)
  predict_fn = make_predict_fn(s.model, config.image_width, mesh)
  writer = metric_writer.MetricWriter(workdir, enabled=is_chief)
  log = metric_writer.print_line if is_chief else (lambda line: None)
  log(f"pose estimator: {num_devices} device(s), {'starting at' if restored is None else 'resuming at'} step "
      f"{step} of {config.num_steps}, batch {config.batch_size}, workdir {workdir}")
  start_time, window, last = time.time(), {"time": time.time(), "step": step}, {}

  def report(at, metrics):
    scalars = {k: float(np.asarray(v.addressable_data(0))) for k, v in metrics.items()}
    if not all(math.isfinite(v) for v in scalars.values()):
      raise TrainingDivergedError(f"step {at}: pose estimator metrics {scalars}; stopped")
    now = time.time()
    scalars["images_per_second"] = config.batch_size * (at - window["step"]) / max(now - window["time"], 1e-9)
    window.update(time=now, step=at)
    writer.write(at, scalars)
    last.update(scalars)
    log(f"step {at}/{config.num_steps} loss {scalars['loss']:.5f} train joint error "
        f"{scalars['joint_error_px']:.2f} px | {scalars['images_per_second']:.1f} img/s")

  pending = None
  while step < config.num_steps:
    state, metrics = step_fn(state, data)
    step += 1
    if pending is not None:
      report(*pending)
      pending = None
    if step % config.log_every == 0 or step == config.num_steps:
      pending = (step, metrics)
    if step % config.checkpoint_every == 0 or step == config.num_steps:
      checkpoints.save(mngr, step, state)
  if pending is not None:
    report(*pending)
  results = {"steps": step, "train_seconds": time.time() - start_time, "final_train_loss": last.get("loss"),
             "eval": {}}
  for name, (images, joints) in eval_sets.items():
    r = evaluate(predict_fn, state.params, images, joints, mesh, config.eval_batch_size, config.image_width)
    results["eval"][name] = r
    writer.write(step, {f"eval/{name}/mean_joint_error_px": r["mean_joint_error_px"],
                        f"eval/{name}/within_5_px": r["within_px"]["5"]})
    log(f"step {step}: {name}: mean joint error {r['mean_joint_error_px']:.2f} px, all joints within "
        f"5 px {100 * r['within_px']['5']:.1f}%")
  writer.close()
  mngr.close()
  if is_chief:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=1)
  return results


def restore_params(config, workdir: str, step: int | None = None):
  """The estimator's params saved in ``workdir`` (newest, or ``step``)."""
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  s = make_setup(config, None, mesh.devices.size)
  abstract = jax.eval_shape(functools.partial(init_state, s))
  like = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), abstract,
                      parallel.shardings(mesh, state_specs(abstract)))
  return checkpoints.restore(workdir, like, step).params
