r"""Refines a whole synthetic dataset with a trained SimGAN refiner: a TFDS dataset or PNG files.

  python launch/refine.py --checkpoint=runs/eyesim --data=eyesim --num_examples=100000 \
      --out=runs/refined_eyesim
  python launch/train_gaze.py --train_data=tfds:runs/refined_eyesim --workdir=runs/gaze_refined
  python launch/refine.py --checkpoint=runs/eyesim --data=image_folder/35x55x1 --format=png \
      --out=runs/refined_mine

or from Python::

  out = refine.refine_dataset(refine.load_config("runs/eyesim"), "runs/eyesim", "eyesim", "runs/r",
                              num_examples=100_000)

Input (``data_spec``, the syntax of ``tasks.data.data_config``):

* ``eyesim``: the built-in simulator, ``num_examples`` images; image ``i`` is
  rendered from ``fold_in(PRNGKey(seed), i)`` (reproducible), with all its
  labels. The scene ranges are those of ``config.synthetic_data`` when it is the
  simulator (what the refiner was trained on);
* a finite set (``npz:PATH``, ``NAME[/CONFIG][:SPLIT]``, ``tfds:PATH[:SPLIT]``,
  ``eyesim_target:validation|test``): refined in its stored order, all of it or
  the first ``num_examples``, with all its numeric labels and its ``file_name``
  when it has one. An ``image_folder`` set is refined in the order the builder
  read the user's folder (sorted relative paths), not in its prepared
  (shuffled) order, so ``index`` is the position among the user's files.

Output (``format``):

* ``tfds``: ``out_dir`` itself is a TFDS dataset folder (array_record, split
  ``train``, examples in input order; read it with ``tfds.builder_from_directory``
  or the ``tfds:OUT`` spec). Features: ``image`` (the refined image, uint8), every
  input label unchanged (same dtype, bit-for-bit), ``index`` (int64 position in the
  input), ``file_name`` (text, when the input has it) and, with ``keep_synthetic``,
  ``synthetic`` (the input image, its dtype);
* ``png``: ``out_dir`` holds one PNG per image under the input's own relative
  file name with the suffix ``.png`` (``eyes/a.jpg`` -> ``eyes/a.png``); inputs
  without unique file names (the simulator, npz, most prepared sets) get
  index-based names (``000017.png``). ``labels.csv`` (``filename,<label>,...``, one
  row per image in input order; an ``image_folder`` set's own header and label
  names) carries the labels over, so ``out_dir`` can be prepared again with
  ``launch/prepare_data.py --dataset=image_folder``. Values are written as the
  shortest text that reads back to the same float32/float64/int; columns an
  ``image_folder`` set wrote as integers stay integers (``refine_png.py``).

Resuming: the input is cut into chunks of ``chunk_size`` examples; each finished
chunk is written atomically to ``OUT/_chunks/`` and ``OUT/refine_manifest.json``
records the settings (checkpoint and step, data, counts, seed). A rerun skips
finished chunks, refuses an ``OUT`` made with other settings, and on a finished
``OUT`` does nothing. At the end the chunks become the TFDS dataset and are deleted.

Parallelism: each chunk is sharded over this process's devices (one compiled
shape: the last chunk is padded). With several processes, process ``p`` refines
chunks ``c`` with ``c % process_count == p`` and process 0 writes the dataset, so
``OUT`` must be on a filesystem shared by all hosts.

``refine_arrays`` refines in-memory images with the same compiled function.
Modules: the inputs and compiled calls are in ``refine_input.py``, the chunks,
manifest and dataset building in ``refine_store.py``, the PNG output in
``refine_png.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from simgan_jax import checkpoints
from simgan_jax import metric_writer
from simgan_jax import models
from simgan_jax import parallel
from simgan_jax import preemption
from simgan_jax.refining import pretrained
from simgan_jax import training
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.refining import refine_input as inputs
from simgan_jax.refining import refine_png
from simgan_jax.refining import refine_store as store
from simgan_jax.refining.refine_store import CHUNKS, MANIFEST, is_done, num_examples, read_manifest  # noqa: F401 (refine.X)
from simgan_jax.refining.refine_png import LABELS_CSV, png_names  # noqa: F401 (refine.X, as before)
from simgan_jax.probe import selection

AXIS = parallel.AXIS
FORMATS = ("tfds", "png")
DEFAULT_CHUNK_SIZE = 4096
_PROGRESS_SECONDS = 10.0


# ----------------------------------------------------------------------------- config and params


def _tuples(value):
  """JSON lists back to the tuples the configs use (e.g. ``lr_decay_steps``)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_config(checkpoint_dir: str) -> ml_collections.ConfigDict:
  """The SimGAN config that ``train.py`` saved as ``checkpoint_dir/config.json``
  (``checkpoint_dir`` may be ``pretrained:NAME``, a refiner shipped in the package)."""
  checkpoint_dir = pretrained.resolve(checkpoint_dir)
  _check_workdir(checkpoint_dir)
  path = os.path.join(checkpoint_dir, "config.json")
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(_tuples(json.load(f)))
  except FileNotFoundError:
    raise ConfigError(f"--checkpoint {checkpoint_dir}: no config.json (not a SimGAN workdir?); "
                      "pass --config") from None
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path}: cannot read the config ({e})") from None


