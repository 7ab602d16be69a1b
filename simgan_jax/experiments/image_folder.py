r"""Does refinement help my task? SimGAN on your own folders, end to end.

  python launch/make_folder_dataset.py --out=runs/folder_data        # or your own folders
  python launch/reproduce.py --experiment=image_folder:cpu --synthetic=runs/folder_data/synthetic \
      --real=runs/folder_data/real --real_test=runs/folder_data/real_test --workdir=runs/folder_cpu \
      --publish=docs/results_folder.md
  python launch/reproduce.py --experiment=image_folder:smoke --synthetic=... --real=... --workdir=/tmp/f

``--synthetic``: images with ``labels.csv`` (``filename,<label>,...``) or
``labels.json``; ``--real``: unlabelled images of the same kind of objects in the
appearance you want; ``--real_test`` (optional): labelled images in that
appearance, used only to test the task networks. Stages (each resumes or is
skipped when its outputs exist in the workdir):

0. ``data/``: the three folders prepared as image_folder datasets
   (``launch/prepare_data.py``'s format) at the first synthetic image's size; the
   task from the synthetic labels (one column of integers: classification, else
   regression; ``--set task=...`` overrides);
1-3. the reproduction's SimGAN training (``simgan/``), label-free checkpoint
   selection (``selection.json``: default.py ``:cpu``'s rule, the lowest two-sample
   accuracy, with the drift bound of a network trained on the synthetic labels;
   chosen on the eye benchmark, docs/selection_eyesim.md) and refining of the whole synthetic set
   (``refined/``), from experiments/reproduce.py;
4. ``estimators/<synthetic|refined>/seed_<s>/``: the task network
   (tasks/labels.py) trained on the synthetic images and on the refined ones
   (same labels), several seeds, tested on ``--real_test``;
5. ``preservation.json``: how often the synthetic-trained network changes its
   answer when an image is refined, and the final two-sample test;
6. ``report.md`` (experiments/folder_report.py) with the verdict line.

Without ``--real_test`` stages 4-5 train nothing and the report says that it
cannot tell whether refinement helped.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import pathlib
import types
from typing import Any

import numpy as np

from simgan_jax import metric_writer
from simgan_jax.configs import default as default_config
from simgan_jax.data import sources as sources_lib
from simgan_jax.data.builders import imaging
from simgan_jax.data.builders.image_folder import LABEL_FILES, read_label_format, read_labels
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.experiments import rows
from simgan_jax.experiments import reproduce
from simgan_jax.experiments import folder_report
from simgan_jax.tasks import labels as labels_lib
from simgan_jax.tasks import loop

# config field -> the launch/reproduce.py flag that sets it
FLAGS = {"synthetic_dir": "--synthetic", "real_dir": "--real", "real_test_dir": "--real_test"}
_COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


def _images(folder: str) -> list[pathlib.Path]:
  root = pathlib.Path(folder)
  return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in imaging.IMAGE_EXTENSIONS)


def check_folders(config) -> None:
  """One-line errors naming the flag: a missing folder, no images, no labels file."""
  for field, flag in FLAGS.items():
    folder = config[field]
    if not folder:
      if field == "real_test_dir":
        continue
      raise ConfigError(f"{flag}: required for --experiment=image_folder (a folder of images"
                        f"{' with labels.csv' if field == 'synthetic_dir' else ''})")
    if not os.path.isdir(os.path.expanduser(folder)):
      raise DataError(f"{flag}={folder}: no such folder")
    if not _images(os.path.expanduser(folder)):
      raise DataError(f"{flag}={folder}: no image files (PNG, JPEG, BMP, GIF, TIFF)")
    if field != "real_dir" and not any(os.path.isfile(os.path.join(folder, n)) for n in LABEL_FILES):
      raise DataError(f"{flag}={folder}: no labels.csv or labels.json; expected 'filename,<label>' "
                      "and one row per image")


def image_shape(config) -> tuple[int, int, int]:
  """(H, W, C): the config's, where set, else the first synthetic image's size, and 3
  channels when any of the first synthetic or real images is in colour."""
  first = imaging.load_image(_images(config.synthetic_dir)[0])
  colour = any(imaging.load_image(p).mode in _COLOUR_MODES
               for folder in (config.synthetic_dir, config.real_dir) for p in _images(folder)[:8])
  return (config.image_height or first.size[1], config.image_width or first.size[0],
          config.channels or (3 if colour else 1))


def _prepare_one(field: str, folder: str, data_dir: str, shape, log):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from simgan_jax.data.builders.prepare import prepare  # pylint: disable=g-import-not-at-top

  tfds.display_progress_bar(False)  # one line per folder says enough
  try:
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's "Downloading and preparing ..."
      summary = prepare("image_folder", folder, data_dir,
                        overrides={"height": shape[0], "width": shape[1], "channels": shape[2]})
  except (DataError, ConfigError) as e:
    raise type(e)(f"{FLAGS[field]}={folder}: {e}") from None
  finally:
    tfds.display_progress_bar(True)
  log(f"data: {FLAGS[field]}={folder}: {summary.examples.get('train', 0)} images -> image_folder/"
      f"{summary.builder_config}")
  return summary


def use_folders(simgan_config, synthetic_dir: str, real_dir: str, data_dir: str, log) -> tuple[int, int, int]:
  """``launch/train.py --synthetic=DIR --real=DIR``: prepares both folders under
  ``data_dir`` (once; a rerun finds them prepared) and points the SimGAN config's
  ``synthetic_data`` / ``real_data`` at them, at the image size and channels read from
  the images (labels.csv is optional here: SimGAN needs no labels; with one, the
  label-drift probe uses it). Returns (H, W, C)."""
  for flag, folder in (("--synthetic", synthetic_dir), ("--real", real_dir)):
    if not os.path.isdir(os.path.expanduser(folder)):
      raise DataError(f"{flag}={folder}: no such folder")
    if not _images(os.path.expanduser(folder)):
      raise DataError(f"{flag}={folder}: no image files (PNG, JPEG, BMP, GIF, TIFF)")
  probe = types.SimpleNamespace(synthetic_dir=synthetic_dir, real_dir=real_dir, image_height=0, image_width=0,
                                channels=0)
  shape = image_shape(probe)
  for section, field, folder in ((simgan_config.synthetic_data, "synthetic_dir", synthetic_dir),
                                 (simgan_config.real_data, "real_dir", real_dir)):
    prepared = _prepare_one(field, folder, data_dir, shape, log)
    keep = {k: section[k] for k in ("shard_pool", "host_shard") if k in section}
    section.update(_folder_section(prepared.builder_config, data_dir))
    section.update(keep)
  simgan_config.image_height, simgan_config.image_width, simgan_config.channels = shape
  return shape


def _folder_section(builder_config: str, data_dir: str) -> dict[str, Any]:
  """The data-section fields that name a prepared image_folder set."""
  return dict(default_config.data_config("image_folder", builder_config=builder_config, data_dir=data_dir))


def prepare(config, workdir: str, log) -> dict[str, Any]:
  """Stage 0: checks and prepares the folders, fills the config's data fields, image
  shape and task (in place); returns what the report says about the data."""
  check_folders(config)
  config.data_dir = config.data_dir or os.path.join(workdir, "data")
  shape = image_shape(config)
  config.image_height, config.image_width, config.channels = shape
  prepared = {field: _prepare_one(field, config[field], config.data_dir, shape, log)
              for field in FLAGS if config[field]}
  values, _ = read_labels(pathlib.Path(config.synthetic_dir))
  label_format = read_label_format(pathlib.Path(config.synthetic_dir))
  matrix = labels_lib.as_matrix(np.stack(list(values.values())))
  kind = config.task if config.task != "auto" else labels_lib.pick_kind(matrix, label_format.get("integer"))
  if kind not in labels_lib.KINDS:
    raise ConfigError(f"config.task: {kind!r} is not auto, classification or regression")
  for section, field in ((config.simgan.synthetic_data, "synthetic_dir"), (config.simgan.real_data, "real_dir")):
    section.builder_config = prepared[field].builder_config
    section.data_dir = config.data_dir
  s, t = config.simgan, config.task_net
  s.image_height, s.image_width, s.channels = shape
  t.image_height, t.image_width, t.channels = shape
  t.kind = kind
  t.data_dir = config.data_dir
  config.synthetic_data = f"image_folder/{prepared['synthetic_dir'].builder_config}"
  config.test_data = (f"image_folder/{prepared['real_test_dir'].builder_config}" if "real_test_dir" in prepared
                      else "")
  num = {field: p.examples.get("train", 0) for field, p in prepared.items()}
  config.num_synthetic = min(config.num_synthetic, num["synthetic_dir"])
  config.num_label_pairs = min(config.num_label_pairs, config.num_synthetic)
  r = s.realism  # the checkpoint probe: at most the real folder's images
  r.num_images = min(r.num_images, num["real_dir"])
  r.subset_size = min(r.subset_size, r.num_images)
  if s.two_sample.num_test >= r.num_images:  # the probe holds out num_test of them
    s.two_sample.num_test = max(1, r.num_images // 3)
  return {"shape": list(shape), "kind": kind, "label_names": list(prepared["synthetic_dir"].labels),
          "counts": {FLAGS[f]: n for f, n in num.items()},
          "folders": {FLAGS[f]: config[f] for f in FLAGS if config[f]}}


def run(config, workdir: str, log=metric_writer.print_line) -> dict[str, Any]:
  """Stage 0, then the reproduction's stages with this module's estimator stages."""
  data = prepare(config, workdir, log)
  config.data_info = data  # read by the report
  result = reproduce.run(config, workdir, log)
  result["verdict"] = folder_report.verdict(result["summary"], config.task_net.kind, bool(config.test_data))
  return result


# ----------------------------------------------------------------------------- estimator stages


def stages(config) -> types.SimpleNamespace:
  """Stages 4-6 of ``reproduce.run`` (``config.estimator = "image_folder"``)."""
  return types.SimpleNamespace(section=config.task_net, label=labels_lib.LABEL, train_estimators=train_estimators,
                               summarize=lambda results: summarize(results, config.task_net.kind),
                               label_preservation=label_preservation, write_report=folder_report.write_report)


def task(config) -> loop.Task:
  return labels_lib.CLASSIFICATION if config.task_net.kind == "classification" else labels_lib.REGRESSION


def _task_config(config, labels, seed: int):
  t = copy.deepcopy(config.task_net)
  t.seed = int(seed)
  labels_lib.fit_config(t, labels)
  return t


def _pool_labels(config, pools) -> np.ndarray:
  return labels_lib.as_matrix(pools["labels"][labels_lib.LABEL][:config.num_synthetic])


def train_estimators(config, pools, workdir: str, log) -> dict[str, dict[str, Any]]:
  """{training set: {str(seed): results.json}}; finished runs are read back. {} without
  a labelled real test set (nothing to score the networks on)."""
  if not config.test_data:
    log("no --real_test: no task networks to train (nothing to test them on)")
    return {}
  n = config.num_synthetic
  labels = _pool_labels(config, pools)
  sets = {"synthetic": lambda: sources_lib.ArraySource(pools["synthetic"][:n], {labels_lib.LABEL: labels}),
          "refined": lambda: sources_lib.ArraySource(pools["refined"][:n], {labels_lib.LABEL: labels})}
  for name in config.training_sets:
    if name not in sets:
      raise ConfigError(f"config.training_sets: {name!r}; the image_folder experiment has synthetic, refined")
  first = _task_config(config, labels, config.seeds[0])

  def train(seed, source, eval_sets, run_dir):
    t = _task_config(config, labels, seed)
    return loop.train_estimator(task(config), t, source, eval_sets, run_dir)

  return rows.train_rows(
      {name: sets[name] for name in config.training_sets}, config.seeds, os.path.join(workdir, "estimators"),
      log, f"{first.kind} network", lambda: {"test": labels_lib.eval_sets(config.test_data, first)[config.test_data]},
      train, eval_data=rows.eval_record(config.test_data, first),
      evaluate=lambda seed, eval_sets, run_dir: loop.evaluate_saved(
          task(config), _task_config(config, labels, seed), eval_sets, run_dir),
      settings=lambda seed: _task_config(config, labels, seed))


def summarize(results, kind: str) -> dict[str, dict[str, Any]]:
  """Mean and std over seeds of the test accuracy (%, classification) or mean absolute error."""
  key = "accuracy" if kind == "classification" else "mean_abs_error"
  out = {}
  for name, by_seed in results.items():
    values = [r["eval"]["test"][key] * (100 if kind == "classification" else 1) for r in by_seed.values()]
    out[name] = {"metric": key, "mean": float(np.mean(values)), "std": float(np.std(values)),
                 "values": values, "num_seeds": len(values),
                 "num_test": int(next(iter(by_seed.values()))["eval"]["test"]["num_images"]),
                 "train_seconds": float(sum(r["train_seconds"] for r in by_seed.values()))}
  return out


def label_preservation(config, pools, workdir: str) -> dict[str, Any]:
  """On synthetic/refined pairs, the synthetic-trained network (first seed): how often its
  answer changes (classification) or by how much (regression), and its error against the
  synthetic labels on each image of a pair."""
  n = config.num_label_pairs
  out: dict[str, Any] = {"num_pairs": n}
  run_dir = os.path.join(workdir, "estimators", "synthetic", f"seed_{config.seeds[0]}")
  if not config.test_data or not os.path.exists(os.path.join(run_dir, "results.json")):
    return out
  from simgan_jax import parallel  # pylint: disable=g-import-not-at-top

  labels = _pool_labels(config, pools)
  t = _task_config(config, labels, config.seeds[0])
  mesh = parallel.make_mesh(t.get("num_devices", 0))
  params = loop.restore_params(task(config), t, run_dir)
  predict_fn = task(config).make_predict_fn(t, labels_lib.make_model(t), mesh)
  before = labels_lib.predict(t, predict_fn, params, pools["synthetic"][:n], mesh)
  after = labels_lib.predict(t, predict_fn, params, pools["refined"][:n], mesh)
  truth = labels[:n]
  out["network"] = f"synthetic, seed {config.seeds[0]}"
  if t.kind == "classification":
    out["changed_answers"] = float(np.mean(before != after))
    out["error_synthetic"] = float(np.mean(before != truth[:, 0]))
    out["error_refined"] = float(np.mean(after != truth[:, 0]))
  else:
    out["changed_answers"] = float(np.mean(np.abs(after - before)))
    out["error_synthetic"] = float(np.mean(np.abs(before - truth)))
    out["error_refined"] = float(np.mean(np.abs(after - truth)))
  return out
