"""The gaze estimator as a task of the estimator loop (``tasks.loop``).

Loss: the squared L2 distance to the unit gaze vector (``gaze.gaze_l2_loss``);
train metric: the mean angular error; evaluation: the mean angular error and the
within-d curve on each labelled set.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from simgan_jax.tasks import gaze_net as gaze
from simgan_jax.tasks import loop


def make_predict_fn(model: gaze.GazeEstimator, mesh: Mesh):
  """(params, images [N, H, W, C] sharded over the batch axis) -> raw gaze [N, 3], replicated."""
  return loop.make_predict_fn(lambda params, images: model.apply({"params": params}, images), mesh)


def evaluate(predict_fn, params, images, gaze_N3, mesh: Mesh, chunk: int,
             thresholds=gaze.WITHIN_THRESHOLDS_DEG) -> dict[str, Any]:
  """Mean angular error (degrees) and the within-d curve on one labelled set."""
  errors = np.asarray(gaze.angular_error_deg(loop.predict(predict_fn, params, images, mesh, chunk),
                                             np.asarray(gaze_N3, np.float32)))
  return {
      "num_images": int(len(errors)),
      "mean_angular_error_deg": gaze.mean_angular_error(errors),
      "median_angular_error_deg": float(np.median(errors)),
      "within_deg": {str(d): share for d, share in gaze.within_curve(errors, thresholds).items()},
  }


def _prepare(hparams, batch, step_key, num_local):
  del hparams, step_key, num_local
  return batch["image"], batch["gaze"].astype(jnp.float32)


def _loss(hparams, pred, true):
  del hparams
  return gaze.gaze_l2_loss(pred, true), pred


def _train_metrics(hparams, pred, true):
  del hparams
  return {"angular_error_deg": jnp.mean(gaze.angular_error_deg(pred, true))}


TASK = loop.Task(
    name="gaze estimator",
    label="gaze",
    label_shape=lambda config: (3,),
    make_model=gaze.make_gaze_estimator,
    make_hparams=lambda config: None,
    prepare=_prepare,
    loss=_loss,
    train_metrics=_train_metrics,
    make_predict_fn=lambda config, model, mesh: make_predict_fn(model, mesh),
    evaluate=lambda config, predict_fn, params, images, labels, mesh: evaluate(
        predict_fn, params, images, labels, mesh, config.eval_batch_size),
    eval_scalars=lambda name, r: {f"eval/{name}/mean_angular_error_deg": r["mean_angular_error_deg"],
                                  f"eval/{name}/within_7_deg": r["within_deg"]["7"]},
    eval_summary=lambda r: (f"mean angular error {r['mean_angular_error_deg']:.2f} deg, "
                            f"within 7 deg {100 * r['within_deg']['7']:.1f}%"),
    train_summary=lambda m: f"loss {m['loss']:.4f} train error {m['angular_error_deg']:.2f} deg",
)
