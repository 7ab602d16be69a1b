"""Label drift: how far refinement moves a synthetic-trained task network's predictions.

A *task network* is trained on the synthetic images and their labels only (no
real labels, so this works on any user's data): the gaze estimator for eye
images (a ``gaze`` [B, 3] label), a classifier for an integer class label, or a
regressor for other numeric labels. A refiner that keeps the labels should not
change what it predicts, so at every checkpoint

* ``gaze``: the mean angle (degrees) between its gaze predictions for a
  synthetic image and for its refinement;
* ``classify``: the share of images whose predicted class changes (flip rate);
* ``regress``: the mean absolute change of the predictions, in label standard
  deviations (labels are standardised for training);

is logged as ``label_drift`` (``train.py``). The same frozen network gives the
optional task-consistency loss (``losses.task_consistency_loss``): ``change``
below is its per-image penalty, the squared drift in the same units
(degrees^2, nats of KL, std^2), smooth at zero.

The network is trained once at the start of a run (``config.drift``: a few
hundred steps of a narrow network on one device) and saved in
``WORKDIR/task_network/``, so a resumed run reuses the same one; or a gaze
estimator trained with ``launch/train_gaze.py`` is passed in
(``config.drift.estimator_dir``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from simgan_jax import models
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError
from simgan_jax.tasks import gaze_net as gaze
from simgan_jax.tasks import gaze as gaze_task
from simgan_jax.tasks import loop

KINDS = ("gaze", "classify", "regress")
UNITS = {"gaze": "deg", "classify": "flip rate", "regress": "label std"}
# Bound on label_drift used by selection when config.drift.max_drift is 0. Gaze: the
# :cpu drift network (own error 5.7 deg) reads 7.8 deg between simulator eyes and the
# same scenes through the target's appearance model (a perfect refiner: labels kept
# exactly), 3.7 / 8.3 for 2 / 4 px shifts, and 17.6-27.8 for noise, constant, flipped
# or shuffled images (``python launch/drift_calibration.py
# --config=simgan_jax/configs/default.py:cpu``, 2 Dec 2026). 12 deg passes the perfect
# refiner and stops the destroyed ones; the 5 deg used before excluded refiners as
# realistic as the target itself. Small label shifts hide below appearance changes.
DEFAULT_MAX_DRIFT = {"gaze": 12.0, "classify": 0.1, "regress": 0.5}
MAX_CLASSES = 256
_SUBDIR = "task_network"
# Streams under the drift network's own root (training.PURPOSE_DRIFT), so that none of
# its keys is a key of SimGAN's init, steps or probes, nor of each other.
_INIT_STREAM, _TRAIN_STREAM, _SURVEY_STREAM = 0, 1, 2


def _root(seed: int) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(seed), training.PURPOSE_DRIFT)


# The small classifier / regressor (models.TaskCNN; also the image_folder tasks' network).
TaskCNN = models.TaskCNN


@dataclasses.dataclass(frozen=True, eq=False)
class TaskNetwork:
  """A frozen task network: ``apply(images) -> outputs``; ``change`` and ``drift`` compare outputs."""

  kind: str  # one of KINDS
  label: str  # the synthetic label it predicts
  model: nn.Module
  params: Any
  label_mean: np.ndarray | None = None  # regress: labels are (label - mean) / scale
  label_scale: np.ndarray | None = None
  info: dict = dataclasses.field(default_factory=dict)  # how it was made, its error on synthetic data

  def apply(self, images_BHWC):
    """Outputs for float images in [-1, 1] (or uint8): gaze vectors, class logits or standardised labels."""
    if images_BHWC.dtype == jnp.uint8:
      images_BHWC = sources_lib.to_unit_range(images_BHWC)
    return self.model.apply({"params": self.params}, images_BHWC.astype(jnp.float32))

  def change(self, after, before):
    """Per-image squared drift [B] (traceable, smooth): the task-consistency penalty."""
    if self.kind == "gaze":
      cos = jnp.sum(gaze.unit_vectors(after) * gaze.unit_vectors(before), axis=-1)
      return 2.0 * (1.0 - cos) * (180.0 / np.pi)**2  # ~ angle^2 in degrees^2
    if self.kind == "classify":
      p = jax.nn.softmax(before)
      return jnp.sum(p * (jax.nn.log_softmax(before) - jax.nn.log_softmax(after)), axis=-1)  # KL
    return jnp.mean(jnp.square(after - before), axis=-1)

  def drift(self, after, before) -> np.ndarray:
    """Per-image drift [B] in ``UNITS[kind]``: angle, class flipped (0/1), mean abs change."""
    after, before = np.asarray(after, np.float32), np.asarray(before, np.float32)
    if self.kind == "gaze":  # gaze.angular_error_deg in float64 numpy: exactly 0 for equal rows
      a, b = (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
              for v in (after.astype(np.float64), before.astype(np.float64)))
      return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))
    if self.kind == "classify":
      return (after.argmax(-1) != before.argmax(-1)).astype(np.float64)
    return np.mean(np.abs(after - before), axis=-1)

  @functools.cached_property
  def jitted_apply(self):
    """jit of ``(params, images) -> apply(images)``, compiled once per network."""
    return jax.jit(lambda params, x: dataclasses.replace(self, params=params).apply(x))

  def max_drift(self, config) -> float:
    bound = float(config.drift.max_drift)
    return bound if bound > 0 else DEFAULT_MAX_DRIFT[self.kind]


def predict(task: TaskNetwork, images: np.ndarray, chunk: int = 250) -> np.ndarray:
  """Outputs [N, K] of host images (uint8 or float), one compiled chunk shape."""
  fn = task.jitted_apply
  out = []
  for start in range(0, len(images), chunk):
    part = np.asarray(images[start:start + chunk])
    n = len(part)
    if n < chunk:
      part = np.concatenate([part, np.zeros((chunk - n, *part.shape[1:]), part.dtype)])
    out.append(np.asarray(fn(task.params, part))[:n])
  return np.concatenate(out)


def measure(task: TaskNetwork, synthetic_outputs: np.ndarray, refined_images: np.ndarray) -> dict[str, float]:
  """{"label_drift": mean, "label_drift_p90"} of refined images against the synthetic outputs."""
  d = task.drift(predict(task, refined_images), synthetic_outputs)
  return {"label_drift": float(np.mean(d)), "label_drift_p90": float(np.percentile(d, 90))}


# ----------------------------------------------------------------------------- choosing the task


def _survey(source, data, seed: int, num: int = 2048) -> dict[str, np.ndarray]:
  """Labels of ``num`` examples (all of an in-memory pool's)."""
  if isinstance(data, dict) and "labels" in data and data["labels"]:
    return {k: np.asarray(v) for k, v in data["labels"].items()}
  survey = jax.random.fold_in(_root(seed), _SURVEY_STREAM)
  keys = jax.vmap(lambda i: jax.random.fold_in(survey, i))(jnp.arange(num))
  batch = jax.device_get(jax.jit(source.sample)(data, keys))
  return {k: np.asarray(v) for k, v in batch.items() if k not in ("image", "index")}


def choose_task(config, labels: dict[str, np.ndarray]) -> tuple[str, str] | None:
  """(kind, label) from ``config.drift.label`` / ``task`` ('' / 'auto': decided from the labels),
  or None when the synthetic data has no numeric label."""
  d = config.drift
  numeric = {k: v for k, v in labels.items() if np.issubdtype(v.dtype, np.number) and v.size}
  if d.label:
    if d.label not in numeric:
      raise ConfigError(f"config.drift.label: {d.label!r} is not a numeric label of the synthetic data "
                        f"(labels: {', '.join(sorted(numeric)) or 'none'})")
    label = d.label
  elif "gaze" in numeric and numeric["gaze"].shape[-1:] == (3,):
    label = "gaze"
  elif "label" in numeric:
    label = "label"
  elif len(numeric) == 1:
    label = next(iter(numeric))
  else:
    return None
  values = numeric[label]
  kind = d.task
  if kind in ("", "auto"):
    integral = np.all(np.isfinite(values)) and np.all(values == np.round(values))
    scalar = values.ndim == 1 or values.shape[1:] == (1,)
    if label == "gaze" and values.shape[-1:] == (3,):
      kind = "gaze"
    elif scalar and integral and values.min() >= 0 and values.max() < MAX_CLASSES:
      kind = "classify"
    else:
      kind = "regress"
  if kind not in KINDS:
    raise ConfigError(f"config.drift.task: {kind!r} is not 'auto' or one of {', '.join(KINDS)}")
  if kind == "gaze" and values.shape[-1:] != (3,):
    raise ConfigError(f"config.drift.task: 'gaze' needs a [N, 3] label; {label!r} is {values.shape}")
  return kind, label


# ----------------------------------------------------------------------------- training


def _model(config, kind: str, num_outputs: int, image_shape) -> nn.Module:
  d = config.drift
  if kind == "gaze" and image_shape[0] >= 15 and image_shape[1] >= 15:
    return gaze.GazeEstimator(conv_features=tuple(d.conv_features), hidden_features=d.hidden_features)
  return TaskCNN(conv_features=tuple(d.conv_features[:3]), hidden_features=d.hidden_features,
                 num_outputs=num_outputs)


def _targets(kind, values, num_classes, mean, scale):
  if kind == "gaze":
    return values.astype(jnp.float32)
  if kind == "classify":
    return values.reshape(values.shape[0], -1)[:, 0].astype(jnp.int32)
  v = values.reshape(values.shape[0], -1).astype(jnp.float32)
  return (v - mean) / scale


def _loss(kind, outputs, targets):
  if kind == "gaze":
    return gaze.gaze_l2_loss(outputs, targets)
  if kind == "classify":
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, targets))
  return jnp.mean(jnp.square(outputs - targets))


