"""Whole-state checkpoints with orbax: params, optimiser states, history, keys, step.

Because the state holds the history buffer, the root key and the step (from which
every batch is derived), a resumed run continues exactly as if never stopped.

* Kept: the newest ``max_to_keep`` checkpoints and, when scores are given at save
  time, the ``keep_best`` best-scoring ones (``score_of``: ``selection_score`` if
  present, else ``realism_kid``; lower is better; +inf or NaN is never "best").
  The scores are stored with the checkpoint (orbax ``metrics``), so the best
  survive a resume.
* Damaged checkpoints (unreadable metadata or arrays) are moved out of
  ``checkpoints/`` into ``damaged_checkpoints/`` by ``restore_newest_intact``,
  never deleted, and resuming continues from the newest intact one. Only what
  corruption raises counts as damage (``DAMAGE``: ValueError, which covers bad JSON
  and TensorStore's data-loss errors, KeyError, IndexError, EOFError and a missing
  file or folder). Any other OSError (EIO, a stale network mount, ...) is retried
  (``READ_RETRY_DELAYS``) and then raised as ``CheckpointReadError`` with nothing
  moved; MemoryError and every other exception propagate, nothing moved.
* A failed write (disk full, ...) raises ``CheckpointWriteError``; what was saved
  before is untouched (orbax writes into a temporary folder and renames it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from simgan_jax import parallel
from simgan_jax import training
from simgan_jax.errors import DataError

_ITEM = "default"  # orbax's folder for the single StandardSave item


class CheckpointWriteError(OSError):
  """A checkpoint could not be written; the message names the step, folder and cause."""


class CheckpointReadError(OSError):
  """A checkpoint could not be read for a reason other than damage (it is left in place)."""


# What reading a corrupt checkpoint raises: these alone mean "damaged".
DAMAGE = (ValueError, KeyError, IndexError, EOFError, FileNotFoundError, NotADirectoryError,
          IsADirectoryError)
# Seconds to wait before each retry of a read that failed with another OSError.
READ_RETRY_DELAYS = (0.5, 2.0, 5.0)


@dataclasses.dataclass
class ShapeMismatch(Exception):
  """A checkpoint's arrays do not fit the state this config builds."""

  step: int
  directory: str
  differences: list[str]  # "path: checkpoint (8,) float32, config (16,) float32"

  def __str__(self):
    return f"checkpoint step {self.step} in {self.directory} does not fit: {'; '.join(self.differences[:3])}"


def score_of(metrics: Any) -> float:
  """The ranking score of a checkpoint's stored scores: lower is better, inf = never best."""
  if not metrics:
    return math.inf
  value = metrics.get("selection_score", metrics.get("realism_kid", math.inf))
  try:
    value = float(value)
  except (TypeError, ValueError):
    return math.inf
  return value if math.isfinite(value) else math.inf


@dataclasses.dataclass
class _BestScored:
  """Preservation policy (orbax protocol): the first ``n`` steps of ``rank()`` (the
  selection rule, best first), or without ``rank`` the ``n`` lowest finite scores."""

  n: int
  rank: Callable[[], Sequence[int]] | None = None

  def should_preserve(self, checkpoints: Sequence[Any], *, context=None) -> list[bool]:
    del context
    if self.rank is not None:
      best_steps = set(list(self.rank())[:self.n])
      return [int(info.step) in best_steps for info in checkpoints]
    scored = sorted((score_of(info.metrics), i) for i, info in enumerate(checkpoints))
    best = {i for score, i in scored[:self.n] if math.isfinite(score)}
    return [i in best for i in range(len(checkpoints))]


def manager(workdir: str, max_to_keep: int, keep_best: int = 0,
            rank: Callable[[], Sequence[int]] | None = None) -> ocp.CheckpointManager:
  """The manager of ``workdir/checkpoints``: keeps the newest ``max_to_keep`` and the
  ``keep_best`` best checkpoints: the first of ``rank()`` (steps best first: the loop
  passes the selection rule of ``--step=best``, so keep-best never deletes its pick),
  else those with the lowest stored score (``score_of``)."""
  policies = [ocp.checkpoint_managers.LatestN(n=max_to_keep)]
  if keep_best:
    policies.append(_BestScored(keep_best, rank))
  # Synchronous saves: the train step donates the state's buffers, so the arrays
  # must be safely copied out before the next step is dispatched. best_fn makes
  # orbax write and reload the scores (``metrics``); the policy decides what stays.
  options = ocp.CheckpointManagerOptions(
      create=True, enable_async_checkpointing=False, best_fn=score_of, best_mode="min",
      preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies))
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, scores: dict[str, float] | None = None) -> None:
  """Writes ``state`` as ``step``; ``scores`` (e.g. realism_kid) rank it for keep-best.

  Raises CheckpointWriteError on an OSError (disk full, permissions); the partial
  temporary folder of this step is removed, earlier checkpoints are untouched.
  """
  try:
    mngr.save(step, args=ocp.args.StandardSave(state), metrics=dict(scores or {}), force=True)
    mngr.wait_until_finished()
  except OSError as e:
    directory = str(mngr.directory)
    if jax.process_index() == 0:
      for name in os.listdir(directory) if os.path.isdir(directory) else ():
        if name.startswith(f"{step}.orbax-checkpoint-tmp"):
          shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    mngr.reload()
    kept = mngr.all_steps()
    newest = f"newest kept: step {max(kept)}" if kept else "none saved before"
    raise CheckpointWriteError(
        f"could not write checkpoint step {step} in {directory}: {e.strerror or e}; checkpoints saved "
        f"before are kept ({newest})") from None


