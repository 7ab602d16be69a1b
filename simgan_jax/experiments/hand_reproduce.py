"""Stages 4-6 of ``reproduce.run`` for the hand experiment (``config.estimator = "pose"``):
stacked-hourglass estimators per training set and seed, label preservation for
joints, and the Table 4 report (``hand_report.py``).

Label preservation (no hand-fitted labels exist for refined depth): on
``num_label_pairs`` synthetic/refined pairs, the foreground masks' IoU, the mean
absolute depth change on the common foreground (mm), and the joints the
``target``-trained estimator (first seed) predicts on each image of a pair: their
drift (224-crop px) and their error against the simulator's labels on synthetic and
on refined images; and where refined and oracle images drop pixels (probe/dropout.py).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import types
from typing import Any, Callable

import jax
import numpy as np

from simgan_jax import parallel
from simgan_jax.data import sources as sources_lib
from simgan_jax.experiments import rows
from simgan_jax.probe import dropout
from simgan_jax.probe import texture
from simgan_jax.tasks import pose_net as pose
from simgan_jax.tasks import pose_data
from simgan_jax.tasks import loop
from simgan_jax.tasks import pose as pose_task
from simgan_jax.experiments import reproduce
from simgan_jax.experiments import hand_report
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.simulators import hand_sources
from simgan_jax.simulators import hands_target

# uint8 levels: the NYU builder's foreground is 0..127 (150 mm = 63.5 levels), background 255.
_FOREGROUND_BELOW = dropout.FOREGROUND_BELOW
_MM_PER_LEVEL = 150.0 / 63.5


def stages(config) -> types.SimpleNamespace:

  return types.SimpleNamespace(section=config.pose, label="joints", train_estimators=train_estimators,
                               summarize=lambda results: summarize(results, config.within_px), label_preservation=label_preservation,
                               write_report=hand_report.write_report, oracle_pool=oracle_pool)


def _pose_config(config, seed: int):
  p = copy.deepcopy(config.pose)
  p.seed = int(seed)
  return p


def training_sources(config, pools) -> dict[str, Callable[[], sources_lib.ImageSource]]:
  n = config.num_synthetic
  j = pools["labels"]["joints"].astype(np.float32)
  sets = {
      "synthetic": lambda: sources_lib.ArraySource(pools["synthetic"][:n], {"joints": j[:n]}),
      "synthetic_4x": lambda: sources_lib.ArraySource(pools["synthetic"], {"joints": j}),
      "refined": lambda: sources_lib.ArraySource(pools["refined"][:n], {"joints": j[:n]}),
      "refined_4x": lambda: sources_lib.ArraySource(pools["refined"], {"joints": j}),
      "oracle": lambda: sources_lib.ArraySource(pools["oracle"], {"joints": j[:n]}),
      "target": lambda: pose_data.train_source(config.target_train_data, config.pose),
  }
  return {name: sets[name] for name in reproduce.training_set_names(config)}


def oracle_factors_off(config) -> dict[str, float]:
  """{factor: 0.0} for each ``config.oracle_factors_off`` name (hands_target.SENSOR_FACTORS):
  the target-appearance factors the ``oracle`` row leaves out (a diagnosis of which part of
  the perfect refiner's gain a refiner must make; empty: all of them, the perfect refiner)."""
  names = tuple(config.get("oracle_factors_off", ()) or ())
  unknown = [n for n in names if n not in hands_target.SENSOR_FACTORS]
  if unknown:
    raise ConfigError(f"config.oracle_factors_off: unknown factor(s) {', '.join(map(repr, unknown))}; "
                      f"known: {', '.join(hands_target.SENSOR_FACTORS)}")
  return {name: 0.0 for name in names}


@functools.partial(jax.jit, static_argnums=1)
def _render_oracle(keys_B, target_config):
  return hands_target.render_batch(keys_B, target_config, simulator_scenes=True)


def oracle_pool(config, labels) -> np.ndarray:
  """The first ``num_synthetic`` simulator hands measured by the target domain's own
  sensor model, forearm and clutter included (``hands_target.simulator_scene_params``):
  uint8 depth that a perfect refiner would make, with the synthetic pool's joints."""
  p = config.pose
  shape = (p.image_height, p.image_width, 1)
  simulator = sources_lib.make_source(pose_data._section(config.synthetic_data, p, True), shape,  # pylint: disable=protected-access
                                      "synthetic_data")
  if not isinstance(simulator, hand_sources.HandSimulatorSource):
    raise ConfigError(f"config.training_sets: 'oracle' needs the hand simulator as synthetic_data, "
                      f"got {config.synthetic_data!r}")
  sensor = hand_sources.dataset_config(config.simgan.real_data, shape).target
  sensor = dataclasses.replace(sensor, scene=simulator.config, **oracle_factors_off(config))
  n, key = config.num_synthetic, jax.random.PRNGKey(config.synthetic_seed)
  images = []
  for start in range(0, n, 500):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(start + np.arange(min(500, n - start)))
    out, out_labels = _render_oracle(keys, sensor)
    if not np.allclose(np.asarray(out_labels["joints"]), labels["joints"][start:start + len(keys)], atol=1e-3):
      raise DataError("oracle: the simulator hands do not match the synthetic pool's joints "
                      f"(images {start}-{start + len(keys)}); was the pool rendered with another "
                      "synthetic_seed or simulator config?")
    images.append(sources_lib.from_unit_range(out))
  return np.concatenate(images)


def train_estimators(config, pools, workdir: str, log) -> dict[str, dict[str, Any]]:
  """{training set: {str(seed): results.json}}; finished runs are read back."""
  return rows.train_rows(
      training_sources(config, pools), config.seeds, os.path.join(workdir, "pose"), log, "pose estimator",
      lambda: {"test": pose_data.eval_set(config.test_data, config.pose)},
      lambda seed, source, eval_sets, run_dir: loop.train_estimator(pose_task.TASK,
          _pose_config(config, seed), source, eval_sets, run_dir),
      eval_data=rows.eval_record(config.test_data, config.pose),
      evaluate=lambda seed, eval_sets, run_dir: loop.evaluate_saved(pose_task.TASK,
          _pose_config(config, seed), eval_sets, run_dir),
      settings=lambda seed: _pose_config(config, seed))


def summarize(results, within_px: int = 5) -> dict[str, dict[str, float]]:
  """Mean and std over seeds of the share within ``within_px`` (Table 4: 5) and the mean joint error.
  The keys say 5 (``within5_mean``) whatever the threshold; ``within_px`` records it."""
  out = {}
  for name, by_seed in results.items():
    tests = [r["eval"]["test"] for r in by_seed.values()]
    errors = [t["mean_joint_error_px"] for t in tests]
    within = [100 * t["within_px"][str(within_px)] for t in tests]
    curves = np.array([[t["within_px"][str(d)] for d in pose.WITHIN_THRESHOLDS_PX] for t in tests])
    out[name] = {"error_mean": float(np.mean(errors)), "error_std": float(np.std(errors)),
                 "within5_mean": float(np.mean(within)), "within5_std": float(np.std(within)),
                 "within_px": within_px, "num_seeds": len(tests), "curve": curves.mean(0).tolist(),
                 "train_seconds": float(sum(r["train_seconds"] for r in by_seed.values()))}
  return out


def label_preservation(config, pools, workdir: str) -> dict[str, Any]:
  n = config.num_label_pairs
  synthetic, refined = pools["synthetic"][:n], pools["refined"][:n]
  fg_syn, fg_ref = synthetic[..., 0] < _FOREGROUND_BELOW, refined[..., 0] < _FOREGROUND_BELOW
  union = np.maximum((fg_syn | fg_ref).sum((1, 2)), 1)
  both = fg_syn & fg_ref
  change = np.abs(synthetic[..., 0].astype(np.float64) - refined[..., 0]) * _MM_PER_LEVEL
  out: dict[str, Any] = {
      "num_pairs": n,
      "foreground_iou": reproduce._stats((fg_syn & fg_ref).sum((1, 2)) / union),  # pylint: disable=protected-access
      "depth_change_mm": reproduce._stats(  # pylint: disable=protected-access
          [change[i][both[i]].mean() if both[i].any() else 0.0 for i in range(n)]),
  }
  out.update(texture.pool_entries(pools, n))  # oriented streaks, beside the simulator's and the perfect refiner's
  out.update(dropout.pool_entries(pools, n))  # where pixels are dropped: silhouette, bands or speckle
  if "target" in reproduce.training_set_names(config):
    seed = config.seeds[0]
    p = _pose_config(config, seed)
    params = loop.restore_params(pose_task.TASK, p, os.path.join(workdir, "pose", "target", f"seed_{seed}"))
    mesh = parallel.make_mesh(p.get("num_devices", 0))
    predict_fn = pose_task.make_predict_fn(pose.make_pose_estimator(p), p.image_width, mesh)

    j_syn = loop.predict(predict_fn, params, synthetic, mesh, p.eval_batch_size)
    j_ref = loop.predict(predict_fn, params, refined, mesh, p.eval_batch_size)
    truth = pools["labels"]["joints"][:n]
    stats = reproduce._stats  # pylint: disable=protected-access
    out["joint_drift_px"] = stats(pose.joint_errors_px(j_syn, j_ref, p.image_width).mean(-1))
    out["joint_error_synthetic_px"] = stats(pose.joint_errors_px(j_syn, truth, p.image_width).mean(-1))
    out["joint_error_refined_px"] = stats(pose.joint_errors_px(j_ref, truth, p.image_width).mean(-1))
    out["drift_estimator"] = f"target, seed {seed}"
    if "oracle" in pools:  # the same for a perfect refiner: the scale to read the refiner's drift against
      j_orc = loop.predict(predict_fn, params, pools["oracle"][:n], mesh, p.eval_batch_size)
      out["oracle_joint_drift_px"] = stats(pose.joint_errors_px(j_syn, j_orc, p.image_width).mean(-1))
      out["joint_error_oracle_px"] = stats(pose.joint_errors_px(j_orc, truth, p.image_width).mean(-1))
  return out
