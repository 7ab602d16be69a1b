"""Shared by the launch scripts: multi-host flags and one-line errors."""

import os
import sys

from absl import app
from absl import flags
from absl import logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (cluster from the environment, "
    "or from --coordinator_address/--num_processes/--process_id). Also done when "
    "JAX_COORDINATOR_ADDRESS is set.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def maybe_initialize_distributed() -> None:
  """jax.distributed.initialize when asked; must run before any other JAX call."""
  if not (_MULTIHOST.value or _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS")):
    return
  import jax  # pylint: disable=g-import-not-at-top

  if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
    # Cross-process collectives on CPU go through gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                             process_id=_PROCESS_ID.value)


def run(main) -> None:
  """absl's app.run, turning the project's expected errors into one line on stderr."""

  def wrapped(argv):
    if not _DEBUG.value:
      logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
      return main(argv)
    except (ValueError, FloatingPointError, FileNotFoundError, PermissionError) as e:
      if _DEBUG.value:
        raise
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(wrapped)