def _check_workdir(checkpoint_dir: str) -> None:
  if not os.path.isdir(checkpoint_dir):
    raise ConfigError(f"--checkpoint {checkpoint_dir}: no such directory")


def saved_steps(checkpoint_dir: str) -> list[int]:
  """Steps with a checkpoint folder in ``checkpoint_dir/checkpoints`` (orbax's layout)."""
  directory = os.path.join(checkpoint_dir, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(n) for n in names if n.isdigit())


def _check_has_checkpoint(config, checkpoint_dir: str, step: int | None) -> None:
  steps = saved_steps(checkpoint_dir)
  if not steps:
    every = config.get("checkpoint_every")
    total = sum(int(config.get(k, 0)) for k in ("refiner_pretrain_steps", "discriminator_pretrain_steps",
                                                "num_iterations"))
    first = f"; the first is written at step {min(every, total) if total else every}" if every else ""
    raise ConfigError(f"--checkpoint {checkpoint_dir}: no checkpoint in {checkpoint_dir} yet{first}")
  if step is not None and step not in steps:
    raise ConfigError(f"--step {step}: no checkpoint for that step in {checkpoint_dir} "
                      f"(saved steps: {', '.join(map(str, steps))})")


def restore_refiner(config, checkpoint_dir: str, step: int | None = None) -> tuple[Any, int]:
  """(refiner params as host arrays, their step) from a SimGAN workdir or a shipped
  refiner (``pretrained:NAME``: one step only, so ``step`` must be None or it)."""

  checkpoint_dir = pretrained.resolve(checkpoint_dir)
  _check_workdir(checkpoint_dir)
  if pretrained.is_pretrained(checkpoint_dir):
    params, saved = pretrained.load_refiner(config, checkpoint_dir)
    if step is not None and step != saved:
      raise ConfigError(f"--step {step}: {checkpoint_dir} holds the refiner of step {saved} only")
    return params, saved
  _check_has_checkpoint(config, checkpoint_dir, step)
  try:
    state = checkpoints.restore_train_state(config, checkpoint_dir, step)
  except FileNotFoundError as e:
    raise ConfigError(str(e)) from None
  # Replicated: every process reads its own copy.
  host = lambda x: np.asarray(x.addressable_data(0))  # noqa: E731
  return jax.tree.map(host, training.inference_refiner_params(state)), int(host(state.step))