def train_task_network(config, source, data, image_shape, log=print) -> TaskNetwork | None:
  """Trains the task network on ``source``'s synthetic labels (one device, a Python loop of
  jitted steps: XLA:CPU runs convolutions in loop bodies slowly). None without labels."""
  d = config.drift
  survey = _survey(source, data, d.seed)
  chosen = choose_task(config, survey)
  if chosen is None:
    log("label drift: the synthetic data has no numeric label; off")
    return None
  kind, label = chosen
  # Said before, not only after: at :cpu sizes this takes ~25 s with nothing else printed.
  log(f"label drift: training a {kind} network on synthetic '{label}' labels ({d.train_steps} steps, "
      "once per run) ...")
  values = survey[label].reshape(len(survey[label]), -1).astype(np.float64)
  num_classes, mean, scale = 0, None, None
  if kind == "classify":
    num_classes = int(values.max()) + 1
    num_outputs = num_classes
  elif kind == "regress":
    mean, scale = values.mean(0).astype(np.float32), np.maximum(values.std(0), 1e-6).astype(np.float32)
    num_outputs = values.shape[1]
  else:
    num_outputs = 3
  model = _model(config, kind, num_outputs, image_shape)
  key = _root(d.seed)
  params = model.init(jax.random.fold_in(key, _INIT_STREAM), jnp.zeros((1, *image_shape)))["params"]
  tx = optax.adam(d.learning_rate)
  opt_state = tx.init(params)

  # The key and the label scaling are arguments, not constants baked into the program:
  # runs that differ only in seed or data then share one compiled step.
  @jax.jit
  def step(params, opt_state, data, i, key, mean, scale):
    k = jax.random.fold_in(jax.random.fold_in(key, _TRAIN_STREAM), i)
    batch = source.sample(data, jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(d.batch_size)))
    targets = _targets(kind, batch[label], num_classes, mean, scale)
    loss, grads = jax.value_and_grad(lambda p: _loss(kind, model.apply({"params": p}, batch["image"]),
                                                     targets))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start = time.time()
  loss = None
  data = jax.device_put(data)
  for i in range(d.train_steps):
    params, opt_state, loss = step(params, opt_state, data, i, key, mean, scale)
  seconds = time.time() - start
  info = {"kind": kind, "label": label, "unit": UNITS[kind], "source": "trained",
          "train_steps": int(d.train_steps), "train_seconds": seconds,
          "final_train_loss": float(loss) if loss is not None else None}
  return TaskNetwork(kind, label, model, jax.device_get(params), mean, scale, info)


