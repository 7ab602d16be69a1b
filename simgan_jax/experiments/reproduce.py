"""The paper's experiment end to end: train SimGAN, pick a refiner, refine, train
gaze estimators, measure label preservation, write ``report.md``.

``run(config, workdir)`` with a config from ``configs/reproduce.py`` (its
docstring lists the stages and commands). Every stage leaves its outputs in
``workdir`` and is skipped or resumed when they are there, so an interrupted run
is continued by running the same command again. Target-domain labels are used
by the ``target`` estimators (an upper bound) and by the test numbers only; the
refiner is selected by the label-free realism score.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import os
import shutil
import time
import types
from typing import Any, Callable

import jax
import numpy as np

from simgan_jax import metric_writer
from simgan_jax import parallel
from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.experiments import caveats
from simgan_jax.tasks import data as data_lib
from simgan_jax.tasks import gaze_net as gaze
from simgan_jax.tasks import gaze as gaze_task
from simgan_jax.tasks import loop
from simgan_jax.probe import pupil
from simgan_jax.probe import texture
from simgan_jax.experiments import report
from simgan_jax.experiments import rows
from simgan_jax.experiments import seeds as seeds_lib
from simgan_jax.probe import selection as selection_lib
from simgan_jax.refining import refine
from simgan_jax.simulators import sources as eye_sources
from simgan_jax.simulators import target
from simgan_jax.probe import two_sample

TRAINING_SETS, TITLES, gap_closed = rows.TRAINING_SETS, rows.TITLES, rows.gap_closed
# Label names, in order of preference, that hold a 2D pupil (or iris) centre.
_PUPIL_LABELS = ("pupil_center", "iris_centre")


def _write_json(path: str, value) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1)
  os.replace(tmp, path)


def validate_config(config) -> None:
  for field in ("num_synthetic", "data_multiplier", "num_label_pairs", "num_sample_images", "refine_chunk"):
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f"config.{field}: must be an integer > 0, got {config[field]!r}")
  if not config.seeds or not all(isinstance(s, int) for s in config.seeds):
    raise ConfigError(f"config.seeds: expected a list of integers, got {config.seeds!r}")
  seeds_lib.validate(config)
  unknown = [name for name in config.training_sets if name not in TRAINING_SETS]
  if not config.training_sets or unknown:
    raise ConfigError(f"config.training_sets: expected names from {', '.join(TRAINING_SETS)}, "
                      f"got {', '.join(map(repr, config.training_sets)) or 'none'}")
  if config.num_label_pairs > config.num_synthetic * config.data_multiplier:
    raise ConfigError(f"config.num_label_pairs: {config.num_label_pairs} is more than the "
                      f"{config.num_synthetic * config.data_multiplier} refined images")
  oracle_target = {"gaze": "eyesim_target", "pose": "handsim_target"}.get(config.get("estimator", "gaze"))
  if "oracle" in config.training_sets and config.simgan.real_data.name != oracle_target:
    raise ConfigError("config.training_sets: 'oracle' (the target's appearance model on the "
                      "simulator's scenes) needs a built-in simulator as synthetic data and "
                      f"its target ({oracle_target}) as simgan.real_data, not {config.simgan.real_data.name!r}")
  if not config.simgan.get("realism") or not config.simgan.realism.num_images:
    raise ConfigError("config.simgan.realism.num_images: must be > 0; the refiner checkpoint is "
                      "selected by the realism score")


# ----------------------------------------------------------------------------- selection


def select_checkpoint(simgan_config, simgan_dir: str) -> dict[str, Any]:
  """The adversarial-phase checkpoint on disk with the lowest ``selection_score``: realism
  subject to the label-drift bound, never a collapsed refiner (``probe/selection.py``;
  no target labels used)."""
  return selection_lib.best_checkpoint(simgan_config, simgan_dir)


# ----------------------------------------------------------------------------- data


def _gaze_config(config, seed: int):
  g = copy.deepcopy(config.gaze)
  g.seed = int(seed)
  return g


def load_or_refine(config, workdir: str, simgan_dir: str, step: int, log) -> dict[str, np.ndarray]:
  """{"synthetic", "refined": uint8 images, "labels": {...}} of the first
  ``data_multiplier * num_synthetic`` synthetic images, refined by checkpoint ``step``
  into ``workdir/refined`` (a TFDS dataset, ``launch/refine.py``'s format; resumable)."""
  from simgan_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top

  out = os.path.join(workdir, "refined")
  refine.refine_dataset(config.simgan, simgan_dir, config.synthetic_data, out,
                        num_examples=config.num_synthetic * config.data_multiplier, step=step,
                        chunk_size=config.refine_chunk, seed=config.synthetic_seed, keep_synthetic=True,
                        data_dir=config.data_dir, cache_dir=estimator_stages(config).section.cache_dir,
                        progress=True)
  refined, labels = tfds_sources.load_directory(out, labels="all")
  synthetic = labels.pop("synthetic")
  labels.pop("index", None)
  if synthetic.dtype != np.uint8:  # simulator renders are kept as rendered, float in [-1, 1]
    synthetic = sources_lib.from_unit_range(synthetic)
  label = estimator_stages(config).label
  if label not in labels:
    raise DataError(f"{out}: the refined data has no {label!r} label (labels: {', '.join(labels)})")
  log(f"refined data: {out} ({len(refined)} images)")
  return {"synthetic": synthetic, "refined": refined, "labels": labels}


def oracle_pool(config, labels, factors_off: tuple[str, ...] = (), *, with_labels: bool = False):
  """The first ``num_synthetic`` synthetic images' scenes through the target domain's
  appearance model (``target.simulator_scene_params``): uint8 images that a perfect
  refiner would make, with the same labels. Their rows show what refinement can reach
  on this benchmark at best, and what a perfect refiner's drift and pupil shift are.
  ``factors_off``: target.APPEARANCE_FACTORS switched off (launch/diagnose_realism.py);
  ``labels`` None skips the check that the scenes are the synthetic pool's;
  ``with_labels`` returns (images, {"gaze": float32 [n, 2]}) instead of the images alone."""

  g = config.gaze
  shape = data_lib.image_shape(g)
  simulator = sources_lib.make_source(data_lib.data_config(config.synthetic_data, g, training=True),
                                      shape, "synthetic_data")
  scene = getattr(simulator, "config", None)
  if not hasattr(scene, "gaze_sampling"):
    raise ConfigError(f"config.training_sets: 'oracle' needs the eye simulator as synthetic_data, "
                      f"got {config.synthetic_data!r}")
  appearance = eye_sources.dataset_config(config.simgan.real_data, shape).target
  unknown = [f for f in factors_off if f not in target.APPEARANCE_FACTORS]
  if unknown:
    raise ConfigError(f"factors_off: unknown appearance factor(s) {', '.join(map(repr, unknown))}; "
                      f"expected names from {', '.join(target.APPEARANCE_FACTORS)}")
  appearance = dataclasses.replace(appearance, scene=scene, **{f: 0.0 for f in factors_off})
  n = config.num_synthetic
  key = jax.random.PRNGKey(config.synthetic_seed)
  images, gazes = [], []
  for start in range(0, n, 1000):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(start + np.arange(min(1000, n - start)))
    out, out_labels = target.render_batch_staged(keys, appearance, simulator_scenes=True)
    # The scenes must be the synthetic pool's: same keys, same labels.
    if labels is not None and not np.allclose(np.asarray(out_labels["gaze"]), labels["gaze"][start:start + len(keys)],
                                              atol=1e-5):
      raise DataError("oracle: the simulator scenes do not match the synthetic pool's labels "
                      f"(images {start}-{start + len(keys)}); was the pool rendered with another "
                      "synthetic_seed or simulator config?")
    images.append(sources_lib.from_unit_range(out))
    gazes.append(np.asarray(out_labels["gaze"], np.float32))
  if with_labels:
    return np.concatenate(images), {"gaze": np.concatenate(gazes)}
  return np.concatenate(images)


def training_set_names(config) -> list[str]:
  """The rows to train: ``config.training_sets``, less ``target`` without target_train_data."""
  return [name for name in config.training_sets if name != "target" or config.target_train_data]


def training_sources(config, pools) -> dict[str, Callable[[], sources_lib.ImageSource]]:
  """Training set name -> a function making its source (built only when needed), for
  ``training_set_names(config)``."""
  n = config.num_synthetic
  g = pools["labels"]["gaze"].astype(np.float32)
  sets = {
      "synthetic": lambda: sources_lib.ArraySource(pools["synthetic"][:n], {"gaze": g[:n]}),
      "synthetic_4x": lambda: sources_lib.ArraySource(pools["synthetic"], {"gaze": g}),
      "refined": lambda: sources_lib.ArraySource(pools["refined"][:n], {"gaze": g[:n]}),
      "refined_4x": lambda: sources_lib.ArraySource(pools["refined"], {"gaze": g}),
      "oracle": lambda: sources_lib.ArraySource(pools["oracle"], {"gaze": g[:n]}),
  }
  sets["target"] = lambda: data_lib.train_source(config.target_train_data, config.gaze)
  return {name: sets[name] for name in training_set_names(config)}


# ----------------------------------------------------------------------------- estimators


def train_estimators(config, pools, workdir: str, log) -> dict[str, dict[str, Any]]:
  """{training set: {str(seed): results.json}}; runs already finished are read back."""
  return rows.train_rows(
      training_sources(config, pools), config.seeds, os.path.join(workdir, "gaze"), log, "gaze estimator",
      lambda: {"test": data_lib.eval_set(config.test_data, config.gaze)},
      lambda seed, source, eval_sets, run_dir: loop.train_estimator(gaze_task.TASK,
          _gaze_config(config, seed), source, eval_sets, run_dir),
      eval_data=rows.eval_record(config.test_data, config.gaze),
      evaluate=lambda seed, eval_sets, run_dir: loop.evaluate_saved(gaze_task.TASK,
          _gaze_config(config, seed), eval_sets, run_dir),
      settings=lambda seed: _gaze_config(config, seed))


def summarize(results) -> dict[str, dict[str, float]]:
  """Mean and standard deviation over seeds of the test error and within-7 share."""
  out = {}
  for name, by_seed in results.items():
    errors = [r["eval"]["test"]["mean_angular_error_deg"] for r in by_seed.values()]
    within7 = [100 * r["eval"]["test"]["within_deg"]["7"] for r in by_seed.values()]
    curves = np.array([[r["eval"]["test"]["within_deg"][str(d)] for d in gaze.WITHIN_THRESHOLDS_DEG]
                       for r in by_seed.values()])
    out[name] = {"error_mean": float(np.mean(errors)), "error_std": float(np.std(errors)),
                 "within7_mean": float(np.mean(within7)), "within7_std": float(np.std(within7)),
                 "num_seeds": len(errors), "curve": curves.mean(0).tolist(),
                 "train_seconds": float(sum(r["train_seconds"] for r in by_seed.values()))}
  return out


# ----------------------------------------------------------------------------- labels


def _stats(values) -> dict[str, float]:
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std()), "median": float(np.median(values)),
          "p90": float(np.percentile(values, 90)), "num": int(len(values))}


