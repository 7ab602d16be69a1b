"""The closing block of a command: what it did, what it chose, where the outputs are, what next.

Each launcher ends with a few lines built here and appends the same facts as one
JSON line to ``summary.jsonl`` in its output folder, for scripts. The builders are
pure functions of a config and the files a run left (``train_summary``,
``refine_summary``, ``reproduce_summary``, ``prepare_summary``); ``format_block``
turns any of them into lines; ``append_json`` writes the line. ``selected_checkpoint``
(the checkpoint ``selection.best_checkpoint`` picks, its runner-up and the rule in
words) is there for other commands (the estimators) too.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from simgan_jax import domain
from simgan_jax import metric_writer
from simgan_jax.refining import pretrained
from simgan_jax.errors import ConfigError, DataError
from simgan_jax.probe import drift as drift_lib
from simgan_jax.probe import selection as selection_lib

SUMMARY_FILE = "summary.jsonl"
# Measures shown next to a selected checkpoint, when logged (metrics.jsonl).
SHOWN = ("selection_score", "realism_kid", "label_drift", "two_sample_accuracy")


_BUILT_IN_TARGETS = ("eyesim_target", "handsim_target")
_SIMULATORS = ("eyesim", "handsim")


def describe_data(section) -> str:
  """A data section in a few words: what it is and where it comes from."""
  name = section.name
  if name in _SIMULATORS:
    return f"the {name} simulator (rendered on the fly)"
  if name in _BUILT_IN_TARGETS:
    return f"the built-in {name} set (rendered into a cache on first use, minutes on a CPU)"
  if name == "npz":
    return f"npz {section.get('path')}"
  if name == "tfds_dir":
    return f"TFDS folder {section.get('path')}"
  config = section.get("builder_config") or ""
  where = f" in {section.data_dir}" if section.get("data_dir") else ""
  return f"prepared {name}{'/' + config if config else ''}{where}"


def refine_spec(section) -> str:
  """The ``--data`` spec of ``launch/refine.py`` that reads ``section``'s data."""
  name = section.name
  if name in _SIMULATORS:
    return f"{name} --num_examples=100000"
  if name == "npz":
    return f"npz:{section.get('path')}"
  if name == "tfds_dir":
    return f"tfds:{section.get('path')}"
  config = section.get("builder_config") or ""
  data_dir = f" --data_dir={section.data_dir}" if section.get("data_dir") else ""
  return f"{name}{'/' + config if config else ''}:{section.get('split') or 'train'}{data_dir}"


def data_line(config) -> str:
  """What ``launch/train.py`` is about to load, for its first line."""
  return f"synthetic: {describe_data(config.synthetic_data)}; real: {describe_data(config.real_data)}"


def _scores(entry: dict[str, Any], selection_score: float) -> dict[str, float]:
  out = {k: float(entry[k]) for k in SHOWN if k in entry}
  out["selection_score"] = float(selection_score)
  return out


def selected_checkpoint(config, workdir: str) -> dict[str, Any]:
  """The checkpoint ``best_checkpoint`` picks with its scores, the runner-up and the rule;
  ``{"error": why}`` when no checkpoint qualifies or none was scored."""
  try:
    best = selection_lib.best_checkpoint(config, workdir)
  except (ConfigError, DataError) as e:
    realism = config.get("realism")
    if realism is not None and not realism.get("num_images"):
      return {"error": "checkpoints are not scored (config.realism.num_images is 0); refine takes the newest"}
    return {"error": str(e), "rule": selection_lib.rule_text(config)}
  entries = selection_lib.checkpoint_metrics(workdir)
  totals = {int(s): v for s, v in best["selection_scores"].items()}
  out = {"step": best["step"], "scores": _scores(entries[best["step"]], totals[best["step"]]),
         "rule": selection_lib.rule_text(config), "candidates": len(best["candidates"])}
  if best["runner_up"] is not None:
    out["runner_up"] = {"step": best["runner_up"],
                        "scores": _scores(entries[best["runner_up"]], totals[best["runner_up"]])}
  # Measured once per run (the drift network's error on held-out synthetic images), logged
  # with the probe's scores; any scored entry has it.
  error = entries[best["step"]].get("task_error_synthetic", next(
      (e["task_error_synthetic"] for _, e in sorted(entries.items()) if "task_error_synthetic" in e), None))
  if error is not None:
    out["task_error_synthetic"] = float(error)
    out["task_error_unit"] = (drift_lib.read_info(workdir) or {}).get("unit", "")
  return out


