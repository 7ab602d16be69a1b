"""Classification and regression on a numeric ``label`` (an image folder's labels.csv) as
tasks of the estimator loop (``tasks.loop``), and the labelled sets they read.

* ``classification``: ``label`` [N, 1] holds integer classes 0..K-1; softmax
  cross-entropy; metric: accuracy (and its complement, the error rate).
* ``regression``: ``label`` [N, K] holds any numbers; each column is standardised
  with the training set's mean and std (``config.label_mean`` / ``label_scale``,
  filled in from the training labels when empty) and fitted by mean squared error;
  metric: the mean absolute error and RMSE in the label's own units.

Both use ``LabelCNN`` (the shape of the label-drift network in probe/drift.py:
stride-2 3x3 convolutions, ReLU, FC hidden, FC out). ``pick_kind`` decides between
them from the labels: one column of integers is classification, anything else
regression.

A set is named as for the gaze estimator (``tasks/data.py``):
``image_folder/28x28x1[:SPLIT]`` (prepared by ``launch/prepare_data.py
--dataset=image_folder``), ``tfds:PATH`` (e.g. ``launch/refine.py``'s output) or
``npz:PATH`` (arrays ``images`` and ``label``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np
import optax

from simgan_jax import models
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.tasks import data as data_lib
from simgan_jax.tasks import loop

LABEL = "label"
KINDS = ("classification", "regression")
MAX_CLASSES = 256


# The label-drift network's shape (one definition: models.TaskCNN).
LabelCNN = models.TaskCNN


def _num_outputs(config) -> int:
  n = int(config.num_classes if config.kind == "classification" else config.num_outputs)
  if n <= 0:
    what = "num_classes" if config.kind == "classification" else "num_outputs"
    raise ConfigError(f"config.{what}: must be > 0 (0 is filled in from the training labels)")
  return n


def make_model(config) -> LabelCNN:
  return LabelCNN(conv_features=tuple(config.model.conv_features), hidden_features=config.model.hidden_features,
                  num_outputs=_num_outputs(config))


# ----------------------------------------------------------------------------- labels


def as_matrix(labels) -> np.ndarray:
  values = np.asarray(labels, np.float32)
  return values.reshape(len(values), -1)


def pick_kind(labels, integer_columns: Sequence[bool] | None = None) -> str:
  """``classification`` for one column of integers 0..MAX_CLASSES-1 (``integer_columns``:
  how the labels file wrote each column, when known), else ``regression``."""
  values = as_matrix(labels)
  integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
  if integer_columns is not None:
    integral = integral and all(integer_columns)
  if values.shape[1] == 1 and integral and values.min() >= 0 and values.max() < MAX_CLASSES:
    return "classification"
  return "regression"


def fit_config(config, labels) -> None:
  """Fills ``num_classes`` / ``num_outputs`` / ``label_mean`` / ``label_scale`` where they are
  0 or empty, from the training labels [N] or [N, K]; checks the labels fit the task."""
  values = as_matrix(labels)
  if config.kind == "classification":
    if values.shape[1] != 1 or not np.all(values == np.round(values)) or values.min() < 0:
      raise DataError(f"train data: the classification task needs one column of integer classes >= 0, "
                      f"got labels of shape {values.shape[1:]} with values like {values[:3, 0].tolist()}")
    if not config.num_classes:
      config.num_classes = int(values.max()) + 1
  else:
    if not config.num_outputs:
      config.num_outputs = int(values.shape[1])
    if not config.label_mean:
      config.label_mean = tuple(float(v) for v in values.mean(0))
      config.label_scale = tuple(float(v) for v in np.maximum(values.std(0), 1e-6))


# ----------------------------------------------------------------------------- the tasks


@dataclasses.dataclass(frozen=True)
class LabelHParams:
  kind: str
  num_outputs: int
  mean: tuple[float, ...]
  scale: tuple[float, ...]


def make_hparams(config) -> LabelHParams:
  n = _num_outputs(config)
  mean = tuple(config.get("label_mean", ())) or (0.0,) * n
  scale = tuple(config.get("label_scale", ())) or (1.0,) * n
  return LabelHParams(config.kind, n, mean, scale)


def _prepare(h: LabelHParams, batch, step_key, num_local):
  del step_key, num_local
  labels = batch[LABEL].astype(jnp.float32).reshape(batch[LABEL].shape[0], -1)
  if h.kind == "classification":
    return batch["image"], labels[:, 0].astype(jnp.int32)
  return batch["image"], (labels - jnp.asarray(h.mean)) / jnp.asarray(h.scale)


def _loss(h: LabelHParams, outputs, targets):
  if h.kind == "classification":
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(outputs, targets)), outputs
  return jnp.mean(jnp.square(outputs - targets)), outputs


def _train_metrics(h: LabelHParams, outputs, targets):
  if h.kind == "classification":
    return {"accuracy": jnp.mean(outputs.argmax(-1) == targets)}
  return {"mean_abs_error": jnp.mean(jnp.abs(outputs - targets) * jnp.asarray(h.scale))}


def predict(config, predict_fn, params, images, mesh) -> np.ndarray:
  """Class indices [N] (classification) or labels [N, K] in their own units (regression)."""
  out = loop.predict(predict_fn, params, images, mesh, config.eval_batch_size)
  h = make_hparams(config)
  if h.kind == "classification":
    return out.argmax(-1)
  return out * np.asarray(h.scale, np.float32) + np.asarray(h.mean, np.float32)


def evaluate(config, predict_fn, params, images, labels, mesh) -> dict[str, Any]:
  pred, truth = predict(config, predict_fn, params, images, mesh), as_matrix(labels)
  if config.kind == "classification":
    correct = pred == truth[:, 0].astype(np.int64)
    return {"num_images": int(len(correct)), "accuracy": float(correct.mean()),
            "error_rate": float(1.0 - correct.mean())}
  errors = pred - truth
  return {"num_images": int(len(errors)), "mean_abs_error": float(np.mean(np.abs(errors))),
          "rmse": float(np.sqrt(np.mean(np.square(errors))))}


def _validate(config) -> None:
  if config.kind not in KINDS:
    raise ConfigError(f"config.kind: {config.kind!r} is not one of {', '.join(KINDS)}")
  _num_outputs(config)


def _task(kind: str) -> loop.Task:
  classify = kind == "classification"
  return loop.Task(
      name=f"{kind} network",
      label=LABEL,
      label_shape=lambda config: (1,) if config.kind == "classification" else (_num_outputs(config),),
      make_model=make_model,
      make_hparams=make_hparams,
      prepare=_prepare,
      loss=_loss,
      train_metrics=_train_metrics,
      make_predict_fn=lambda config, model, mesh: loop.make_predict_fn(
          lambda params, images: model.apply({"params": params}, images), mesh),
      evaluate=evaluate,
      eval_scalars=(lambda name, r: {f"eval/{name}/accuracy": r["accuracy"]}) if classify else (
          lambda name, r: {f"eval/{name}/mean_abs_error": r["mean_abs_error"], f"eval/{name}/rmse": r["rmse"]}),
      eval_summary=(lambda r: f"accuracy {100 * r['accuracy']:.1f}%") if classify else (
          lambda r: f"mean absolute error {r['mean_abs_error']:.4g}, RMSE {r['rmse']:.4g}"),
      train_summary=(lambda m: f"loss {m['loss']:.4f} train accuracy {100 * m['accuracy']:.1f}%") if classify else (
          lambda m: f"loss {m['loss']:.4f} train mean absolute error {m['mean_abs_error']:.4g}"),
      validate=_validate,
  )


CLASSIFICATION = _task("classification")
REGRESSION = _task("regression")


# ----------------------------------------------------------------------------- named sets


def _load(spec: str, config, training: bool, flag: str):
  if not spec:
    raise ConfigError(f"{flag}: no set named; the {config.kind} task has no built-in data, name one "
                      "such as image_folder/28x28x1, tfds:PATH or npz:PATH")
  section = data_lib.data_config(spec, config, training=training)
  if "labels" in section:
    section.labels = LABEL if section.name != "tfds_dir" else "all"
  source = sources_lib.make_source(section, data_lib.image_shape(config), flag.lstrip("-"))
  labels = getattr(source, "labels", {})
  if LABEL not in labels:
    raise DataError(f"{flag}={spec}: no {LABEL!r} labels (found: {', '.join(labels) or 'none'}); "
                    "an image folder needs labels.csv")
  return source, as_matrix(labels[LABEL])


def train_source(spec: str, config) -> sources_lib.ArraySource:
  """The set to train on, its ``label`` as float32 [N, K]; fills the config from the labels."""
  source, labels = _load(spec, config, True, "--train_data")
  fit_config(config, labels)
  return dataclasses.replace(source, labels={LABEL: labels})


def eval_sets(specs: str, config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  names = [s.strip() for s in (specs or "").split(",") if s.strip()]
  if not names:
    raise ConfigError("--eval_data: no evaluation set named")
  out = {}
  for name in names:
    source, labels = _load(name, config, False, "--eval_data")
    out[name] = (source.images, labels)
  return out