def label_preservation(config, pools, workdir: str) -> dict[str, Any]:
  """Pupil-centre shift, the localiser's own error, and gaze drift on refined/synthetic pairs."""
  n = config.num_label_pairs
  synthetic, refined = pools["synthetic"][:n], pools["refined"][:n]
  to_float = lambda x: np.asarray(sources_lib.to_unit_range(x))  # noqa: E731
  out: dict[str, Any] = {"num_pairs": n}
  loc = jax.jit(pupil.localize_pupil)
  centre_syn = np.concatenate([np.asarray(loc(to_float(synthetic[i:i + 500]))) for i in range(0, n, 500)])
  centre_ref = np.concatenate([np.asarray(loc(to_float(refined[i:i + 500]))) for i in range(0, n, 500)])
  out["pupil_shift_px"] = _stats(np.linalg.norm(centre_ref - centre_syn, axis=-1))
  label = next((k for k in _PUPIL_LABELS if k in pools["labels"]), None)
  if label is not None:
    truth = pools["labels"][label][:n].astype(np.float32)
    out["pupil_label"] = label
    out["localiser_error_synthetic_px"] = _stats(np.linalg.norm(centre_syn - truth, axis=-1))
    out["localiser_error_refined_px"] = _stats(np.linalg.norm(centre_ref - truth, axis=-1))
  if "target" in training_set_names(config):  # the drift is measured by the target-trained estimator
    seed = config.seeds[0]
    g = _gaze_config(config, seed)
    params = loop.restore_params(gaze_task.TASK, g, os.path.join(workdir, "gaze", "target", f"seed_{seed}"))
    mesh = parallel.make_mesh(g.get("num_devices", 0))
    predict_fn = gaze_task.make_predict_fn(gaze.make_gaze_estimator(g), mesh)
    p_syn = loop.predict(predict_fn, params, synthetic, mesh, g.eval_batch_size)
    p_ref = loop.predict(predict_fn, params, refined, mesh, g.eval_batch_size)
    out["gaze_drift_deg"] = _stats(gaze.angular_error_deg(p_syn, p_ref))
    out["gaze_drift_estimator"] = f"target, seed {seed}"
  out.update(texture.pool_entries(pools, n))  # oriented streaks, beside the simulator's and the perfect refiner's
  if "oracle" in pools:  # the same measures for a perfect refiner
    oracle = pools["oracle"][:n]
    centre_orc = np.concatenate([np.asarray(loc(to_float(oracle[i:i + 500]))) for i in range(0, n, 500)])
    out["oracle_pupil_shift_px"] = _stats(np.linalg.norm(centre_orc - centre_syn, axis=-1))
    if "gaze_drift_deg" in out:
      p_orc = loop.predict(predict_fn, params, oracle, mesh, g.eval_batch_size)
      out["oracle_gaze_drift_deg"] = _stats(gaze.angular_error_deg(p_syn, p_orc))
  return out