def refine_selection(config, checkpoint: str) -> dict[str, Any]:
  """What ``--step=best`` picks in ``checkpoint`` (a workdir or ``pretrained:NAME``): the
  ``selected_checkpoint``; a shipped refiner's one step with its exported scores.
  Raises ConfigError (one line) when no checkpoint qualifies."""
  directory = pretrained.resolve(checkpoint)
  if pretrained.is_pretrained(directory):
    meta = pretrained.meta(directory)
    return {"step": int(meta["step"]),
            "scores": {k: float(v) for k, v in meta.get("scores", {}).items() if k in SHOWN},
            "rule": f"the one checkpoint shipped; {os.path.join(directory, pretrained.CARD)} says how it was chosen"}
  chosen = selected_checkpoint(config, directory)
  if "error" in chosen:
    selection_lib.best_checkpoint(config, directory)  # raises its one-line reason
  return chosen


def _newest(pattern: str) -> str | None:
  paths = sorted(glob.glob(pattern))
  return paths[-1] if paths else None


def _samples(workdir: str, chosen: dict[str, Any]) -> str | None:
  """The sample grid of the selected step when one was written at it, else the newest."""
  if "step" in chosen:
    path = os.path.join(workdir, "samples", f"step_{int(chosen['step']):07d}.png")
    if os.path.exists(path):
      return path
  return _newest(os.path.join(workdir, "samples", "step_*.png"))


def train_summary(config, workdir: str, seconds: float | None = None) -> dict[str, Any]:
  """What a finished ``launch/train.py`` run left in ``workdir``."""
  steps = selection_lib.checkpoint_steps(workdir)
  total = config.refiner_pretrain_steps + config.discriminator_pretrain_steps + config.num_iterations
  chosen = selected_checkpoint(config, workdir)
  refine = (f"python launch/refine.py --checkpoint={workdir}{'' if 'error' in chosen else ' --step=best'} "
            f"--data={refine_spec(config.synthetic_data)} --out={workdir.rstrip('/')}_refined")
  experiment = "handsim_pose:cpu" if domain.refiner_domain(config)["subject"] == "hands" else "eyesim_gaze:cpu"
  whole = f"python launch/reproduce.py --experiment={experiment} --workdir=runs/repro_cpu "
  if config.synthetic_data.get("name") == "image_folder":
    whole = ("python launch/reproduce.py --experiment=image_folder:cpu --synthetic=DIR --real=DIR "
             "--real_test=DIR --workdir=runs/folder_cpu ")
  return {
      "command": "train", "workdir": os.path.abspath(workdir), "steps": steps[-1] if steps else 0,
      "total_steps": total, "seconds": seconds, "checkpoints": steps,
      "sample_grids": len(glob.glob(os.path.join(workdir, "samples", "step_*.png"))),
      "selected": chosen, "domain": domain.refiner_domain(config),
      "outputs": {"samples": _samples(workdir, chosen),
                  "metrics": os.path.join(workdir, "metrics.jsonl"),
                  "checkpoints": os.path.join(workdir, "checkpoints")},
      "next": [refine, whole + "(the whole experiment: train, select, refine, estimators, report)"],
  }


