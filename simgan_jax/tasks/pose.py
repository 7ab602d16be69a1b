"""The stacked-hourglass hand pose estimator as a task of the estimator loop (``tasks.loop``).

Each device augments its share of the batch (+-20 degree rotation, scale and
shift: ``pose.augment``, one key per example from the step's ``_AUGMENT`` stream)
and regresses Gaussian heatmaps of the ``joints`` label with ``heatmap_loss``
(``softmax`` by default, configs/pose.py). Train metric: the mean joint error of
the last stack's decoded heatmaps; evaluation: the mean joint error and the
all-joints-within-d curve (224-crop pixels) on each labelled set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from simgan_jax import parallel
from simgan_jax.errors import ConfigError
from simgan_jax.tasks import pose_net as pose
from simgan_jax.tasks import loop

_AUGMENT = 3  # named random stream, after loop's _INIT and _BATCH
DEFAULT_HEATMAP_LOSS = "softmax"  # configs/pose.py; mse did not learn at the :cpu size


@dataclasses.dataclass(frozen=True)
class PoseHParams:
  sigma: float  # Gaussian target width, heatmap pixels
  loss: str  # pose.heatmap_loss kind
  max_rotation_deg: float
  scale: tuple[float, float]
  max_shift: float
  image_width: int
  heatmap_size: int


def make_hparams(config) -> PoseHParams:
  a = config.augment
  return PoseHParams(sigma=config.heatmap_sigma, loss=config.get("heatmap_loss", DEFAULT_HEATMAP_LOSS),
                     max_rotation_deg=a.max_rotation_deg, scale=tuple(a.scale), max_shift=a.max_shift,
                     image_width=config.image_width, heatmap_size=config.model.heatmap_size)


def make_predict_fn(model: pose.StackedHourglass, image_width: int, mesh: Mesh):
  """(params, images [N, H, W, 1] sharded) -> joints [N, J, 2] in image pixels, replicated."""

  def forward(params, images):
    heatmaps = model.apply({"params": params}, images)[-1]
    return pose.to_image_coords(pose.decode_heatmaps(heatmaps), image_width, model.heatmap_size)

  return loop.make_predict_fn(forward, mesh)


def evaluate(predict_fn, params, images, joints_NJ2, mesh: Mesh, chunk: int, image_width: int
             ) -> dict[str, Any]:
  """Mean joint error and the all-joints-within-d curve (224-crop pixels) on one set."""
  pred = loop.predict(predict_fn, params, images, mesh, chunk)
  errors = pose.joint_errors_px(pred, joints_NJ2, image_width)
  curve = pose.within_curve(errors)
  return {"num_images": int(len(errors)), "mean_joint_error_px": float(errors.mean()),
          "median_max_joint_error_px": float(np.median(errors.max(-1))),
          "within_px": {str(d): share for d, share in curve.items()}}


def _prepare(h: PoseHParams, batch, step_key, num_local):
  aug_keys = parallel.example_keys(jax.random.fold_in(step_key, _AUGMENT), num_local)
  images, joints = jax.vmap(lambda k, i, j: pose.augment(k, i, j, h.max_rotation_deg, h.scale, h.max_shift))(
      aug_keys, batch["image"], batch["joints"].astype(jnp.float32))
  heatmaps = pose.heatmap_targets(pose.to_heatmap_coords(joints, h.image_width, h.heatmap_size),
                                  h.heatmap_size, h.sigma)
  return images, (joints, heatmaps)


def _loss(h: PoseHParams, pred, targets):
  return pose.heatmap_loss(pred, targets[1], h.loss), pred[-1]


def _train_metrics(h: PoseHParams, last, targets):
  decoded = pose.to_image_coords(pose.decode_heatmaps(last), h.image_width, h.heatmap_size)
  error = jnp.mean(jnp.linalg.norm(decoded - targets[0], axis=-1)) * (pose.PAPER_WIDTH / h.image_width)
  return {"joint_error_px": error}


def _validate(config) -> None:
  if config.image_height != config.image_width:
    raise ConfigError(f"config.image_height/image_width: the hourglass needs square images, got "
                      f"{config.image_height}x{config.image_width}")


TASK = loop.Task(
    name="pose estimator",
    label="joints",
    label_shape=lambda config: (config.model.num_joints, 2),
    make_model=pose.make_pose_estimator,
    make_hparams=make_hparams,
    prepare=_prepare,
    loss=_loss,
    train_metrics=_train_metrics,
    make_predict_fn=lambda config, model, mesh: make_predict_fn(model, config.image_width, mesh),
    evaluate=lambda config, predict_fn, params, images, labels, mesh: evaluate(
        predict_fn, params, images, labels, mesh, config.eval_batch_size, config.image_width),
    eval_scalars=lambda name, r: {f"eval/{name}/mean_joint_error_px": r["mean_joint_error_px"],
                                  f"eval/{name}/within_5_px": r["within_px"]["5"]},
    eval_summary=lambda r: (f"mean joint error {r['mean_joint_error_px']:.2f} px, all joints within 5 px "
                            f"{100 * r['within_px']['5']:.1f}%"),
    train_summary=lambda m: f"loss {m['loss']:.5f} train joint error {m['joint_error_px']:.2f} px",
    validate=_validate,
)