def stage_timer(timings: dict[str, float], clock, path: str) -> Callable:
  """``timed(name, fn, record_none=True)``: runs ``fn`` and records its wall time (and the
  CPU time, ``clock``) as ``timings[name]`` in ``path``. The wall time of the run that
  finished the stage: a rerun that finds it done keeps the recorded time (a stage resumed
  after an interruption counts its last part). ``record_none=False``: a stage that returns
  None did nothing (the final two-sample test switched off) and records no time, so a
  later run that switches it on records its own."""

  def timed(name, fn, record_none=True):
    start = time.time()
    clock.begin()
    value = fn()
    if name not in timings and (record_none or value is not None):  # CPU time beside the same run's wall time
      timings[name] = time.time() - start
      clock.end(name)
    _write_json(path, timings)
    return value

  return timed


def final_two_sample(config, pools, workdir: str) -> dict[str, Any] | None:
  """A stronger two-sample test than the per-checkpoint probe, once, on the selected
  refiner's images (``config.final_two_sample``): a fresh, wider classifier trained
  longer on ``num_images - num_test`` refined and as many real-pool images, tested on
  ``num_test`` + ``num_test`` unseen ones; the same test on the raw synthetic images
  is its reference. Cached in ``two_sample.json``. None when disabled.

  Why: the probe at ``:cpu`` size scores the rippled refiners of docs/ablation_*.md
  74-86%, below raw synthetic images (84%), while a person tells them from the target
  at a glance; with widths (32, 64, 64) and 1,000 steps the same 1,000 images score
  99.5% (REFLECT, strong ripples), 96.8% (zero padding, frame), 92.1% (mirror + noise,
  the cleanest grid) and 100% (raw synthetic), 50.0% for target against target.
  """
  t = config.get("final_two_sample")
  if t is None or not t.enabled:
    return None
  path = os.path.join(workdir, "two_sample.json")
  cached = caveats.read_json(path)
  if cached is not None and ("oracle" in cached or "oracle" not in pools):
    return cached

  tester, n = final_two_sample_tester(config, len(pools["refined"]))
  out = {"num_images": n, "num_test": tester.num_test, "features": list(t.features), "steps": t.steps,
         "refined": tester.score(pools["refined"][:n]), "synthetic": tester.score(pools["synthetic"][:n])}
  if "oracle" in pools:
    out["oracle"] = tester.score(pools["oracle"][:n])
  _write_json(path, out)
  return out


