"""Shared by the launch scripts: quiet console, one-line errors, compilation cache, multi-host.

Importing this module filters other libraries' log lines and warnings
(``simgan_jax.quiet``) unless ``--verbose`` is on the command line; ``run(main)``
then turns every error (bad flags, unknown config fields, missing config files,
unknown variants, errors raised by the library) into one ``error: ...`` line on
stderr and exit status 1, with the traceback only under ``--verbose``, and turns
on JAX's persistent compilation cache (``--compilation_cache``).
"""

import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from simgan_jax import quiet  # pylint: disable=g-import-not-at-top,wrong-import-position


def _verbose_in_argv(argv) -> bool:
  """--verbose / --debug as given on the command line (flags are parsed only later)."""
  verbose = False
  for arg in argv[1:]:
    name, _, value = arg.lstrip("-").partition("=")
    if name in ("verbose", "debug"):
      verbose = value.lower() not in ("false", "0", "no")
    elif name in ("noverbose", "nodebug"):
      verbose = False
  return verbose


if not _verbose_in_argv(sys.argv):
  quiet.install()

_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (cluster from the environment, "
    "or from --coordinator_address/--num_processes/--process_id). Also done when "
    "JAX_COORDINATOR_ADDRESS is set.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show other libraries' log lines and warnings, and "
                             "full tracebacks instead of one-line errors.")
flags.DEFINE_alias("debug", "verbose")
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled XLA programs on disk (JAX's persistent compilation "
    "cache), so a rerun skips most compilation. --nocompilation_cache turns it off.")
_COMPILATION_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", "", "Where ('' = $JAX_COMPILATION_CACHE_DIR, else "
    "$SIMGAN_JAX_CACHE/xla, else ~/.cache/simgan_jax/xla).")


def say(line: str) -> None:
  """A console line of the launch script (stdout, flushed); only process 0 of a
  multi-process run speaks (before jax.distributed is up, --process_id tells)."""
  if _PROCESS_ID.value:
    return
  print(line, flush=True)


def fail(line: str) -> None:
  """Prints ``error: line`` (one line) and exits with status 1."""
  print(f"error: {' '.join(str(line).split())}", file=sys.stderr, flush=True)
  sys.exit(1)


# ----------------------------------------------------------------------------- config flags


def _override_flag(field: str, argv) -> str:
  """The --config.a.b override on the command line whose last part is ``field``."""
  for arg in argv[1:]:
    name = arg.split("=", 1)[0].lstrip("-")
    if "." in name and name.rsplit(".", 1)[1] == field:
      return "--" + name
  return f"--config...{field}"


def config_error_line(e: BaseException, argv=None) -> str:
  """One line for an error raised while loading a config file or applying --config.X=V."""
  argv = sys.argv if argv is None else argv
  text = str(e)
  if isinstance(e, (KeyError, AttributeError)):
    # ml_collections: "'fiel'\nDid you mean "field" instead of "fiel"?" (as a repr).
    match = re.search(r'Did you mean \\?"([^"\\]+)\\?" instead of \\?"([^"\\]+)\\?"', text)
    if match:
      return f"{_override_flag(match.group(2), argv)}: no such config field; did you mean {match.group(1)!r}?"
    field = re.sub(r"[\"'\\]", "", text).strip()
    return f"{_override_flag(field, argv)}: no such config field {field!r}"
  if "Error whilst parsing config file" in text:
    # The config file's own error, as the last line of the traceback ml_collections quotes.
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    return re.sub(r"^\w+(Error|Exception): ", "", last)
  if "Failed loading config file" in text:
    path = re.search(r"Attempted \[[^\]]*\]:\s*(\S+)", text)
    reason = re.search(r"\[Errno \d+\] ([^:\n]+)", text)
    return f"config file {path.group(1) if path else '?'}: {reason.group(1).lower() if reason else 'cannot load it'}"
  return text


# absl's words for a bad flag value -> plain ones.
_FLAG_MESSAGES = (
    (r"^flag --(\S+?)=None: Flag --\S+ must have a value other than None\.?$", r"--\1 is required"),
    (r"^flag --(\S+?)=(.*): invalid literal for int\(\) with base 10: .*$", r"--\1=\2: not an integer"),
    (r"^flag --(\S+?)=(.*): could not convert string to float: .*$", r"--\1=\2: not a number"),
    (r"^flag --(\S+?)=(.*): value should be one of (.*)$", r"--\1=\2: expected one of \3"),
    (r"^flag (--\S+?=.*?): (.*)$", r"\1: \2"),
)


