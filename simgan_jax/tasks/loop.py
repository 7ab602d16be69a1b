"""One training loop for every downstream estimator (gaze, hand pose), data-parallel like SimGAN's.

A ``Task`` says what differs between estimators: the network, how a sampled batch
becomes inputs and targets, the loss, the train metrics and the evaluation.
Everything else is here, the same for every task:

* one ``TrainState`` pytree (params, optimiser state, step, root key); a step is
  ``state, metrics = step_fn(state, data)``: ``jax.shard_map`` over
  ``parallel.make_mesh`` (axis ``"batch"``), jit with the state donated,
  gradients averaged by ``parallel.mean_value_and_grad``. Each device samples its
  share of the batch (a program of its own, so the update does not depend on the
  pool's size), one key per example from its *global* index
  (``parallel.example_keys``), so 1 and 8 devices train on the same batches;
* the pool placed by ``sources.place``: sharded along the batch axis when the
  source is (``shard_pool``, ``host_shard``), replicated otherwise;
* at most ``MAX_IN_FLIGHT`` steps dispatched ahead of the host: XLA:CPU aborts a
  collective that waits more than 40 s, which a long queue of steps on
  oversubscribed fake devices causes;
* ``workdir``: ``checkpoints/<step>/`` (the whole state; a rerun resumes) every
  ``checkpoint_every`` steps, every ``checkpoint_every_minutes``, at the end and on
  SIGTERM/SIGINT (then ``preemption.Stopped`` is raised); ``metrics.jsonl`` /
  ``tensorboard/``; ``config.json`` once config, data and checkpoint were checked;
  ``results.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Callable

import flax.linen as nn
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
from simgan_jax import preemption
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError, TrainingDivergedError

AXIS = parallel.AXIS
_INIT, _BATCH = 1, 2  # named random streams; tasks may split more from the step key
MAX_IN_FLIGHT = 2


@dataclasses.dataclass(frozen=True)
class Task:
  """What one downstream estimator adds to the loop. Functions marked (traced) run
  inside the compiled step; ``hparams`` is ``make_hparams(config)``."""

  name: str  # "gaze estimator", in log lines
  label: str  # the label field the train source and evaluation sets give
  label_shape: Callable[[Any], tuple[int, ...]]  # config -> one example's label shape
  make_model: Callable[[Any], nn.Module]  # config -> network
  make_hparams: Callable[[Any], Any]  # config -> static hyper-parameters of the step
  # (traced) (hparams, batch, step_key, num_local) -> (images, targets)
  prepare: Callable[..., tuple[jax.Array, Any]]
  loss: Callable[..., tuple[jax.Array, Any]]  # (traced) (hparams, outputs, targets) -> (loss, aux)
  train_metrics: Callable[..., dict]  # (traced) (hparams, aux, targets) -> {name: scalar}
  make_predict_fn: Callable[[Any, nn.Module, Mesh], Callable]  # (config, model, mesh) -> predict_fn
  # (config, predict_fn, params, images, labels, mesh) -> results of one evaluation set
  evaluate: Callable[..., dict]
  eval_scalars: Callable[[str, dict], dict]  # (set name, results) -> metrics.jsonl entries
  eval_summary: Callable[[dict], str]  # results -> "mean angular error 9.76 deg, ..."
  train_summary: Callable[[dict], str]  # train scalars -> "loss 0.1234 train error 5.00 deg"
  validate: Callable[[Any], None] = lambda config: None  # task-specific config checks


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32
  key: jax.Array  # uint32[2]: root key from config.seed
  params: Any
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class Setup:
  """Static pieces of a run."""

  task: Task
  model: nn.Module
  tx: optax.GradientTransformation
  source: sources_lib.ImageSource | None
  image_shape: tuple[int, int, int]
  batch_size: int  # global
  num_devices: int
  seed: int
  hparams: Any

  @property
  def local_batch(self) -> int:
    return self.batch_size // self.num_devices


def image_shape(config) -> tuple[int, int, int]:
  return (config.image_height, config.image_width, config.channels)


def make_setup(task: Task, config, source, num_devices: int) -> Setup:
  return Setup(task=task, model=task.make_model(config),
               tx=training.make_optimizer(config),  # the same optimizer section as SimGAN's
               source=source, image_shape=image_shape(config), batch_size=config.batch_size,
               num_devices=num_devices, seed=config.seed, hparams=task.make_hparams(config))


def init_state(s: Setup) -> TrainState:
  key = jax.random.PRNGKey(s.seed)
  params = s.model.init(jax.random.fold_in(key, _INIT), jnp.zeros((1, *s.image_shape)))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), key=key, params=params, opt_state=s.tx.init(params))


def state_specs(state: TrainState) -> TrainState:
  """Everything replicated."""
  return jax.tree.map(lambda _: P(), state)


def create_state(s: Setup, mesh: Mesh) -> TrainState:
  specs = state_specs(jax.eval_shape(functools.partial(init_state, s)))
  return jax.jit(functools.partial(init_state, s), out_shardings=parallel.shardings(mesh, specs))()


def sample_batch(s: Setup, key: jax.Array, step: jax.Array, data):
  """This device's share of step ``step``'s batch, drawn from the pool ``data``."""
  step_key = jax.random.fold_in(key, step)
  return s.source.sample(data, parallel.example_keys(jax.random.fold_in(step_key, _BATCH), s.local_batch))


def train_step(s: Setup, state: TrainState, batch):
  """One optimiser update on this device's share of a sampled batch; metrics averaged over devices."""
  step_key = jax.random.fold_in(state.key, state.step)
  images, targets = s.task.prepare(s.hparams, batch, step_key, s.local_batch)

  def loss_fn(params):
    return s.task.loss(s.hparams, s.model.apply({"params": params}, images), targets)

  # Equal shares per device, so the mean of device means is the global mean.
  (loss, aux), grads = parallel.mean_value_and_grad(loss_fn, state.params, has_aux=True)
  updates, opt_state = s.tx.update(grads, state.opt_state, state.params)
  metrics = {"loss": loss, **s.task.train_metrics(s.hparams, aux, targets)}
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        opt_state=opt_state)
  return state, lax.pmean(metrics, AXIS)


