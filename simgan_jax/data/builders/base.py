"""Shared machinery of the dataset builders: bad-file errors, skips, configs.

Every builder reads the user's downloaded files from ``manual_dir`` and writes
``array_record`` files with plain ``Tensor`` features, so neither preparing nor
reading needs TensorFlow (``tfds.features.Image`` would: it encodes with TF).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import os
import pathlib
from typing import Any, Iterable, Iterator

from etils import epath
import tensorflow_datasets as tfds

from simgan_jax import errors
from simgan_jax import metric_writer


class BadFileError(errors.DataError):
  """A source file is missing, unreadable or not in the expected format."""

  def __init__(self, path: Any, expected: str):
    self.path = str(path)
    self.expected = " ".join(str(expected).split())  # always one line
    super().__init__(f"{self.path}: {self.expected}")


@dataclasses.dataclass(frozen=True)
class Skip:
  """One bad file left out under ``skip_bad_files``, and why."""

  split: str
  path: str
  reason: str


def default_data_dir() -> str:
  """Where prepared datasets go unless told otherwise (TFDS's own default)."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def source_record(manual_dir) -> dict[str, Any]:
  """What a prepared dataset records about the folder it was built from.

  The fingerprint is a SHA-256 of the sorted list of every file under
  ``manual_dir`` (symlinks followed) as ``relative path, size in bytes, mtime in
  ns``: no file is read, so it is fast on millions of files, and it changes
  when a file is added, removed, renamed, resized or rewritten (a new mtime);
  a copy that keeps mtimes (``cp -p``, ``rsync -a``) keeps it.
  """
  root = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
  digest, count, size = hashlib.sha256(), 0, 0
  for folder, dirs, files in os.walk(root, followlinks=True):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(folder, name)
      try:
        stat = os.stat(path)
      except OSError:
        continue  # a dangling link: not a file the builders can read either
      relative = os.path.relpath(path, root).replace(os.sep, "/")
      digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
      count, size = count + 1, size + stat.st_size
  return {"manual_dir": root, "fingerprint": digest.hexdigest(), "files": count, "bytes": size}


def source_suffix(record: dict[str, Any]) -> str:
  """The suffix naming a builder config prepared from ``record``'s folder."""
  return "_src" + record["fingerprint"][:8]


def derive_config(builder_cls, base: str | None = None, **overrides) -> tfds.core.BuilderConfig:
  """A builder config: ``base`` (or the default) with ``overrides`` applied.

  Overridden configs get a name that spells out the overrides (for example
  ``crop_height36_width60``) so that readers find them by name on disk.
  """
  configs = {c.name: c for c in builder_cls.BUILDER_CONFIGS}
  base = base or builder_cls.BUILDER_CONFIGS[0].name
  if base not in configs:
    raise errors.ConfigError(
        f"{builder_cls.name}: unknown builder config {base!r}; known: {', '.join(configs)}")
  config = configs[base]
  fields = {f.name: f for f in dataclasses.fields(config)}
  changed = {}
  for key, value in overrides.items():
    if key not in fields or key in ("name", "version", "description"):
      raise errors.ConfigError(f"{builder_cls.name}: config has no field {key!r}; fields: "
                               f"{', '.join(_option_fields(config))}")
    default = getattr(config, key)
    try:
      value = _coerce(value, default)
    except (ValueError, SyntaxError, TypeError):
      raise errors.ConfigError(f"{builder_cls.name}: {key}={value!r}; expected a value like "
                               f"the default {default!r}") from None
    if value != default:
      changed[key] = value
  if not changed:
    return config
  changes = ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
  config = dataclasses.replace(config, description=f"{config.description or base}; changed: {changes}",
                               **changed)
  name = builder_cls.config_name(config)
  if name is None:
    name = base + "_" + "_".join(f"{k}{_name_part(v)}" for k, v in sorted(changed.items()))
  return dataclasses.replace(config, name=name)


def _option_fields(config) -> list[str]:
  base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
  return [f.name for f in dataclasses.fields(config) if f.name not in base]


def _coerce(value, like):
  """Parses a command-line string into the type of the config's default."""
  if not isinstance(value, str) or isinstance(like, str):
    return tuple(value) if isinstance(like, tuple) else type(like)(value)
  if isinstance(like, bool):
    if value.lower() not in ("true", "false", "1", "0"):
      raise ValueError(value)
    return value.lower() in ("true", "1")
  parsed = ast.literal_eval(value)
  if isinstance(like, tuple):
    return tuple(parsed) if isinstance(parsed, (tuple, list)) else (parsed,)
  return type(like)(parsed)


def _name_part(value) -> str:
  if isinstance(value, tuple):
    return "-".join(_name_part(v) for v in value)
  if isinstance(value, bool):
    return str(value).lower()
  return str(value).replace(".", "p")


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder of files the user downloads by hand into ``manual_dir``.

  Subclasses define ``_features()``, ``_list_items(manual_dir)`` (split -> list
  of work items), ``_examples(split, item)`` (work item -> ``(key, example)``
  pairs, raising ``BadFileError`` for a bad file) and optionally
  ``_finish(split)``. A bad item either
  stops the build or, with ``skip_bad_files=True``, is recorded in
  ``self.skipped`` and in the dataset's ``metadata.json``: never dropped
  silently.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  DESCRIPTION = ""
  HOMEPAGE = ""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default resolves package resources through `importlib_resources`,
    # a backport that is not installed (and not needed: this is a plain file).
    return epath.Path(inspect.getfile(cls))

  @classmethod
  def config_name(cls, config) -> str | None:
    """The name of a derived config, or None for ``<base>_<field><value>...``."""
    del config
    return None

  def __init__(self, *, skip_bad_files: bool = False, progress: bool = False, **kwargs):
    self.skip_bad_files = skip_bad_files
    self.progress = progress
    self.skipped: list[Skip] = []
    self.notes: list[str] = []
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict(self._features()),
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(),
    )

  def _features(self) -> dict[str, Any]:
    raise NotImplementedError

  def _list_items(self, manual_dir: pathlib.Path) -> dict[str, list[Any]]:
    raise NotImplementedError

  def _examples(self, split: str, item: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    raise NotImplementedError

  def _split_generators(self, dl_manager):
    # A local pathlib.Path: builders walk folders recursively (epath refuses `**`).
    manual_dir = pathlib.Path(os.fspath(getattr(dl_manager, "_manual_dir", None) or ""))
    if not manual_dir.is_dir():
      raise BadFileError(manual_dir, f"manual_dir does not exist; expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    if not any(manual_dir.iterdir()):
      raise BadFileError(manual_dir, f"manual_dir is empty; expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    self._manual_dir = manual_dir
    if getattr(self, "source", None):  # set by prepare(); saved in metadata.json
      self.info.metadata["source"] = dict(self.source)
    items = self._list_items(manual_dir)
    if not items:
      raise BadFileError(manual_dir, f"nothing to prepare; expected {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return {split: self._generate_examples(split, split_items) for split, split_items in items.items()}

  def _generate_examples(self, split: str, items: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    # A live line on a terminal; in a log file a plain line every 10 s or 10% (no \r).
    bar = metric_writer.Progress(f"{self.name}/{self.builder_config.name} {split}", len(items), "files",
                                 enabled=self.progress)
    count, skipped_before = 0, len(self.skipped)
    for done, item in enumerate(items):
      bar.update(done)
      try:
        # Materialised so that a file that fails half-way adds nothing.
        examples = list(self._examples(split, item))
      except BadFileError as e:
        self.skip_or_raise(split, e)
        continue
      count += len(examples)
      yield from examples
    bar.update(len(items))
    bar.close()
    try:
      self._finish(split)
    except BadFileError as e:
      self.skip_or_raise(split, e)
    if not count:  # TFDS cannot write an empty split; say why instead
      raise BadFileError(self._manual_dir, f"no examples for split {split!r} "
                         f"({len(self.skipped) - skipped_before} bad files skipped); expected at least one")

  def _finish(self, split: str) -> None:
    """Checks after the last item of a split (e.g. listed samples never found)."""

  def skip_or_raise(self, split: str, error: BadFileError) -> None:
    """Records ``error`` as a skip under ``skip_bad_files``, else raises it."""
    if not self.skip_bad_files:
      raise error
    self.skipped.append(Skip(split, error.path, error.expected))
    # Saved with the dataset (metadata.json), so a prepared dataset says what it lacks.
    self.info.metadata.setdefault("skipped", []).append(
        {"split": split, "path": error.path, "reason": error.expected})

  def note(self, text: str) -> None:
    """A remark for the summary (files ignored on purpose, split mode)."""
    self.notes.append(text)
    self.info.metadata.setdefault("notes", []).append(text)
