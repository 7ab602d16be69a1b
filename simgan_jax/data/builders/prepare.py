"""Prepares one dataset from the user's files: what ``launch/prepare_data.py`` runs."""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from simgan_jax import errors
from simgan_jax.data.builders import BUILDERS
from simgan_jax.data.builders.base import Skip, default_data_dir, derive_config, source_record, source_suffix
from simgan_jax.data.builders.image_folder import LABEL_FILES


@dataclasses.dataclass(frozen=True)
class Summary:
  """What a preparation wrote, and what it skipped and why."""

  dataset: str
  builder_config: str
  path: str
  examples: dict[str, int]
  skipped: tuple[Skip, ...]
  notes: tuple[str, ...]
  labels: tuple[str, ...] = ()  # the label columns stored (image_folder: read from labels.csv/.json)
  label_file: str = ""  # image_folder: the labels file read ('' = none)


def prepare(dataset: str, manual_dir: str, data_dir: str | None = None, *,
            builder_config: str | None = None, overrides: dict | None = None,
            skip_bad_files: bool = False, progress: bool = False) -> Summary:
  """Builds ``dataset`` from ``manual_dir`` into ``data_dir`` as array_record files.

  Args:
    dataset: a key of ``BUILDERS`` (unityeyes, mpiigaze, nyu_hand, image_folder).
    manual_dir: the folder holding the downloaded files.
    data_dir: output root (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    builder_config: a predefined config name (default: the builder's first).
    overrides: config fields to change (e.g. ``{"height": 36}``); the config's name
      then spells them out (the name to give ``builder_config`` when training).
    skip_bad_files: record bad files as skips instead of stopping at the first.
    progress: show a progress bar per split.

  The dataset records ``manual_dir`` and its fingerprint (``base.source_record``)
  in ``metadata.json``. If the config's name already holds a dataset from another
  folder (or from this folder before its files changed), this one is prepared as
  ``<name>_src<first 8 hex digits of the fingerprint>`` and a note says so; the
  training config finds it by that name or by its ``manual_dir`` field.

  Returns:
    A Summary (``builder_config`` is the name it was prepared under);
    ``format_summary`` renders it.

  Raises:
    BadFileError: a missing, misplaced or malformed file (unless skipped).
  """
  if dataset not in BUILDERS:
    raise ValueError(f"--dataset: unknown dataset {dataset!r}; known: {', '.join(sorted(BUILDERS))}")
  cls = BUILDERS[dataset]
  config = derive_config(cls, builder_config, **(overrides or {}))
  source = source_record(manual_dir)
  builder, notes = None, []
  # The config's own name, unless it holds another folder's data: then the name
  # with this folder's fingerprint (never the other folder's examples).
  for candidate in (config, dataclasses.replace(config, name=config.name + source_suffix(source))):
    builder = cls(data_dir=data_dir or default_data_dir(), config=candidate,
                  skip_bad_files=skip_bad_files, progress=progress)
    if not builder.is_prepared():
      break
    recorded = (builder.info.metadata or {}).get("source")
    if recorded and recorded.get("fingerprint") == source["fingerprint"]:
      break
    held = (f"was prepared from {recorded.get('manual_dir')} ({recorded.get('files')} files)" if recorded
            else "records no source folder (prepared by an older version)")
    notes.append(f"{builder.data_dir} {held}, not {source['manual_dir']} ({source['files']} files)")
  else:
    raise errors.DataError(f"{builder.data_dir}: holds another folder's data under this folder's "
                           f"fingerprint name; delete it to rebuild")
  config = builder.builder_config
  if notes:
    notes[-1] += f"; this folder's set is builder_config {config.name!r}"
  if builder.is_prepared():
    # TFDS never overwrites; report what the earlier run recorded.
    metadata = builder.info.metadata or {}
    skipped = tuple(Skip(**s) for s in metadata.get("skipped", []))
    notes = (*notes, f"already prepared from this folder, nothing rebuilt (delete {builder.data_dir} "
             "to rebuild)", *metadata.get("notes", []))
  else:
    builder.source = source
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=source["manual_dir"]))
    skipped, notes = tuple(builder.skipped), (*notes, *builder.notes)
  return Summary(
      dataset=dataset,
      builder_config=config.name,
      path=str(builder.data_dir),
      examples={name: split.num_examples for name, split in builder.info.splits.items()},
      skipped=skipped,
      notes=tuple(notes),
      labels=_label_columns(dataset, builder.info),
      label_file=next((n for n in LABEL_FILES if os.path.isfile(os.path.join(source["manual_dir"], n))), "")
      if dataset == "image_folder" else "",
  )


def _label_columns(dataset: str, info) -> tuple[str, ...]:
  """The names of the labels a prepared dataset holds."""
  names = (info.metadata or {}).get("label_names")
  if names:
    return tuple(names)
  if dataset == "image_folder":  # its ``label`` feature is empty without a labels file
    return ()
  return tuple(k for k in info.features if k not in ("image", "file_name"))


def parse_overrides(assignments: list[str] | None = None, **fields) -> dict:
  """``["box_scale=1.6", ...]`` plus keyword fields that are not None -> overrides."""
  overrides = {key: value for key, value in fields.items() if value is not None}
  for assignment in assignments or ():
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"--set: {assignment!r}; expected FIELD=VALUE, e.g. box_scale=1.6")
    overrides[key.strip()] = value.strip()
  return overrides


def format_summary(summary: Summary, max_listed: int = 50) -> str:
  """A human-readable report: examples per split, notes, every skipped file."""
  lines = [f"{summary.dataset} (builder_config={summary.builder_config!r}) -> {summary.path}"]
  lines += [f"  {split}: {count} examples written" for split, count in sorted(summary.examples.items())]
  if summary.labels:
    read = f" (read from {summary.label_file})" if summary.label_file else ""
    lines.append(f"  labels: {', '.join(summary.labels)}{read}")
  else:
    lines.append("  labels: none" + (" (no labels.csv or labels.json in the folder)"
                                     if summary.dataset == "image_folder" else ""))
  lines += [f"  note: {note}" for note in summary.notes]
  lines.append(f"  skipped: {len(summary.skipped)} bad files")
  for skip in summary.skipped[:max_listed]:
    lines.append(f"    [{skip.split}] {skip.path}: {skip.reason}")
  if len(summary.skipped) > max_listed:
    lines.append(f"    ... {len(summary.skipped) - max_listed} more, all listed in "
                 f"{os.path.join(summary.path, 'metadata.json')}")
  return "\n".join(lines)