def flag_error_line(text: str) -> str:
  text = " ".join(text.split())
  for pattern, replacement in _FLAG_MESSAGES:
    if re.match(pattern, text):
      return re.sub(pattern, replacement, text)
  return text


def define_config_file(name: str, default: str | None, help_string: str):
  """config_flags.DEFINE_config_file (locked), with one-line errors for bad --NAME.X overrides.

  The default config is loaded and overridden as the flag is defined (at import
  time), so its errors are caught here; an explicit --NAME is loaded while flags
  are parsed (caught by ``run``).
  """
  try:
    holder = config_flags.DEFINE_config_file(name, default, help_string, lock_config=True)
  except Exception as e:  # pylint: disable=broad-except
    if _verbose_in_argv(sys.argv):
      raise
    fail(config_error_line(e))
  _CONFIG_FLAGS.append(name)
  return holder


_CONFIG_FLAGS: list[str] = []


def _check_config_flags() -> None:
  """A config file that failed to load raises only when read: read it now."""
  for name in _CONFIG_FLAGS:
    value = flags.FLAGS[name].value
    if value is not None:
      getattr(value, "is_locked", None)  # raises for ml_collections' error placeholder


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if _verbose_in_argv(argv):
      raise
    text = str(e)
    # A config file's own error comes wrapped in a flag error with its traceback.
    if "Error whilst parsing config file" in text or "Failed loading config file" in text:
      fail(config_error_line(e, argv))
    fail(f"{flag_error_line(text)} (see --helpshort)")
  except Exception as e:  # pylint: disable=broad-except
    if _verbose_in_argv(argv):
      raise
    fail(config_error_line(e, argv))


# ----------------------------------------------------------------------------- start-up


def verbose() -> bool:
  return _VERBOSE.value


def config_name(flag: str) -> str:
  """The config file (with its variant) that ``--flag`` names."""
  return config_flags.get_config_filename(flags.FLAGS[flag])


def cache_on() -> bool:
  return _COMPILATION_CACHE.value


def compilation_cache_dir() -> str:
  return os.path.expanduser(_COMPILATION_CACHE_DIR.value or os.environ.get("JAX_COMPILATION_CACHE_DIR") or
                            os.path.join(os.environ.get("SIMGAN_JAX_CACHE") or "~/.cache/simgan_jax", "xla"))


def _enable_compilation_cache() -> None:
  if not _COMPILATION_CACHE.value:
    if "jax" in sys.modules:
      sys.modules["jax"].config.update("jax_compilation_cache_dir", None)
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    return
  path = compilation_cache_dir()
  os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # read when jax is imported
  if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_compilation_cache_dir", path)


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
  """absl's app.run, with the quiet console, the compilation cache and one-line errors."""

  def wrapped(argv):
    verbose = _VERBOSE.value
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.INFO if verbose else logging.WARNING)
    if not verbose:
      quiet.install()  # again: app.run has attached absl's handler by now
    _enable_compilation_cache()
    try:
      _check_config_flags()
      return main(argv)
    except app.UsageError:
      raise
    except KeyboardInterrupt:
      if verbose:
        raise
      print("\ninterrupted (Ctrl-C)", file=sys.stderr, flush=True)
      sys.exit(130)
    except Exception as e:  # pylint: disable=broad-except
      if verbose:
        raise
      # A loop stopped by SIGTERM/SIGINT after saving: its one line and 128 + the signal,
      # as if killed by it, so schedulers see a preemption. Looked up, not imported:
      # simgan_jax.preemption imports jax, which must not start before distributed init.
      preemption = sys.modules.get("simgan_jax.preemption")
      if preemption is not None and isinstance(e, preemption.Stopped):
        print(e, file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
      if isinstance(e, OSError) and "Failed loading config file" in str(e):
        fail(config_error_line(e))
      line = str(e) or type(e).__name__
      if not isinstance(e, (ValueError, FloatingPointError, OSError)):
        # Not one of the errors the library raises on bad input: say what it was.
        line = f"{type(e).__name__}: {line} (rerun with --verbose for the traceback)"
      fail(line)

  app.run(wrapped, flags_parser=_parse_flags)
