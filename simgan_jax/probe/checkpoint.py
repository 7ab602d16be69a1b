"""The probe a SimGAN training run calls at each scored checkpoint, and its console lines.

``make_realism_probe`` picks fixed synthetic and real images once and returns
``refiner params -> scores``; ``task_network`` trains (or loads) the
synthetic-trained task network that label drift and the task-consistency loss
use; ``broadcast_score`` gives every process the chief's score.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax import metric_writer
from simgan_jax import parallel
from simgan_jax import training
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError
from simgan_jax.probe import drift as drift_lib
from simgan_jax.probe import realism
from simgan_jax.refining import refine
from simgan_jax.probe import selection
from simgan_jax.probe import two_sample


def broadcast_score(score: float) -> float:
  """The chief's checkpoint score on every process, so all keep the same checkpoints."""
  if jax.process_count() == 1:
    return score
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return float(multihost_utils.broadcast_one_to_all(np.array(score, np.float32)))


def make_realism_probe(config, setup: training.Setup, data, mesh, is_chief: bool = True, task=None):
  """``refiner params (host) -> scores`` at a checkpoint, or None when
  ``config.realism.num_images`` is 0.

  The same ``num_images`` synthetic images (fixed keys from ``config.realism.seed``)
  are refined at each call and compared with ``num_images`` real-pool images:
  ``realism_kid`` (+ ``_std``, ``_unrefined``) by KID on fixed random features
  (``probe/realism.py``); ``two_sample_accuracy`` (+ ``_low``, ``_high``,
  ``_unrefined``) of a fresh refined-vs-real classifier (``probe/two_sample.py``,
  ``config.two_sample``); ``label_drift`` (+ ``_p90``) of ``task``, the synthetic-trained
  task network (``probe/drift.py``); the output spread and ``collapsed``; and
  ``selection_score`` (``probe/selection.py``) with the seconds each part took.
  ``probe.evaluate(refined_uint8)`` scores already refined images (tests use it).
  Every process calls it (the images are picked once from the pools, which may be
  sharded); the probe itself runs on the chief's first device only, and is None
  elsewhere.
  """
  r = config.get("realism")
  if r is None or not r.num_images:
    return None

  if r.subset_size > r.num_images:
    raise ConfigError(f"config.realism.subset_size: {r.subset_size} is more than num_images "
                      f"{r.num_images}")
  key = jax.random.fold_in(jax.random.PRNGKey(r.seed), training.PURPOSE_REALISM)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(r.num_images))
  device = jax.local_devices()[0]

  # A finite real pool is read without replacement, its two-sample test rows held out from
  # the training rows (a duplicate across the split would leak); a simulator draws
  # a new image per key.
  t = config.get("two_sample")
  num_test = t.num_test if t is not None and t.enabled else 0
  real_rows = None
  if num_test and not 1 <= num_test < r.num_images:
    raise ConfigError(f"config.two_sample.num_test: {num_test} must be >= 1 and below "
                      f"config.realism.num_images {r.num_images}")
  if hasattr(setup.data.real, "take") and hasattr(setup.data.real, "total"):
    if num_test >= setup.data.real.total:
      raise ConfigError(f"config.two_sample.num_test: {num_test} held-out real images need a real pool "
                        f"of more than {num_test}; config.real_data has {setup.data.real.total}")
    real_rows = parallel.put_replicated(
        sources_lib.split_without_replacement(setup.data.real.total, r.num_images, num_test, r.seed), mesh)

  # Over the global (replicated or sharded) pools, on every process; replicated out.
  @functools.partial(jax.jit, out_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  def pick(d, keys, rows):
    batch = setup.data.synthetic.sample(d["synthetic"], keys)
    if rows is not None:
      return batch, setup.data.real.take(d["real"], rows)["image"]
    real_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    return batch, setup.data.real.sample(d["real"], real_keys)["image"]

  keys = parallel.put_replicated(np.asarray(keys), mesh)
  batch, real = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), pick(data, keys, real_rows))
  if not is_chief:
    return None
  synthetic = batch["image"]
  synthetic_u8 = sources_lib.from_unit_range(synthetic)
  image_shape = tuple(synthetic.shape[1:])
  scorer = realism.RealismScorer(real, image_shape, seed=r.seed, subset_size=r.subset_size,
                                 num_subsets=r.num_subsets)
  fixed = {"realism_kid_unrefined": scorer.score(synthetic)["kid"]}
  tester = None
  if t is not None and t.enabled:
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


def task_network(config, setup: training.Setup, data, workdir: str, is_chief: bool):
  """The synthetic-trained task network (probe/drift.py), when the probe or the
  task-consistency loss needs one; None otherwise."""
  weight = config.loss.get("task_consistency_weight", 0.0)
  if not math.isfinite(weight) or weight < 0:
    raise ConfigError(f"config.loss.task_consistency_weight: must be a finite number >= 0, got {weight!r}")
  d = config.get("drift")
  realism_on = is_chief and config.get("realism") and config.realism.num_images
  probe_on = realism_on and d is not None and d.enabled
  if realism_on and not probe_on:
    selection.require_measured(config, "label_drift", "config.drift.enabled is false")
  if not (weight or probe_on):
    return None
  if d is None:
    raise ConfigError("config.drift: the task-consistency loss needs the config.drift section")

  log = metric_writer.print_line if is_chief else (lambda line: None)
  if getattr(setup.data.synthetic, "sharded", False):
    # The task network trains on one device from the whole pool.
    if weight:
      raise ConfigError("config.loss.task_consistency_weight: needs a replicated synthetic pool; set "
                        "config.synthetic_data.shard_pool=false")
    selection.require_measured(config, "label_drift", "the synthetic pool is sharded across devices "
                               "(set config.synthetic_data.shard_pool=false)")
    log("label drift: off (the synthetic pool is sharded across devices; set "
        "config.synthetic_data.shard_pool=false to measure it)")
    return None
  local = jax.tree.map(lambda x: x.addressable_data(0), data["synthetic"])
  task = drift_lib.task_network(config, setup.data.synthetic, local, setup.data.image_shape, workdir, log)
  if task is None and weight:
    raise ConfigError("config.loss.task_consistency_weight: > 0 needs a task network, but the "
                      "synthetic data has no numeric label (see config.drift.label)")
  if task is None and probe_on:
    selection.require_measured(config, "label_drift", "the synthetic data has no numeric label to "
                               "choose (name one with config.drift.label)")
  return task