def load_gaze_estimator(config, estimator_dir: str) -> TaskNetwork:
  """A gaze estimator trained by ``launch/train_gaze.py`` (its config.json and newest checkpoint)."""
  import ml_collections  # pylint: disable=g-import-not-at-top


  path = os.path.join(estimator_dir, "config.json")
  try:
    with open(path) as f:
      g = ml_collections.ConfigDict(json.load(f))
    params = jax.device_get(loop.restore_params(gaze_task.TASK, g, estimator_dir))
  except (OSError, ValueError) as e:
    raise ConfigError(f"config.drift.estimator_dir: cannot load a gaze estimator from {estimator_dir} "
                      f"({e})") from None
  params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if hasattr(x, "addressable_data")
                        else np.asarray(x), params)
  return TaskNetwork("gaze", "gaze", gaze.make_gaze_estimator(g), params,
                     info={"kind": "gaze", "label": "gaze", "unit": UNITS["gaze"], "source": estimator_dir})


# ----------------------------------------------------------------------------- saving


def _settings(config) -> dict:
  d = config.drift
  return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()
          if k not in ("enabled", "max_drift")}


def _save(task: TaskNetwork, folder: str, settings: dict) -> None:
  os.makedirs(folder, exist_ok=True)
  extra = {"label_mean": task.label_mean, "label_scale": task.label_scale}
  with open(os.path.join(folder, "params.msgpack.tmp"), "wb") as f:
    f.write(flax.serialization.msgpack_serialize({"params": task.params,
                                                 **{k: v for k, v in extra.items() if v is not None}}))
  os.replace(os.path.join(folder, "params.msgpack.tmp"), os.path.join(folder, "params.msgpack"))
  with open(os.path.join(folder, "task_network.json"), "w") as f:
    json.dump({"settings": settings, **task.info}, f, indent=1)


