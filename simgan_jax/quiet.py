"""Keeps other libraries' warnings and INFO lines off the console of the launch scripts.

``install()`` (called by ``launch/common.py`` at start-up unless ``--verbose``):

* Python ``logging`` records (absl, jax, orbax, TFDS, ...) below ERROR are dropped
  unless they come from this project's own files (``simgan_jax/``, ``launch/``);
  examples: TFDS's "Using custom data configuration" and "Variant folder ... has no
  dataset_info.json", orbax's ``read_only`` warnings on every restore, jax's
  "Unable to initialize backend 'tpu'" INFO line;
* Python ``warnings`` from other modules are ignored; ours are shown;
* C++ (XLA/TSL) INFO and WARNING lines: ``TF_CPP_MIN_LOG_LEVEL=2`` unless already set.

Errors (ERROR and above) from anyone still pass. Nothing is filtered in a
notebook unless it calls ``install()`` itself.
"""

from __future__ import annotations

import logging
import os
import warnings

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = (os.path.join(_ROOT, "simgan_jax") + os.sep, os.path.join(_ROOT, "launch") + os.sep)
_OUR_MODULES = r"(simgan_jax|launch|__main__)(\..*)?$"


def is_ours(pathname: str) -> bool:
  return os.path.abspath(pathname or "").startswith(OURS)


class OnlyOurs(logging.Filter):
  """Passes ERROR and above, and our own records; drops the rest."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or is_ours(record.pathname)


_FILTER = OnlyOurs()


def _handlers() -> list[logging.Handler]:
  handlers = list(logging.getLogger().handlers)
  try:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

    # Attached to the root logger by absl.app.run, perhaps after install().
    handlers.append(absl_logging.get_absl_handler())
  except ImportError:
    pass
  if logging.lastResort is not None:
    handlers.append(logging.lastResort)
  return handlers


def install() -> None:
  """Filters other libraries' console output (see the module docstring); idempotent."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read when jaxlib loads
  warnings.filterwarnings("ignore")
  warnings.filterwarnings("default", module=_OUR_MODULES)
  logging.getLogger("absl").addFilter(_FILTER)  # TFDS and orbax log through absl's logger
  for handler in _handlers():
    if _FILTER not in handler.filters:
      handler.addFilter(_FILTER)