def refine_arrays(config, params, images: np.ndarray, mesh: Mesh | None = None,
                  chunk: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
  """Refined uint8 images [N, H, W, C] of host images (uint8, or float in [-1, 1]).

  The images go through in chunks of ``chunk`` (rounded up to a multiple of the
  devices; the last one padded), each sharded over ``mesh``'s batch axis
  (default: this process's devices); the compiled function is cached per
  (refiner, mesh), so repeated calls with the same chunk compile once.
  ``params``: the refiner's params, host arrays or replicated on ``mesh``.
  """
  mesh = mesh or parallel.local_mesh(config.get("num_devices", 0))
  images = np.asarray(images)
  if images.ndim != 4:
    raise DataError(f"refine_arrays: expected images [N, H, W, C], got shape {images.shape}")
  if not len(images):
    return np.zeros(images.shape, np.uint8)
  fn = inputs.array_fn(models.make_refiner(config), mesh)
  params = inputs.replicate(params, mesh)
  size = inputs.padded(len(images), chunk, mesh)
  outputs = [fn(params, inputs.shard(images[s:s + size], size, mesh),
                inputs.shard(np.arange(s, s + size, dtype=np.int32), size, mesh))
             for s in range(0, len(images), size)]
  return np.concatenate([np.asarray(o) for o in outputs])[:len(images)]


def refine_dataset(config, checkpoint_dir: str, data_spec: str, out_dir: str, *, num_examples: int = 0,
                   step: int | str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE, seed: int = 0,
                   keep_synthetic: bool = False, data_dir: str = "", cache_dir: str = "",
                   progress: bool = True, on_chunk: Callable[[int], None] | None = None,
                   format: str = "tfds") -> str:  # pylint: disable=redefined-builtin
  """Refines ``data_spec`` with the refiner of ``checkpoint_dir`` into ``out_dir``.

  Returns ``out_dir``: a TFDS dataset folder (``format="tfds"``) or a folder of
  PNG files with ``labels.csv`` (``format="png"``); see the module docstring.
  ``config``: the SimGAN config of the run (``load_config(checkpoint_dir)``).
  ``step``: the checkpoint (default: newest), or ``"best"``: the lowest
  ``selection_score`` in ``metrics.jsonl`` among the checkpoints on disk
  (``probe/selection.py``). ``num_examples``: images to render
  from the simulator, or the first N of a finite set (0 = all). ``data_dir`` /
  ``cache_dir``: where prepared TFDS datasets and the target-domain cache live.
  ``on_chunk(chunk_index)`` is called after each chunk is saved (for tests).
  """
  if not isinstance(chunk_size, int) or chunk_size <= 0:
    raise ConfigError(f"--chunk_size: must be an integer > 0, got {chunk_size!r}")
  if num_examples < 0:
    raise ConfigError(f"--num_examples: must be >= 0, got {num_examples}")
  if format not in FORMATS:
    raise ConfigError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")

  checkpoint_dir = pretrained.resolve(checkpoint_dir)
  _check_workdir(checkpoint_dir)
  if pretrained.is_pretrained(checkpoint_dir) and str(step) == "best":
    step = None  # a shipped refiner is one (selected) checkpoint
  step = selection.resolve_step(config, checkpoint_dir, step)
  params, step = restore_refiner(config, checkpoint_dir, step)
  mesh = parallel.local_mesh(config.get("num_devices", 0))
  source = inputs.Input(config, data_spec, num_examples, seed, keep_synthetic, mesh, chunk_size, data_dir, cache_dir)
  manifest = {"checkpoint": os.path.abspath(checkpoint_dir), "step": step, "data": data_spec,
              "num_examples": source.num, "chunk_size": chunk_size, "keep_synthetic": bool(keep_synthetic),
              "image_shape": [config.image_height, config.image_width, config.channels],
              "format": format}
  if source.simulator is not None:
    manifest["seed"] = int(seed)
  log = (lambda line: print(line, file=sys.stderr, flush=True)) if (
      progress and jax.process_index() == 0) else (lambda line: None)
  try:
    os.makedirs(out_dir if is_done(out_dir) else os.path.join(out_dir, CHUNKS), exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--out {out_dir}: not writable ({e.strerror or e})") from None
  store.check_manifest(out_dir, manifest)
  if is_done(out_dir):
    log(f"refine: {out_dir} is already done ({source.num} images); nothing to do")
    return out_dir
  store.sync("refine:manifest")

  num_chunks = -(-source.num // chunk_size)
  mine = [c for c in range(num_chunks) if c % jax.process_count() == jax.process_index()]
  todo = [c for c in mine if not os.path.exists(store.chunk_path(out_dir, c))]
  log(f"refine: {source.num} images from {data_spec} with {checkpoint_dir} step {step}, "
      f"{num_chunks} chunks of {chunk_size} ({len(mine) - len(todo)} done before) on "
      f"{mesh.devices.size} device(s) x {jax.process_count()} process(es) -> {out_dir}")
  params = inputs.replicate(params, mesh)
  done_images = 0
  # Live on a terminal; in a log file a line every _PROGRESS_SECONDS or 10%, then the total.
  bar = metric_writer.Progress("refine", sum(min(chunk_size, source.num - c * chunk_size) for c in todo),
                               "images", enabled=progress and jax.process_index() == 0,
                               every_s=_PROGRESS_SECONDS)

  def finish(chunk, pending):
    nonlocal done_images
    store.write_npz(store.chunk_path(out_dir, chunk), source.fetch(pending))
    done_images += pending[1] - pending[0]
    if on_chunk is not None:
      on_chunk(chunk)
    bar.update(done_images)

  def stop_if_asked(signals, chunk):
    # SIGTERM/SIGINT: stop after the chunk just saved (chunks are written whole, by
    # rename), drop the one in flight, say what is kept. With several processes each
    # stops after its own chunk; a rerun refines only the missing ones.
    if signals.signum:
      bar.close(" before the stop")
      kept = sum(os.path.exists(store.chunk_path(out_dir, c)) for c in range(num_chunks))
      raise preemption.Stopped(signals.signum, chunk, os.path.join(out_dir, CHUNKS), what=(
          f"after chunk {chunk}; {kept} of {num_chunks} chunks saved in {os.path.join(out_dir, CHUNKS)}"))

  previous = None
  with preemption.StopSignals() as signals:
    for chunk in todo:
      # The next chunk is dispatched before the previous one is read back and saved.
      pending = source.dispatch(params, chunk * chunk_size, min((chunk + 1) * chunk_size, source.num))
      if previous is not None:
        finish(*previous)
        stop_if_asked(signals, previous[0])
      previous = (chunk, pending)
    if previous is not None:
      finish(*previous)
  if todo:
    bar.close()

  store.sync("refine:chunks")
  if jax.process_index() == 0:
    if format == "png":
      refine_png.write_png_folder(out_dir, [store.chunk_path(out_dir, c) for c in range(num_chunks)],
                                  source.label_names, source.label_format)
      store.write_json(os.path.join(out_dir, MANIFEST), {**manifest, "finished": True})  # marks it done
    else:
      with np.load(store.chunk_path(out_dir, 0)) as f:
        features = store.feature_spec({k: f[k] for k in f.files})
      metadata = {"refine": manifest, **({"label_names": source.label_names} if source.label_names else {}),
                  **({"label_format": source.label_format} if source.label_format else {})}
      store.build_dataset(out_dir, num_chunks, features, metadata)
    shutil.rmtree(os.path.join(out_dir, CHUNKS), ignore_errors=True)
    log(f"refine: wrote {source.num} images to {out_dir}")
  store.sync("refine:dataset")
  return out_dir