def refine_summary(config, checkpoint: str, out_dir: str, *, step: int, num: int, fmt: str,
                   seconds: float | None, chosen: dict[str, Any] | None = None,
                   warnings: list[str] | None = None) -> dict[str, Any]:
  """What ``launch/refine.py`` wrote; ``chosen``: ``selected_checkpoint`` under --step=best."""
  hands = domain.refiner_domain(config)["subject"] == "hands"
  if fmt == "png":
    h, w, c = config.image_height, config.image_width, config.channels
    following = [f"python launch/prepare_data.py --dataset=image_folder --manual_dir={out_dir} "
                 f"--height={h} --width={w} --channels={c}"]
  else:
    task = "pose" if hands else "gaze"
    following = [f"python launch/train_{task}.py --train_data=tfds:{out_dir} --workdir={out_dir.rstrip('/')}_{task}"]
  experiment = "handsim_pose:cpu" if hands else "eyesim_gaze:cpu"
  following.append(f"python launch/reproduce.py --experiment={experiment} --workdir=runs/repro_cpu "
                   "(the whole experiment: train, select, refine, estimators, report)")
  return {"command": "refine", "checkpoint": checkpoint, "step": step, "selected": chosen or {},
          "images": num, "format": fmt, "seconds": seconds, "warnings": list(warnings or []),
          "domain": domain.refiner_domain(config),
          "outputs": {"folder": os.path.abspath(out_dir)}, "next": following}


def reproduce_summary(config, workdir: str, result: dict[str, Any], seconds: float | None) -> dict[str, Any]:
  """What ``launch/reproduce.py`` wrote (``config``: the reproduce config; ``result``:
  ``reproduce.run``'s return)."""
  simgan_dir = os.path.join(workdir, "simgan")
  chosen = selected_checkpoint(config.simgan, simgan_dir)
  report_dir = os.path.dirname(result.get("report") or os.path.join(workdir, "report.md"))
  figures = sorted(glob.glob(os.path.join(report_dir, "*.png")))
  return {"command": "reproduce", "workdir": os.path.abspath(workdir), "seconds": seconds,
          "selected": chosen, "domain": domain.refiner_domain(config.simgan),
          "results": result.get("summary", {}),
          "outputs": {"report": result.get("report"), "figures": ", ".join(figures) or None,
                      "samples": _newest(os.path.join(simgan_dir, "samples", "step_*.png")),
                      "checkpoints": os.path.join(simgan_dir, "checkpoints")},
          "next": [f"python launch/reproduce.py --workdir={workdir} --publish=docs/results_NAME.md "
                   "(same --experiment and --set flags; copies the report and its figures into the repository)",
                   f"python launch/refine.py --checkpoint={simgan_dir} --step=best "
                   f"--data={refine_spec(config.simgan.synthetic_data)} --out={workdir.rstrip('/')}/refined_more"]}


# Which side of SimGAN a prepared dataset usually feeds (the config section to name it in).
_PREPARED_ROLE = {"unityeyes": "synthetic_data", "mpiigaze": "real_data", "nyu_hand": "real_data",
                  "image_folder": "real_data"}


def prepare_summary(prepared, data_dir: str | None, seconds: float | None) -> dict[str, Any]:
  """What ``launch/prepare_data.py`` wrote (``prepared``: ``prepare.prepare``'s Summary)."""
  role = _PREPARED_ROLE.get(prepared.dataset, "real_data")
  where = f" --config.{role}.data_dir={data_dir}" if data_dir else ""
  spec = f"{prepared.dataset}/{prepared.builder_config}"
  following = [f"python launch/train.py --workdir=runs/{prepared.dataset} --config.{role}.name={prepared.dataset} "
               f"--config.{role}.builder_config={prepared.builder_config}{where}"]
  if prepared.dataset == "image_folder":
    following.append(f"python launch/refine.py --checkpoint=pretrained:eyesim --data={spec} --format=png "
                     f"--out=runs/refined_{prepared.builder_config}{' --data_dir=' + data_dir if data_dir else ''} "
                     "(when the images are synthetic eyes: refine them)")
  return {"command": "prepare_data", "dataset": prepared.dataset, "builder_config": prepared.builder_config,
          "seconds": seconds, "examples": dict(prepared.examples), "skipped": len(prepared.skipped),
          "labels": list(prepared.labels), "label_file": prepared.label_file,
          "outputs": {"dataset": prepared.path}, "next": following}