def compile_train_step(s: Setup, mesh: Mesh, specs: TrainState, data_specs: Any = P()):
  """``step_fn(state, data) -> (state, metrics)``: two compiled programs, each a jit of
  a shard_map over the batch axis. The first samples the batch from the pool (its
  size and placement, ``data_specs`` from ``sources.place``, are part of its
  program); the second, the update with the state donated, sees only the batch, so
  training sets of different sizes share one compiled update (XLA's persistent
  cache reuses it across an experiment's rows)."""
  sample = jax.jit(jax.shard_map(functools.partial(sample_batch, s), mesh=mesh,
                                 in_specs=(P(), P(), data_specs), out_specs=P(AXIS)))
  update = jax.jit(jax.shard_map(functools.partial(train_step, s), mesh=mesh, in_specs=(specs, P(AXIS)),
                                 out_specs=(specs, P())), donate_argnums=0)

  def step_fn(state: TrainState, data):
    return update(state, sample(state.key, state.step, data))

  return step_fn


# ----------------------------------------------------------------------------- evaluation


def make_predict_fn(forward: Callable, mesh: Mesh):
  """(params, images [N, H, W, C] sharded over the batch axis) -> ``forward(params,
  images in [-1, 1])`` for all N, replicated."""

  def predict(params, images):
    if images.dtype == jnp.uint8:
      images = sources_lib.to_unit_range(images)
    out = forward(params, images.astype(jnp.float32))
    # Gathered so every host can read all predictions (multi-host safe). The
    # gathered value is the same on every device, which shard_map cannot infer
    # for all_gather, hence check_vma=False.
    return lax.all_gather(out, AXIS, tiled=True)

  return jax.jit(jax.shard_map(predict, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                               check_vma=False))


def predict(predict_fn, params, images: np.ndarray, mesh: Mesh, chunk: int) -> np.ndarray:
  """Predictions for host images, in fixed-size chunks (one compiled shape)."""
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


# ----------------------------------------------------------------------------- checks