def _abstract(tree):
  return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else ocp.utils.to_shape_dtype_struct(x), tree)


def _path_str(path) -> str:
  parts = []
  for k in path:
    parts.append(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))))
  return ".".join(parts)


def _shapes(tree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_str(p): (tuple(x.shape), np.dtype(x.dtype).name) for p, x in leaves}


def _check_fits(step_dir: epath.Path, like_state, step: int, directory: str):
  """The stored tree's metadata; raises ShapeMismatch if it differs from ``like_state``;
  lets errors reading the metadata (a damaged checkpoint) propagate."""
  metadata = ocp.StandardCheckpointHandler().metadata(step_dir / _ITEM)
  stored, wanted = _shapes(metadata.tree), _shapes(like_state)
  differences = []
  # Parameters first: they are what a reader recognises.
  for path in sorted(set(stored) | set(wanted), key=lambda p: ("_params." not in p, p)):
    a, b = stored.get(path), wanted.get(path)
    if a != b:
      show = lambda v: "absent" if v is None else f"{v[0]} {v[1]}"  # noqa: E731
      differences.append(f"{path}: checkpoint {show(a)}, config {show(b)}")
  if differences:
    raise ShapeMismatch(step, directory, differences)
  return metadata.tree


def _absent_empty_fields(like_state, stored_tree) -> tuple[str, ...]:
  """Fields of a dataclass state that hold no arrays (``{}`` when a feature is off, e.g.
  ``refiner_ema_params``) and that a checkpoint written before the field existed lacks:
  such checkpoints still restore, with the field as in ``like_state``."""
  if not dataclasses.is_dataclass(like_state) or not isinstance(stored_tree, dict):
    return ()
  return tuple(f.name for f in dataclasses.fields(like_state)
               if f.name not in stored_tree and not jax.tree.leaves(getattr(like_state, f.name)))