def final_two_sample_tester(config, num_fake: int):
  """(``two_sample.TwoSampleTest`` on ``final_two_sample.num_images`` real-pool images, the
  number of images per side): the final test of ``final_two_sample``, for ``num_fake``
  images to score (fewer than configured: all of them, the same share held out)."""
  t = config.final_two_sample
  n = t.num_images
  section = config.simgan.real_data
  shape = (config.simgan.image_height, config.simgan.image_width, config.simgan.channels)
  source = sources_lib.make_source(section, shape, "simgan.real_data")
  real_pool = getattr(source, "images", None)
  if real_pool is None:
    raise ConfigError(f"final_two_sample: simgan.real_data {section.name!r} is not an in-memory "
                      "image pool; set final_two_sample.enabled=false")
  # Fewer images than configured (a small user set): all of them, the same share held out;
  # the counts used are in the result and the report.
  n = min(n, len(real_pool), num_fake)
  num_test = max(1, min(t.num_test, round(n * t.num_test / t.num_images)))
  if n - num_test < 1:
    raise ConfigError(f"final_two_sample: {n} refined/real images are too few for a two-sample test; "
                      "set final_two_sample.enabled=false")
  rows = np.sort(np.random.default_rng(t.seed).choice(len(real_pool), n, replace=False))
  real = np.asarray(real_pool[rows])
  if real.dtype != np.uint8:
    real = sources_lib.from_unit_range(real)
  tester = two_sample.TwoSampleTest(real, num_test, steps=t.steps, batch_size=t.batch_size,
                                    features=tuple(t.features), learning_rate=t.learning_rate,
                                    seed=t.seed)
  return tester, n


# ----------------------------------------------------------------------------- estimator stages