def validate_config(task: Task, config, num_devices: int) -> None:
  """Raises ConfigError naming the first bad field."""
  for field in ("batch_size", "num_steps", "log_every", "checkpoint_every", "eval_batch_size",
                "max_checkpoints_to_keep", "image_height", "image_width", "channels"):
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f"config.{field}: must be an integer > 0, got {config[field]!r}")
  eval_every = config.get("eval_every", 0)
  if not isinstance(eval_every, int) or eval_every < 0:
    raise ConfigError(f"config.eval_every: must be an integer >= 0, got {eval_every!r}")
  sync = config.get("sync_every_steps", 10)
  if not isinstance(sync, int) or sync <= 0:
    raise ConfigError(f"config.sync_every_steps: must be an integer > 0, got {sync!r}")
  minutes = config.get("checkpoint_every_minutes", 0.0)
  if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes >= 0:
    raise ConfigError(f"config.checkpoint_every_minutes: must be a number >= 0 (0: off), got {minutes!r}")
  if config.batch_size % num_devices:
    raise ConfigError(f"config.batch_size: {config.batch_size} is not divisible by {num_devices} devices")
  task.validate(config)


def check_data(task: Task, config, source, eval_sets) -> None:
  """ConfigError/DataError when the images or labels do not fit the config."""
  shape = image_shape(config)
  if tuple(source.image_shape) != shape:
    raise ConfigError(f"train data: images are {tuple(source.image_shape)} (H, W, C) but the config "
                      f"says {shape}")
  batch = jax.eval_shape(source.sample, source.device_data(), jax.ShapeDtypeStruct((1, 2), jnp.uint32))
  label = tuple(task.label_shape(config))
  dims = ", ".join(map(str, label))
  if task.label not in batch or tuple(batch[task.label].shape[1:]) != label:
    raise DataError(f"train data: the source gives no {task.label!r} [B, {dims}] label "
                    f"(fields: {', '.join(batch)})")
  for name, (images, labels) in eval_sets.items():
    if tuple(np.shape(images)[1:]) != shape or np.shape(labels) != (len(images), *label):
      raise DataError(f"eval set {name}: images {np.shape(images)} and {task.label} {np.shape(labels)} do "
                      f"not match [N, {', '.join(map(str, shape))}] and [N, {dims}]")


prepare_workdir = metric_writer.prepare_workdir
_to_host = parallel.to_host


def pool_line(source, data, num_devices: int) -> str:
  """'pool per device: 1.2 MiB of 9.6 MiB (sharded 1/8)', or that it is rendered on device."""
  if not jax.tree.leaves(data):
    return "pool: none (rendered on device)"
  held = sources_lib.bytes_per_device(data)
  total = getattr(source, "pool_bytes", held)
  # Read from the placed arrays, not the source: says what the devices really hold.
  sharded = any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(data))
  how = f"sharded 1/{num_devices}" if sharded else "replicated"
  return f"pool per device: {held / 2**20:.3g} MiB of {total / 2**20:.3g} MiB ({how})"


# ----------------------------------------------------------------------------- loop