def _short(e: BaseException) -> str:
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  text = text.split(". See full TensorStore details")[0]
  if len(text) > 120:
    text = text[:117] + "..."
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _agree_all_ok(ok: bool) -> bool:
  """True only if ``ok`` on every process (one tiny all-gather when there are several)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return bool(np.all(multihost_utils.process_allgather(np.array([int(ok)], np.int32))))


def _read(mngr_or_none, directory: epath.Path, step: int, like_state):
  absent = _absent_empty_fields(like_state, _check_fits(directory / str(step), like_state, step, str(directory)))
  item = like_state if not absent else {f.name: getattr(like_state, f.name)
                                        for f in dataclasses.fields(like_state) if f.name not in absent}
  if mngr_or_none is not None:
    restored = mngr_or_none.restore(step, args=ocp.args.StandardRestore(_abstract(item)))
  else:
    restored = ocp.StandardCheckpointHandler().restore(directory / str(step) / _ITEM,
                                                       args=ocp.args.StandardRestore(_abstract(item)))
  return like_state.replace(**restored) if absent else restored


def _kind(e: BaseException) -> str:
  """"damage", "transient" or "other", from ``e`` and the errors it was raised from
  (orbax re-raises TensorStore's ValueError as a bare Exception)."""
  chain, seen = [], set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    chain.append(e)
    e = e.__cause__ or e.__context__
  if any(isinstance(x, DAMAGE) for x in chain):
    return "damage"
  if any(isinstance(x, OSError) for x in chain):
    return "transient"
  return "other"


def _try_restore(mngr_or_none, directory: epath.Path, step: int, like_state):
  """(state, None), or (None, error text) for a damaged checkpoint (``DAMAGE``).

  ShapeMismatch propagates; another OSError is retried after each of
  ``READ_RETRY_DELAYS`` and then raised as CheckpointReadError; anything else
  (MemoryError, a bug) propagates: none of these says the checkpoint is damaged.
  """
  for attempt in range(len(READ_RETRY_DELAYS) + 1):
    try:
      return _read(mngr_or_none, directory, step, like_state), None
    except ShapeMismatch:
      raise
    except Exception as e:  # pylint: disable=broad-except
      kind = _kind(e)
      if kind == "damage":
        return None, _short(e)
      if kind != "transient":
        raise
      if attempt == len(READ_RETRY_DELAYS):
        raise CheckpointReadError(
            f"could not read checkpoint step {step} in {directory} ({_short(e)}) after "
            f"{attempt + 1} tries; it is not damaged as far as we can tell and was left in place: "
            "run again when the file system answers") from None
      time.sleep(READ_RETRY_DELAYS[attempt])


def _move_aside(directory: epath.Path, step: int) -> str:
  """Moves a damaged step folder to ``../damaged_checkpoints/<step>[-n]``; returns the path."""
  target_root = os.path.join(os.path.dirname(str(directory)), "damaged_checkpoints")
  target = os.path.join(target_root, str(step))
  n = 1
  while os.path.exists(target):
    target, n = os.path.join(target_root, f"{step}-{n}"), n + 1
  if jax.process_index() == 0:
    os.makedirs(target_root, exist_ok=True)
    os.rename(os.path.join(str(directory), str(step)), target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(f"simgan_jax damaged checkpoint {step}")
  return target


def restore_newest_intact(mngr: ocp.CheckpointManager, like_state,
                          report: Callable[[str], None] = print) -> tuple[Any, int] | None:
  """(state, step) of the newest intact checkpoint, or None when there is none.

  Each damaged checkpoint newer than it is moved to ``damaged_checkpoints/``
  (kept for inspection; a later save of the same step writes a fresh folder) and
  reported in one line. If no checkpoint can be read, nothing is moved and a
  DataError names the newest one's error (this also keeps a bug in reading from
  looking like damage). Raises ShapeMismatch if an intact checkpoint does not fit
  ``like_state`` (a config that changed shapes), without moving anything.
  """
  directory = epath.Path(mngr.directory)
  damaged = []
  for step in sorted(mngr.all_steps(), reverse=True):
    state, error = _try_restore(mngr, directory, step, like_state)
    if _agree_all_ok(error is None):
      for bad, why in damaged:
        moved = _move_aside(directory, bad)
        report(f"checkpoint step {bad} is damaged ({why}); moved to {moved}; resuming from step {step}")
      if damaged:
        mngr.reload()
      return state, step
    damaged.append((step, error or "unreadable on another process"))
  if damaged:
    bad, why = damaged[0]
    raise DataError(f"{directory}: no checkpoint can be read (newest, step {bad}: {why}); move the "
                    "folder away to start afresh")
  return None


def restore_latest(mngr: ocp.CheckpointManager, like_state):
  """The newest intact checkpoint restored onto ``like_state``'s shapes and shardings, or None."""
  restored = restore_newest_intact(mngr, like_state)
  return None if restored is None else restored[0]


def steps(workdir: str) -> list[int]:
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit() and
                os.path.isdir(os.path.join(directory, n, _ITEM)))


def restore(workdir: str, like_state, step: int | None = None, report: Callable[[str], None] = print):
  """Restores ``step`` (default: the newest intact) from ``workdir`` onto ``like_state``
  (arrays or ShapeDtypeStructs with shardings), in any process, e.g. a notebook.
  Reads only: a damaged checkpoint is reported, not moved."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory}: no checkpoints (is --workdir/--checkpoint a training workdir?)")
  have = steps(workdir)
  if not have:
    raise FileNotFoundError(f"{directory}: no checkpoint yet")
  if step is not None and step not in have:
    raise FileNotFoundError(f"{directory}: no checkpoint for step {step} (have: {have})")
  for candidate in ([step] if step is not None else sorted(have, reverse=True)):
    state, error = _try_restore(None, epath.Path(directory), candidate, like_state)
    if error is None:
      return state
    if step is not None:
      raise DataError(f"{directory}/{step}: checkpoint is damaged ({error})")
    report(f"checkpoint step {candidate} in {directory} is damaged ({error}); trying an older one")
  raise DataError(f"{directory}: every checkpoint is damaged (steps {have})")


def restore_train_state(config, workdir: str, step: int | None = None) -> training.TrainState:
  """The SimGAN train state saved in ``workdir`` (newest, or ``step``), on this process's
  devices (``train.restore_state``; e.g. in a notebook)."""
  mesh = parallel.make_mesh(config.get("num_devices", 0))
  setup = training.make_setup(config, None, None, mesh.devices.size)
  abstract = jax.eval_shape(lambda: training.init_state(setup))
  like = jax.tree.map(lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract,
                      parallel.shardings(mesh, training.state_specs(abstract)))
  return restore(workdir, like, step)