# config.estimator -> the module whose ``stages(config)`` gives the estimator stages
# of another experiment (the hand experiment's pose estimator).
ESTIMATOR_MODULES = {"pose": "simgan_jax.experiments.hand_reproduce",
                     "image_folder": "simgan_jax.experiments.image_folder"}


def estimator_stages(config) -> types.SimpleNamespace:
  """Stages 4-6 of ``run`` for ``config.estimator`` (default: this module's gaze stages):
  ``section`` (the estimator's config), ``label``, ``train_estimators``, ``summarize``,
  ``label_preservation`` and ``write_report``."""
  name = config.get("estimator", "gaze")
  if name != "gaze":
    if name not in ESTIMATOR_MODULES:
      raise ConfigError(f"config.estimator: unknown {name!r}; known: gaze, {', '.join(ESTIMATOR_MODULES)}")
    return importlib.import_module(ESTIMATOR_MODULES[name]).stages(config)

  return types.SimpleNamespace(section=config.gaze, label="gaze", train_estimators=train_estimators,
                               summarize=summarize, label_preservation=label_preservation,
                               write_report=report.write_report, oracle_pool=oracle_pool)


# ----------------------------------------------------------------------------- run


def run(config, workdir: str, log=metric_writer.print_line) -> dict[str, Any]:
  """All stages (see configs/reproduce.py); returns what ``report.md`` shows."""
  validate_config(config)
  stages = estimator_stages(config)
  if config.data_dir:  # one place for prepared datasets: SimGAN's sections and the estimator's
    for section in (config.simgan.synthetic_data, config.simgan.real_data, stages.section):
      section.data_dir = section.data_dir or config.data_dir
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  timings_path = os.path.join(workdir, "timings.json")
  timings = caveats.read_json(timings_path) or {}
  timed = stage_timer(timings, caveats.CpuClock(workdir, jax.devices()[0].platform), timings_path)

  # Stages 1-3 (SimGAN, selection, refining) once per SimGAN seed (experiments/seeds.py).
  refiners = seeds_lib.train_refiners(config, workdir, timed, log, load_or_refine)
  first = refiners[seeds_lib.simgan_seeds(config)[0]]
  selection, pools = first["selection"], first["pools"]
  if "oracle" in config.training_sets:
    log(f"rendering the first {config.num_synthetic} synthetic scenes with the target's appearance (oracle)")
    pools["oracle"] = stages.oracle_pool(config, pools["labels"])
  log(f"[4/6] {stages.label} estimators")
  summary, results = timed(stages.label, lambda: seeds_lib.train_estimators(config, stages, refiners, workdir, log))
  log("[5/6] label preservation")
  preservation = timed("preservation", lambda: stages.label_preservation(config, pools, workdir))
  log("two-sample test of the selected refiner: refined vs real, raw synthetic vs real")
  final = timed("two_sample", lambda: final_two_sample(config, pools, workdir), record_none=False)
  if final is not None:
    preservation["two_sample"] = final
    log(f"two-sample accuracy: refined {100 * final['refined']['two_sample_accuracy']:.1f}%, "
        f"raw synthetic {100 * final['synthetic']['two_sample_accuracy']:.1f}% (50% = indistinguishable)")
  if len(refiners) > 1:
    others = seeds_lib.other_preservations(config, stages, refiners, workdir, timed, final_two_sample)
    preservation["simgan_seeds"] = {str(seeds_lib.simgan_seeds(config)[0]):
                                    seeds_lib.per_seed_record(selection, preservation), **others}
  _write_json(os.path.join(workdir, "preservation.json"), preservation)
  log("[6/6] report")
  path = stages.write_report(config, workdir, selection, summary, preservation, pools, timings)
  log(f"report: {path}")
  return {"selection": selection, "summary": summary, "preservation": preservation, "report": path,
          "results": results}


def publish(workdir: str, markdown_path: str) -> str:
  """Copies ``workdir/report.md`` to ``markdown_path`` and its figures next to it as
  ``<stem>_<figure>.png``, rewriting the links (how docs/results_eyesim.md is made)."""
  with open(os.path.join(workdir, "report.md")) as f:
    text = f.read()
  folder = os.path.dirname(os.path.abspath(markdown_path))
  stem = os.path.splitext(os.path.basename(markdown_path))[0]
  os.makedirs(folder, exist_ok=True)
  for name in sorted(os.listdir(workdir)):
    if name.endswith(".png"):
      shutil.copyfile(os.path.join(workdir, name), os.path.join(folder, f"{stem}_{name}"))
      text = text.replace(f"]({name})", f"]({stem}_{name})")
  with open(markdown_path, "w") as f:
    f.write(text)
  return markdown_path