def estimator_summary(task: str, workdir: str, train_data: str, results: dict[str, Any],
                      lines: dict[str, str], seconds: float | None) -> dict[str, Any]:
  """What ``launch/train_estimator.py`` did: steps, the test line of each evaluation set
  (``lines``: {set: the task's one-line summary}), where its outputs are."""
  return {"command": "train_estimator", "task": task, "workdir": os.path.abspath(workdir),
          "train_data": train_data, "steps": results.get("steps"), "seconds": seconds, "eval": lines,
          "outputs": {"results": os.path.join(workdir, "results.json"),
                      "metrics": os.path.join(workdir, "metrics.jsonl"),
                      "checkpoints": os.path.join(workdir, "checkpoints")},
          "next": [(f"python launch/reproduce.py --experiment={'handsim_pose' if task == 'pose' else 'eyesim_gaze'}:cpu "
                    "--workdir=runs/repro_cpu" if task in ("gaze", "pose") else
                    "python launch/reproduce.py --experiment=image_folder:cpu --synthetic=DIR --real=DIR "
                    "--real_test=DIR --workdir=runs/folder_cpu")
                   + " (synthetic vs refined training sets, several seeds, one report)"]}


def _fmt(scores: dict[str, float]) -> str:
  return ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if v is not None)


def selection_lines(chosen: dict[str, Any]) -> list[str]:
  """The selected checkpoint, its runner-up and the rule, as lines."""
  if not chosen:
    return []
  if "error" in chosen:
    return [f"selected checkpoint: none ({chosen['error']})"]
  lines = [f"selected checkpoint: step {chosen['step']} ({_fmt(chosen['scores'])})"]
  if chosen.get("runner_up"):
    lines.append(f"  runner-up: step {chosen['runner_up']['step']} ({_fmt(chosen['runner_up']['scores'])})")
  elif chosen.get("candidates"):
    lines.append(f"  runner-up: none (1 of {chosen['candidates']} candidate checkpoints qualified)")
  if chosen.get("rule"):
    lines.append(f"  rule: {chosen['rule']}")
  if "task_error_synthetic" in chosen:
    unit = f" {chosen['task_error_unit']}" if chosen.get("task_error_unit") else ""
    lines.append(f"  drift numbers are only as good as the drift network's own error of "
                 f"{chosen['task_error_synthetic']:.3g}{unit} on synthetic images")
  return lines


def format_block(summary: dict[str, Any]) -> str:
  """The closing lines a launcher prints for any of the summaries above."""
  took = "" if summary.get("seconds") is None else f" in {metric_writer.format_seconds(summary['seconds'])}"
  kind = summary["command"]
  if kind == "train":
    lines = [f"done: trained {summary['steps']} of {summary['total_steps']} steps{took}; "
             f"checkpoints at steps {', '.join(map(str, summary['checkpoints'])) or 'none'}; "
             f"{summary.get('sample_grids', 0)} sample grids written"]
  elif kind == "refine":
    lines = [f"done: refined {summary['images']} images ({summary['format']}){took} with "
             f"{summary['checkpoint']} step {summary['step']}"]
  elif kind == "prepare_data":
    examples = ", ".join(f"{split} {count}" for split, count in sorted(summary["examples"].items()))
    lines = [f"done: prepared {summary['dataset']}/{summary['builder_config']}{took}: {examples} examples, "
             f"{summary['skipped']} skipped; labels: {', '.join(summary['labels']) or 'none'}"]
  elif kind == "train_estimator":
    lines = [f"done: trained the {summary['task']} estimator on {summary['train_data']} for {summary['steps']} "
             f"steps{took}"]
    lines += [f"  {name}: {line}" for name, line in summary["eval"].items()]
  else:
    lines = [f"done: reproduced the experiment{took}"]
  lines += selection_lines(summary.get("selected") or {})
  lines += [f"warning: {w}" for w in summary.get("warnings", [])]
  d = summary.get("domain")
  if d:
    lines.append(f"refiner domain: {domain.describe(d)}")
  lines.append("outputs:")
  lines += [f"  {name}: {path}" for name, path in summary["outputs"].items() if path]
  if summary.get("next"):
    lines.append("next:")
    lines += [f"  {command}" for command in summary["next"]]
  return "\n".join(lines)


def append_json(folder: str, summary: dict[str, Any]) -> str:
  """Appends ``summary`` as one JSON line to ``folder/summary.jsonl``; returns its path."""
  path = os.path.join(folder, SUMMARY_FILE)
  with open(path, "a") as f:
    f.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
  return path