def read_info(workdir: str) -> dict | None:
  """``WORKDIR/task_network/task_network.json``: kind, label, unit, how it was made (or None)."""
  try:
    with open(os.path.join(workdir, _SUBDIR, "task_network.json")) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _load(config, folder: str, image_shape) -> TaskNetwork | None:
  info = read_info(os.path.dirname(folder))
  if info is None or info.get("settings") != _settings(config):
    return None
  with open(os.path.join(folder, "params.msgpack"), "rb") as f:
    state = flax.serialization.msgpack_restore(f.read())
  info.pop("settings")
  kind = info["kind"]
  num_outputs = {"gaze": 3}.get(kind) or int(np.asarray(jax.tree.leaves(state["params"]["fc2"])[0]).shape[-1])
  return TaskNetwork(kind, info["label"], _model(config, kind, num_outputs, image_shape), state["params"],
                     state.get("label_mean"), state.get("label_scale"), info)


def task_network(config, source, data, image_shape, workdir: str | None, log=print) -> TaskNetwork | None:
  """The run's task network: passed in (``estimator_dir``), saved in ``workdir``, or trained now."""
  d = config.drift
  if d.estimator_dir:
    task = load_gaze_estimator(config, d.estimator_dir)
    log(f"label drift: gaze estimator from {d.estimator_dir}")
    return task
  folder = os.path.join(workdir, _SUBDIR) if workdir else None
  if folder and os.path.exists(os.path.join(folder, "params.msgpack")):
    task = _load(config, folder, image_shape)
    if task is not None:
      log(f"label drift: {task.kind} network on synthetic '{task.label}' read from {folder}")
      return task
  task = train_task_network(config, source, data, image_shape, log)
  if task is not None:
    log(f"label drift: {task.kind} network trained on synthetic '{task.label}' labels "
        f"({d.train_steps} steps, {task.info['train_seconds']:.1f} s)")
    if folder and jax.process_index() == 0:
      _save(task, folder, _settings(config))
  return task


def save_info(workdir: str, task: TaskNetwork, **extra) -> None:
  """Adds ``extra`` (e.g. the network's error on the probe's synthetic images) to its json."""
  path = os.path.join(workdir, _SUBDIR, "task_network.json")
  info = read_info(workdir) or {"settings": None, **task.info}
  info.update(extra)
  task.info.update(extra)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(info, f, indent=1)


def synthetic_error(task: TaskNetwork, outputs: np.ndarray, labels: np.ndarray) -> float:
  """The network's own error on labelled synthetic images, in drift units (angle, error rate,
  mean abs error in stds): the scale against which a drift reads as small or large."""
  if task.kind == "gaze":
    return float(np.mean(np.asarray(gaze.angular_error_deg(outputs, labels.astype(np.float32)))))
  if task.kind == "classify":
    return float(np.mean(outputs.argmax(-1) != labels.reshape(len(labels), -1)[:, 0].astype(np.int64)))
  v = (labels.reshape(len(labels), -1) - task.label_mean) / task.label_scale
  return float(np.mean(np.abs(outputs - v)))
