"""``report.md`` of the image_folder experiment (experiments/image_folder.py), in the form
of docs/results_eyesim.md: the task's accuracy or error on the real test images per
training set (mean ± std over seeds), the verdict line, the sample grid, the probe
scores per checkpoint, label preservation and the final two-sample test."""

from __future__ import annotations

import datetime
import os
import platform

import jax
import numpy as np

from simgan_jax import images as images_lib
from simgan_jax import models
from simgan_jax.data import sources as sources_lib
from simgan_jax.probe import drift as drift_lib
from simgan_jax.probe import selection as selection_lib
from simgan_jax.experiments import caveats
from simgan_jax.experiments import report
from simgan_jax.experiments import seeds as seeds_lib

BEATS = "refined beats synthetic beyond the spread"
DOES_NOT_BEAT = "refined does not beat synthetic beyond the spread"
FLAGS = ("--synthetic", "--real", "--real_test")
CANNOT_TELL = "cannot tell whether refinement helped: no --real_test (labelled real images) to test on"


def _unit(kind: str) -> tuple[str, str]:
  return ("accuracy", "%") if kind == "classification" else ("mean absolute error", "")


def verdict(summary, kind: str, has_test: bool = True) -> str:
  """The plain verdict: refined vs synthetic against the larger seed spread of the two."""
  if not has_test or "refined" not in summary or "synthetic" not in summary:
    return f"verdict: {CANNOT_TELL}" if not has_test else "verdict: no synthetic and refined rows to compare"
  r, s = summary["refined"], summary["synthetic"]
  gain = (r["mean"] - s["mean"]) if kind == "classification" else (s["mean"] - r["mean"])
  spread = max(r["std"], s["std"])
  what, unit = _unit(kind)
  words = BEATS if gain > spread else DOES_NOT_BEAT
  return (f"verdict: {words} ({what} {r['mean']:.4g} ± {r['std']:.2g}{unit} refined vs {s['mean']:.4g} ± "
          f"{s['std']:.2g}{unit} synthetic; {'gain' if gain >= 0 else 'loss'} {abs(gain):.3g}{unit}, "
          f"larger spread {spread:.2g}{unit}; refined: {seeds_lib.runs_text(r)})")


def _spread_lines(summary, unit: str) -> list[str]:
  """Where the refined row's spread comes from, with several SimGAN seeds ([] with one)."""
  r = summary.get("refined", {})
  if r.get("num_simgan_seeds", 1) < 2:
    return []
  n, m = r["num_simgan_seeds"], r["num_estimator_seeds"]
  return [f"The refined row is mean ± standard deviation over {n} SimGAN seeds x {m} task-network seeds "
          f"({n * m} runs: another refiner for each SimGAN seed); the spread over SimGAN seeds alone (of the "
          f"{n} per-refiner means) is {r['std_simgan']:.2g}{unit}. The samples and the checkpoint table below "
          "show the first SimGAN seed's refiner; the others are in `simgan_seed<s>/`.", ""]


def save_samples(config, pools, path: str) -> None:
  """synthetic | refined | real-folder images."""
  n = min(config.num_sample_images, len(pools["synthetic"]))
  shape = (config.simgan.image_height, config.simgan.image_width, config.simgan.channels)
  real = sources_lib.make_source(config.simgan.real_data, shape, "simgan.real_data").images[:n]
  columns = [pools["synthetic"][:n], pools["refined"][:n], real]
  images_lib.save_png(path, images_lib.grid([np.asarray(sources_lib.to_unit_range(c)) for c in columns]))


def _command(config) -> str:
  folders = (config.get("data_info") or {}).get("folders", {})
  return " ".join([f"python launch/reproduce.py --experiment={config.experiment}"]
                  + [f"{flag}={folders[flag]}" for flag in FLAGS if flag in folders] + ["--workdir=..."]
                  + [f"--set {a}" for a in config.overrides])


def _probe_table(config, workdir: str, selection) -> list[str]:
  simgan_dir = os.path.join(workdir, "simgan")
  metrics = selection_lib.checkpoint_metrics(simgan_dir)
  info = drift_lib.read_info(simgan_dir) or {}
  unit = info.get("unit", "")
  lines = ["| checkpoint step | realism KID | two-sample accuracy | label drift | selection score | |",
           "|---|---|---|---|---|---|"]
  for step, kid in sorted(selection["scores"].items(), key=lambda kv: int(kv[0])):
    e = metrics.get(int(step), {})
    mark = selection_lib.checkpoint_mark(config.simgan, selection, int(step))
    if e.get("collapsed"):
      mark = (mark + ", collapsed").lstrip(", ")
    two = (f"{100 * e['two_sample_accuracy']:.1f}% [{100 * e['two_sample_low']:.1f}, "
           f"{100 * e['two_sample_high']:.1f}]" if "two_sample_accuracy" in e else "–")
    drift = f"{e['label_drift']:.3g} {unit}".rstrip() if "label_drift" in e else "–"
    lines.append(f"| {step} | {kid:.4g} | {two} | {drift} | {selection['selection_scores'][step]:.4g} | {mark} |")
  first = metrics.get(int(selection["step"]), {})
  if "realism_kid_unrefined" in first:
    two = (f"{100 * first['two_sample_accuracy_unrefined']:.1f}%" if "two_sample_accuracy_unrefined" in first
           else "–")
    lines.append(f"| (unrefined synthetic) | {first['realism_kid_unrefined']:.4g} | {two} | 0 | | |")
  rule = selection_lib.rule_text(config.simgan)
  about = (f"Label drift: a {info['kind']} network trained on the synthetic `{info['label']}` labels, "
           f"in {unit}. " if info else "")
  return ["## Refiner selection (no labels of real images)", "",
          f"At every checkpoint: realism KID (refined vs real, lower is more real), the two-sample accuracy "
          f"of a fresh refined-vs-real classifier (50% = indistinguishable) and the label drift. {about}"
          f"The selected checkpoint refines the synthetic set; rule: {rule}.", "", *lines, "", "![losses and realism score](losses.png)", ""]