def train_estimator(task: Task, config, train_source: sources_lib.ImageSource,
                    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]], workdir: str, *,
                    clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
  """Trains ``task``'s estimator on ``train_source`` (resuming from ``workdir``), then
  evaluates it on ``eval_sets`` ({name: (images [N, H, W, C], labels [N, ...])}).

  Returns (and writes to ``workdir/results.json``) ``{"steps", "train_seconds",
  "final_train_loss", "eval": {name: results}}``. Raises ``preemption.Stopped``
  after saving when SIGTERM/SIGINT arrives. ``clock`` (seconds) drives
  ``checkpoint_every_minutes`` only; tests pass a fake one.
  """
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  num_devices = mesh.devices.size
  validate_config(task, config, num_devices)
  check_data(task, config, train_source, eval_sets)
  is_chief = jax.process_index() == 0
  if is_chief:
    prepare_workdir(workdir)
  log = metric_writer.print_line if is_chief else (lambda line: None)
  s = make_setup(task, config, train_source, num_devices)
  data, data_specs = sources_lib.place(train_source, mesh)  # sharded if the pool is (sources.py)
  state = create_state(s, mesh)
  specs = state_specs(state)
  mngr = checkpoints.manager(workdir, config.max_checkpoints_to_keep)
  try:
    restored = checkpoints.restore_newest_intact(mngr, state, report=log)
  except checkpoints.ShapeMismatch as e:
    mngr.close()
    raise ConfigError(f"config does not fit {e}. Use another --workdir, or the checkpoint's config") from None
  if restored is not None:
    state = restored[0]
  # Written only now: config, data and checkpoint are known to fit together.
  if is_chief:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  step = int(state.step)  # the one host read of the state before the loop
  total, eval_every = config.num_steps, config.get("eval_every", 0)
  step_fn = compile_train_step(s, mesh, specs, data_specs)
  predict_fn = task.make_predict_fn(config, s.model, mesh)
  writer = metric_writer.MetricWriter(workdir, enabled=is_chief)
  log(f"{task.name}: {num_devices} device(s), {'starting at' if restored is None else 'resuming at'} step "
      f"{step} of {total}, batch {config.batch_size}, workdir {workdir}")
  log(f"{task.name}: {pool_line(train_source, data, num_devices)}")

  def run_eval(at, params):
    results = {name: task.evaluate(config, predict_fn, params, images, labels, mesh)
               for name, (images, labels) in eval_sets.items()}
    for name, r in results.items():
      writer.write(at, task.eval_scalars(name, r))
      log(f"step {at}: {name}: {task.eval_summary(r)}")
    return results

  start_time, window, last = time.time(), {"time": time.time(), "step": step}, {}

  def report(at, metrics) -> None:
    scalars = {k: float(v) for k, v in _to_host(metrics).items()}
    if not all(math.isfinite(v) for v in scalars.values()):
      raise TrainingDivergedError(f"step {at}: {task.name} metrics {scalars}; stopped")
    now = time.time()
    scalars["images_per_second"] = config.batch_size * (at - window["step"]) / max(now - window["time"], 1e-9)
    window.update(time=now, step=at)
    writer.write(at, scalars)
    last.update(scalars)
    log(f"step {at}/{total} {task.train_summary(scalars)} | {scalars['images_per_second']:.1f} img/s")

  pending, in_flight = None, collections.deque()
  try:
    with preemption.StopSignals() as signals:
      decisions = preemption.Decisions(signals, clock, config.get("checkpoint_every_minutes", 0.0),
                                       config.get("sync_every_steps", 10))
      while step < total:
        state, metrics = step_fn(state, data)
        step += 1
        in_flight.append(metrics)
        while len(in_flight) > MAX_IN_FLIGHT:  # wait for step - MAX_IN_FLIGHT, read nothing
          jax.block_until_ready(in_flight.popleft())
        # Metrics of the previous step are read only now, after this step was dispatched.
        if pending is not None:
          report(*pending)
          pending = None
        if step % config.log_every == 0 or step == total:
          pending = (step, metrics)
        stop_signum, by_time = decisions.at(step)
        if step % config.checkpoint_every == 0 or step == total or by_time or stop_signum:
          checkpoints.save(mngr, step, state)
          decisions.saved()
        if stop_signum and step < total:
          if pending is not None:
            report(*pending)
          raise preemption.Stopped(stop_signum, step, os.path.join(os.path.abspath(workdir), "checkpoints",
                                                                   str(step)))
        if eval_every and step % eval_every == 0 and step < total:
          run_eval(step, state.params)
      if pending is not None:
        report(*pending)
    results = {"steps": step, "train_seconds": time.time() - start_time,
               "final_train_loss": last.get("loss"), "eval": run_eval(step, state.params)}
  finally:
    writer.close()
    mngr.close()
  if is_chief:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=1)
  return results


def restore_state(task: Task, config, workdir: str, step: int | None = None) -> TrainState:
  """The whole train state saved in ``workdir`` (newest, or ``step``), in any process."""
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  s = make_setup(task, config, None, mesh.devices.size)
  abstract = jax.eval_shape(functools.partial(init_state, s))
  like = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), abstract,
                      parallel.shardings(mesh, state_specs(abstract)))
  return checkpoints.restore(workdir, like, step)


def restore_params(task: Task, config, workdir: str, step: int | None = None):
  """The estimator's params saved in ``workdir`` (newest, or ``step``), e.g. in a notebook."""
  return restore_state(task, config, workdir, step).params


def evaluate_saved(task: Task, config, eval_sets: dict[str, tuple[np.ndarray, np.ndarray]],
                   workdir: str) -> dict[str, Any]:
  """{name: results} of the newest estimator saved in ``workdir`` on ``eval_sets``, as
  ``train_estimator`` reports them (a finished run scored on other data)."""
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  s = make_setup(task, config, None, mesh.devices.size)
  params = restore_state(task, config, workdir).params
  predict_fn = task.make_predict_fn(config, s.model, mesh)
  return {name: task.evaluate(config, predict_fn, params, images, labels, mesh)
          for name, (images, labels) in eval_sets.items()}
