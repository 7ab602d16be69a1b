"""Whole-state checkpoints with orbax: params, optimiser states, history, keys, step.

Because the state holds the history buffer, the root key and the step (from which
every batch is derived), a resumed run continues exactly as if never stopped.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
  # Synchronous saves: the train step donates the state's buffers, so the arrays
  # must be safely copied out before the next step is dispatched.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, like_state):
  """The newest checkpoint restored onto ``like_state``'s shapes and shardings, or None."""
  step = mngr.latest_step()
  if step is None:
    return None
  return mngr.restore(step, args=ocp.args.StandardRestore(_abstract(like_state)))


def _abstract(tree):
  return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else ocp.utils.to_shape_dtype_struct(x), tree)


def restore(workdir: str, like_state, step: int | None = None):
  """Restores ``step`` (default: newest) from ``workdir`` onto ``like_state`` (arrays or
  ShapeDtypeStructs with shardings), in any process, e.g. a notebook."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory}: no checkpoints (is --workdir/--checkpoint a training workdir?)")
  mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
  step = mngr.latest_step() if step is None else step
  if step is None or step not in mngr.all_steps():
    raise FileNotFoundError(f"{directory}: no checkpoint for step {step} (have: {mngr.all_steps()})")
  return mngr.restore(step, args=ocp.args.StandardRestore(_abstract(like_state)))