def write_report(config, workdir: str, selection, summary, preservation, pools, timings) -> str:
  kind, data = config.task_net.kind, config.get("data_info") or {}
  report.plot_losses(config.simgan, os.path.join(workdir, "simgan"), selection["step"],
                     os.path.join(workdir, "losses.png"), (drift_lib.read_info(os.path.join(workdir, "simgan"))
                                                           or {}).get("unit", ""))
  save_samples(config, pools, os.path.join(workdir, "samples.png"))
  what, unit = _unit(kind)
  counts = data.get("counts", {})
  shape = "x".join(map(str, data.get("shape", [])))
  lines = [f"# Does refinement help? `{config.experiment}`", "",
           f"Made by `{_command(config)}` on {datetime.date.today().isoformat()}; {jax.device_count()} "
           f"{jax.devices()[0].platform.upper()} device(s) ({platform.processor() or platform.machine()}), "
           f"jax {jax.__version__}.",
           f"Wall time: {sum(timings.values()) / 60:.1f} min in all "
           f"({', '.join(f'{k} {v / 60:.1f} min' for k, v in timings.items())}).", "",
           f"Data: {', '.join(f'`{flag}` {counts[flag]} images' for flag in FLAGS if flag in counts)}, used at {shape} (H x W x C); "
           f"task: {kind} of `{', '.join(data.get('label_names', [])) or 'label'}`; {config.num_synthetic} "
           "synthetic images are refined and train the networks.", ""]
  if config.test_data:
    lines += [f"## {kind.capitalize()} on `--real_test`", "",
              f"Each row: the task network trained from seeds {', '.join(map(str, config.seeds))} on the "
              f"synthetic images or on the same images refined (same labels), tested on the "
              f"{next(iter(summary.values()), {}).get('num_test', 0)} real test images; mean ± standard "
              "deviation over runs.", "",
              f"| training data | {what}{' (%)' if unit else ''} | runs | per run |", "|---|---|---|---|"]
    for name, s in summary.items():
      lines.append(f"| {name} | {s['mean']:.4g} ± {s['std']:.2g} | {seeds_lib.runs_text(s)} | "
                   f"{', '.join(f'{v:.4g}' for v in s['values'])} |")
    lines += [""] + _spread_lines(summary, unit) + [verdict(summary, kind, True), ""]
  else:
    lines += ["## Does refinement help?", "", f"{verdict(summary, kind, False)}. SimGAN was trained, a "
              "checkpoint selected and the synthetic set refined (`refined/`); pass `--real_test=DIR` "
              "(labelled real images) and rerun the same command to train and test the task networks.", ""]
  lines += ["## Samples", "", "Columns: synthetic | refined (selected refiner) | real images.", "",
            "![samples](samples.png)", ""] + caveats.samples_note_lines(workdir)
  lines += _probe_table(config, workdir, selection)
  lines += seeds_lib.selection_lines(preservation, {"changed_answers": "synthetic-trained network: "
                                                    + ("share of answers changed" if kind == "classification"
                                                       else "mean prediction change")})
  p = preservation
  if "changed_answers" in p:
    change = (f"{100 * p['changed_answers']:.1f}% of answers change" if kind == "classification"
              else f"predictions move by {p['changed_answers']:.4g} on average")
    err = (lambda v: f"{100 * v:.1f}%") if kind == "classification" else (lambda v: f"{v:.4g}")  # noqa: E731
    lines += ["## Label preservation", "",
              f"The network trained on synthetic images ({p['network']}) on the first {p['num_pairs']} "
              f"synthetic/refined pairs: {change}; its error against the synthetic labels is "
              f"{err(p['error_synthetic'])} on the synthetic images and {err(p['error_refined'])} on their "
              "refinements.", ""]
  lines += report.two_sample_lines(p)
  t = config.task_net
  lines += ["## Settings", "",
            f"- SimGAN: {config.simgan.image_height}x{config.simgan.image_width}x{config.simgan.channels}, batch "
            f"{config.simgan.batch_size}, refiner: {models.trunk_text(config.simgan.refiner)}, "
            f"{config.simgan.refiner_pretrain_steps} + "
            f"{config.simgan.discriminator_pretrain_steps} pretraining steps, {config.simgan.num_iterations} "
            f"iterations, {report.training_text(config.simgan)}.",
            f"- Task network ({kind}): conv widths {tuple(t.model.conv_features)}, FC {t.model.hidden_features}, "
            f"batch {t.batch_size}, {t.num_steps} steps, {t.optimizer.name} lr {t.optimizer.learning_rate}.",
            "- Whole config: `config.json` in the workdir; per-run results: "
            "`estimators/<set>/seed_<s>/results.json`.", ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path
