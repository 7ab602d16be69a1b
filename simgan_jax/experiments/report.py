"""``report.md`` of a reproduction (``reproduce.run``) and its figures.

Figures (PNG, matplotlib's Agg backend): ``within_d.png`` (share of test images
within d degrees, mean over seeds, per training set), ``losses.png`` (refiner
and discriminator losses over training, the article's figure, with the realism
score at each checkpoint) and ``samples.png`` (synthetic | refined | target).
"""

from __future__ import annotations

import datetime
import json
import os
import platform

import jax
import numpy as np

from simgan_jax import images as images_lib
from simgan_jax import models
from simgan_jax import run_setup
from simgan_jax.data import sources as sources_lib
from simgan_jax.tasks import gaze_net as gaze
from simgan_jax.experiments import caveats
from simgan_jax.experiments import rows
from simgan_jax.experiments import seeds as seeds_lib
from simgan_jax.tasks import data as data_lib
from simgan_jax.probe import drift as drift_lib
from simgan_jax.probe import selection as selection_lib
from simgan_jax.probe import texture

_LOSS_CURVES = (("refiner_adversarial_loss", "refiner: adversarial"),
                ("self_regularization_loss", "refiner: self-regularisation (x lambda)"),
                ("discriminator_loss", "discriminator"))


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _metrics(simgan_dir: str) -> dict[int, dict[str, float]]:
  """metrics.jsonl as {step: merged entry}; a resumed run's later entries win."""
  out: dict[int, dict[str, float]] = {}
  path = os.path.join(simgan_dir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        entry = json.loads(line)
        out.setdefault(int(entry.pop("step")), {}).update(entry)
  return out


def plot_within_d(summary, titles, path: str, *, ylabel: str, thresholds=gaze.WITHIN_THRESHOLDS_DEG,
                  xlabel: str = "distance from ground truth (degrees)") -> None:
  """Per row, the share of evaluation images within each distance of ``thresholds``
  (``s["curve"]``); ``ylabel`` names the evaluation set (callers pass ``config.test_data``)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
  for name, s in summary.items():
    ax.plot(thresholds, 100 * np.asarray(s["curve"]), marker=".", label=titles[name])
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_xlim(0, max(thresholds))
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _plot_probes(ax, metrics, steps, selected_step: int, drift_unit: str) -> None:
  """Two-sample accuracy (with its interval; left axis) and label drift (right axis)."""
  xs = [s for s in steps if "two_sample_accuracy" in metrics[s]]
  if xs:
    acc = [100 * metrics[s]["two_sample_accuracy"] for s in xs]
    ax.fill_between(xs, [100 * metrics[s]["two_sample_low"] for s in xs],
                    [100 * metrics[s]["two_sample_high"] for s in xs], alpha=0.2, color="tab:blue")
    ax.plot(xs, acc, marker="o", color="tab:blue", label="two-sample accuracy (95% interval)")
    ax.axhline(50, color="tab:blue", ls="--", lw=1, label="50% = indistinguishable")
  ax.set_ylabel("refined vs real accuracy (%)")
  ax.axvline(selected_step, color="tab:red", lw=1)
  ax.grid(alpha=0.3)
  handles, labels = ax.get_legend_handles_labels()
  xs = [s for s in steps if "label_drift" in metrics[s]]
  if xs:
    right = ax.twinx()
    right.plot(xs, [metrics[s]["label_drift"] for s in xs], marker="s", color="tab:green",
               label=f"label drift ({drift_unit})")
    collapsed = [s for s in xs if metrics[s].get("collapsed")]
    if collapsed:
      right.plot(collapsed, [metrics[s]["label_drift"] for s in collapsed], "x", color="k", ms=10,
                 label="collapsed")
    right.set_ylabel(f"label drift ({drift_unit})")
    h2, l2 = right.get_legend_handles_labels()
    handles, labels = handles + h2, labels + l2
  # Above the panel, not on it: the curves fill the whole width.
  ax.legend(handles, labels, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)


def loss_curves(metrics: dict[int, dict], weight: float) -> list[tuple[list, list, str]]:
  """(steps, values, label) of each logged loss for the log-scale panel, the
  self-regularisation times ``weight``; a loss that is 0 throughout (no trunk: no
  self-regularisation) cannot be drawn there, so it is an empty curve whose label says so."""
  curves = []
  for key, label in _LOSS_CURVES:
    xs = [s for s in sorted(metrics) if key in metrics[s]]
    ys = [metrics[s][key] * (weight if key == "self_regularization_loss" else 1.0) for s in xs]
    if xs and not any(y > 0 for y in ys):
      curves.append(([], [], f"{label}: 0 throughout, not drawn"))
    elif xs:
      curves.append((xs, ys, label))
  return curves


def plot_losses(simgan_config, simgan_dir: str, selected_step: int, path: str, drift_unit: str = "") -> None:
  metrics = _metrics(simgan_dir)
  steps = sorted(metrics)
  plt = _pyplot()
  probed = [s for s in steps if "label_drift" in metrics[s] or "two_sample_accuracy" in metrics[s]]
  fig, axes = plt.subplots(3 if probed else 2, 1, figsize=(7, 8.5 if probed else 6), dpi=110, sharex=True)
  ax, ax2 = axes[0], axes[1]
  for xs, ys, label in loss_curves(metrics, simgan_config.loss.self_regularization_weight):
    ax.plot(xs, ys, label=label, **({} if xs else {"ls": "none"}))
  pretrain = simgan_config.refiner_pretrain_steps
  for boundary in (pretrain, pretrain + simgan_config.discriminator_pretrain_steps):
    ax.axvline(boundary, color="grey", ls=":", lw=1)
    ax2.axvline(boundary, color="grey", ls=":", lw=1)
  ax.set_yscale("log")
  ax.set_ylabel("loss per image")
  ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)  # off the curves
  ax.grid(alpha=0.3)
  xs = [s for s in steps if "realism_kid" in metrics[s]]
  if xs:
    ax2.plot(xs, [metrics[s]["realism_kid"] for s in xs], marker="o", label="refined")
    ax2.axhline(metrics[xs[0]]["realism_kid_unrefined"], color="k", ls="--", lw=1, label="unrefined synthetic")
    ax2.axvline(selected_step, color="tab:red", lw=1, label=f"selected (step {selected_step})")
  ax2.set_ylabel("realism KID (lower = more real)")
  ax2.legend(fontsize=8)
  ax2.grid(alpha=0.3)
  if probed:
    _plot_probes(axes[2], metrics, probed, selected_step, drift_unit)
  axes[-1].set_xlabel("step (dotted: end of R / D pretraining)")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def save_samples(config, pools, path: str) -> None:
  n = config.num_sample_images

  target, _ = data_lib.eval_set(config.test_data, config.gaze)
  columns = [sources_lib.to_unit_range(pools["synthetic"][:n]), sources_lib.to_unit_range(pools["refined"][:n]),
             sources_lib.to_unit_range(target[:n])]
  images_lib.save_png(path, images_lib.grid([np.asarray(c) for c in columns]))


def _pm(mean, std, digits=1) -> str:
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _minutes(seconds) -> str:
  return f"{seconds / 60:.1f} min"


def training_text(simgan) -> str:
  """The SimGAN optimiser, self-regularisation and every stabiliser that is on, for a
  report's Settings line: a TTUR or R1 run must not read as the default."""
  text = f"{run_setup.learning_rate_text(simgan)}, {run_setup.self_regularization_text(simgan)}"
  if simgan.loss.get("self_regularization_free_above") is not None:
    text += f" (pixels >= {simgan.loss.self_regularization_free_above} free)"
  on = models.refiner_extras(simgan.refiner)
  if simgan.get("refiner_ema") and simgan.refiner_ema.decay:
    on.append(f"refiner EMA decay {simgan.refiner_ema.decay}")
  if simgan.discriminator.get("r1_gamma"):
    on.append(f"R1 gamma {simgan.discriminator.r1_gamma}")
  if simgan.get("augment") and simgan.augment.policy:
    on.append(f"DiffAugment `{simgan.augment.policy}`")
  if simgan.loss.get("task_consistency_weight"):
    on.append(f"task consistency {simgan.loss.task_consistency_weight}")
  return text + (f"; {', '.join(on)}" if on else "")


def comparison_lines(summary) -> list[str]:
  """One line per refined/synthetic pair of rows: the change in mean error against the
  seed spread, and the share of the synthetic-to-target gap closed (with a target row)."""
  lines = []
  for refined, synthetic in (("refined", "synthetic"), ("refined_4x", "synthetic_4x")):
    if refined not in summary or synthetic not in summary:
      continue
    delta, spread, verdict = rows.error_change(summary, refined, synthetic)
    line = (f"- `{refined}` vs `{synthetic}`: the mean error {'drops' if delta >= 0 else 'rises'} by "
            f"{abs(delta):.2f}°, {verdict} the larger seed spread of the two ({spread:.2f}°)")
    share = rows.gap_closed(summary, refined, synthetic)
    if share is not None:
      line += (f"; refinement closes {100 * share:.0f}% of the synthetic-to-target error gap "
               f"({summary[synthetic]['error_mean']:.2f}° to {summary['target']['error_mean']:.2f}°)")
    lines.append(line + ".")
  if "oracle" in summary and "synthetic" in summary:
    delta = summary["synthetic"]["error_mean"] - summary["oracle"]["error_mean"]
    share = rows.gap_closed(summary, "oracle", "synthetic")
    line = (f"- `oracle` (the synthetic scenes through the target domain's own appearance model, "
            f"what a perfect refiner would make) vs `synthetic`: {delta:+.2f}° less error")
    if share is not None:
      line += f"; it closes {100 * share:.0f}% of the gap, the most refinement can close here"
    lines.append(line + ".")
    lines += oracle_share_lines(summary, "°")
  return lines


def oracle_share_lines(summary, unit: str) -> list[str]:
  """The refined rows' share of the perfect refiner's gain (``rows.oracle_share``), or []."""
  lines = []
  for refined in ("refined", "refined_4x"):
    share = rows.oracle_share(summary, refined)
    if share is None:
      continue
    s = summary["synthetic"]["error_mean"]
    bar, margin, verdict = rows.oracle_bar(summary, refined)
    spread = summary[refined]["error_std"]
    where = {"beyond": f"below it by {margin:.2f}{unit}, more than its seed spread ({spread:.2f}{unit})",
             "within": f"below it by {margin:.2f}{unit}, not more than its seed spread ({spread:.2f}{unit})",
             "short of": f"above it by {-margin:.2f}{unit} (seed spread {spread:.2f}{unit})"}[verdict]
    lines.append(f"- `{refined}` gets {100 * share:.0f}% of the perfect refiner's gain over `synthetic` "
                 f"({s - summary[refined]['error_mean']:.2f}{unit} of {s - summary['oracle']['error_mean']:.2f}{unit} "
                 f"less mean error). {100 * rows.ORACLE_BAR:.0f}% of the gain is a mean error of {bar:.2f}{unit}; "
                 f"`{refined}`'s {summary[refined]['error_mean']:.2f}{unit} is {where}.")
  return lines


def texture_lines(p) -> list[str]:
  """The fine-texture orientation of each pool (probe/texture.py), and a caveat when the
  refined images carry oriented streaks that the perfect refiner's lack."""
  t = p.get("texture")
  if not t:
    return []
  names = {"synthetic": "synthetic", "refined": "refined", "oracle": "perfect refiner"}
  cells = "; ".join(f"{names[k]} {v['coherence']:.2f} / {v['shared']:.2f}" for k, v in t.items() if k in names)
  lines = [f"Fine texture (detail finer than 3x3 pixels; probe/texture.py), coherence / shared coherence: "
           f"{cells}. Coherence is 0 for isotropic grain and 1 for parallel stripes; the shared coherence is "
           "as high only when every image's texture also has the same orientation (streaks at one angle)."]
  streaks = texture.streak_line(t)
  if streaks:
    lines.append(streaks)
  return lines + [""]


def two_sample_lines(preservation) -> list[str]:
  """The report section of the final two-sample test (``preservation["two_sample"]``), or []."""
  t = preservation.get("two_sample")
  if not t:
    return []

  def acc(r):
    return (f"{100 * r['two_sample_accuracy']:.1f}% [{100 * r['two_sample_low']:.1f}, "
            f"{100 * r['two_sample_high']:.1f}]")

  return ["## Can a classifier tell refined from real?", "",
          f"A fresh classifier (widths {tuple(t['features'])}, {t['steps']} steps; not the GAN's "
          f"discriminator) trained on {t['num_images'] - t['num_test']} images of each kind and tested "
          f"on {t['num_test']} + {t['num_test']} unseen ones (held-out accuracy, Wilson 95% interval; "
          "50% = indistinguishable, the paper's visual Turing test: 51.7%):", "",
          "| images against the real pool | accuracy |", "|---|---|",
          f"| refined (selected refiner) | {acc(t['refined'])} |",
          f"| raw synthetic | {acc(t['synthetic'])} |",
          *([f"| oracle (synthetic scenes, target appearance) | {acc(t['oracle'])} |"]
            if "oracle" in t else []), "",
          "This classifier is wider and trained longer than the per-checkpoint probe "
          "(`two_sample_accuracy` in `metrics.jsonl`), which at `:cpu` size misses ripples and frames "
          "a person sees at once.", "", *_oracle_floor(t)]


def _oracle_floor(t) -> list[str]:
  """The caveat when even a perfect refiner is told from the target: its accuracy, not
  50%, is the floor for any refiner on this benchmark (the target draws other scenes)."""
  oracle = t.get("oracle")
  if not oracle or oracle["two_sample_low"] <= 0.5:
    return []
  return [f"Even the oracle (the same scenes through the target's own appearance model) is told from "
          f"the target pool {100 * oracle['two_sample_accuracy']:.1f}% of the time: the target draws "
          "its scenes from another distribution, which no refiner changes, so about "
          f"{100 * oracle['two_sample_accuracy']:.0f}%, not 50%, is the floor for a refiner here.", ""]


def write_report(config, workdir: str, selection, summary, preservation, pools, timings) -> str:
  simgan_dir = os.path.join(workdir, "simgan")
  m = config.data_multiplier
  titles = {k: v.format(m=m) for k, v in rows.TITLES.items()}
  plot_within_d(summary, titles, os.path.join(workdir, "within_d.png"),
                ylabel=f"{config.test_data} images within distance (%)")

  task_info = drift_lib.read_info(simgan_dir) or {}
  drift_unit = task_info.get("unit", "")
  plot_losses(config.simgan, simgan_dir, selection["step"], os.path.join(workdir, "losses.png"), drift_unit)
  save_samples(config, pools, os.path.join(workdir, "samples.png"))

  n = config.num_synthetic
  seeds = ", ".join(map(str, config.seeds))
  sizes = f"`synthetic` is {n} simulator images"
  if any(name.endswith("_4x") for name in summary):
    sizes += f", the {m}x rows {m * n}"
  command = " ".join([f"python launch/reproduce.py --experiment={config.experiment} --workdir=..."] +
                     [f"--set {a}" for a in config.overrides])
  lines = [
      f"# SimGAN reproduction: `{config.experiment}`",
      "",
      f"Made by `{command}` "
      f"on {datetime.date.today().isoformat()}; {jax.device_count()} {jax.devices()[0].platform.upper()} "
      f"device(s) ({platform.processor() or platform.machine()}), jax {jax.__version__}.",
      f"Wall time: {_minutes(sum(timings.values()))} in all "
      f"({', '.join(f'{k} {_minutes(v)}' for k, v in timings.items())}).",
      "",
      *caveats.timing_lines(workdir, timings),
      *caveats.reuse_lines(workdir, timings, "gaze", config.training_sets),
      *seeds_lib.origin_lines(config, workdir),
      f"## Gaze estimation on `{config.test_data}`",
      "",
      f"Each row: gaze estimators trained from seeds {seeds} (mean ± standard deviation over seeds). "
      f"{sizes}; the refined rows are the same images after refinement, with the same labels.",
      "",
      "| training data | % of images within 7° | mean angular error (°) |",
      "|---|---|---|",
  ]
  for name, s in summary.items():
    lines.append(f"| {titles[name]} | {_pm(s['within7_mean'], s['within7_std'])} | "
                 f"{_pm(s['error_mean'], s['error_std'], 2)} |")
  lines += ["", *seeds_lib.spread_lines(summary, "°", "within7", "within 7°")]
  lines += ["For comparison, the paper (MPIIGaze test, within 7°): synthetic 62.3, synthetic 4x 64.9, "
            "refined 69.4, refined 4x 87.2; mean error 11.2° (synthetic) and 7.8° (refined).", ""]
  lines += comparison_lines(summary)
  lines += ["", "![share within d degrees](within_d.png)", ""]

  metrics = _metrics(simgan_dir)
  lines += ["## Refiner selection (no target labels)", "",
            "At every checkpoint the training loop logs `realism_kid` (the KID between refined simulator "
            "images and real-pool images on fixed random features, `simgan_jax/probe/realism.py`), "
            "`two_sample_accuracy` (held-out accuracy of a fresh classifier trained on refined vs real "
            "images, with its Wilson 95% interval; 50% = indistinguishable, `probe/two_sample.py`) and "
            "`label_drift` (how far a task network trained on the synthetic labels moves its predictions "
            "from synthetic to refined images, `probe/drift.py`). The selected adversarial-phase "
            f"checkpoint refines the training sets; rule: {selection_lib.rule_text(config.simgan)}.", ""]
  if task_info:
    error = metrics.get(int(selection["step"]), {}).get("task_error_synthetic")
    lines += [f"Label drift is measured by a {task_info['kind']} network on the synthetic `{task_info['label']}` "
              f"labels ({task_info.get('source', 'trained')}"
              + (f"; its own error on the probe's synthetic images: {error:.3g} {drift_unit}" if error else "")
              + ").", ""]
  lines += ["| checkpoint step | realism KID | two-sample accuracy | label drift | selection score | |",
            "|---|---|---|---|---|---|"]

  def cell(entry, key, fmt):
    return fmt(entry) if key in entry else "–"

  for step, score in sorted(selection["scores"].items(), key=lambda kv: int(kv[0])):
    entry = metrics.get(int(step), {})
    mark = selection_lib.checkpoint_mark(config.simgan, selection, int(step))
    if entry.get("collapsed"):
      mark = (mark + ", collapsed").lstrip(", ")
    two = cell(entry, "two_sample_accuracy", lambda e: f"{100 * e['two_sample_accuracy']:.1f}% "
               f"[{100 * e['two_sample_low']:.1f}, {100 * e['two_sample_high']:.1f}]")
    drift = cell(entry, "label_drift", lambda e: f"{e['label_drift']:.3g} {drift_unit}".rstrip())
    total = selection.get("selection_scores", {}).get(step, score)
    lines.append(f"| {step} | {score:.4g} | {two} | {drift} | {total:.4g} | {mark} |")
  first = metrics.get(int(selection["step"]), {})
  if "realism_kid_unrefined" in first:
    two = cell(first, "two_sample_accuracy_unrefined", lambda e: f"{100 * e['two_sample_accuracy_unrefined']:.1f}%")
    lines.append(f"| (unrefined synthetic) | {first['realism_kid_unrefined']:.4g} | {two} | 0 | | |")
  lines += ["", *seeds_lib.selection_lines(preservation, {"pupil_shift_px": "pupil shift (px)",
                                                          "gaze_drift_deg": "gaze drift (°)",
                                                          "texture_coherence": "texture coherence"})]
  lines += ["![losses and realism score](losses.png)", ""]

  p = preservation
  lines += ["## Label preservation", "",
            f"On the first {p['num_pairs']} synthetic/refined pairs of the training pool (mean ± standard "
            "deviation; median; 90th percentile):", "",
            "| measure | value |", "|---|---|"]

  def row(label, s, unit):
    return f"| {label} | {_pm(s['mean'], s['std'], 2)} {unit} (median {s['median']:.2f}, p90 {s['p90']:.2f}) |"

  lines.append(row("pupil-centre shift, synthetic → refined", p["pupil_shift_px"], "px"))
  if "localiser_error_synthetic_px" in p:
    lines.append(row(f"pupil localiser error on synthetic images (vs `{p['pupil_label']}`)",
                     p["localiser_error_synthetic_px"], "px"))
    lines.append(row("pupil localiser error on refined images (vs the same labels)",
                     p["localiser_error_refined_px"], "px"))
  if "gaze_drift_deg" in p:
    lines.append(row(f"gaze drift (estimator: {p['gaze_drift_estimator']})", p["gaze_drift_deg"], "°"))
  if "oracle_pupil_shift_px" in p:
    lines.append(row("pupil-centre shift, synthetic → oracle (a perfect refiner)", p["oracle_pupil_shift_px"], "px"))
  if "oracle_gaze_drift_deg" in p:
    lines.append(row(f"gaze drift, synthetic → oracle (estimator: {p['gaze_drift_estimator']})",
                     p["oracle_gaze_drift_deg"], "°"))
  lines += ["", "The article reports a pupil shift of 1.1 ± 0.8 px at 55 px eye width (50 pairs, fitted "
            "by hand)."]
  if "oracle_gaze_drift_deg" in p:
    lines += ["The oracle rows are the same scenes rendered by the target domain's appearance model: "
              "the shift and drift that a perfect refiner shows, caused by the localiser's and "
              "estimator's response to a new appearance rather than by moved labels."]
  lines.append("")
  lines += texture_lines(p)
  lines += two_sample_lines(p)
  lines += ["## Samples", "", "Columns: synthetic | refined (selected refiner) | target test "
            "images.", "", "![samples](samples.png)", ""] + caveats.samples_note_lines(workdir) + ["## Settings", "",
            f"- SimGAN: batch {config.simgan.batch_size}, refiner: {models.trunk_text(config.simgan.refiner)}, "
            f"{config.simgan.refiner_pretrain_steps} + "
            f"{config.simgan.discriminator_pretrain_steps} pretraining steps, {config.simgan.num_iterations} "
            f"iterations (Kg {config.simgan.kg}, Kd {config.simgan.kd}), {training_text(config.simgan)}, "
            f"SimGAN seed(s) {', '.join(map(str, seeds_lib.simgan_seeds(config)))}.",
            f"- Gaze estimator: conv widths {tuple(config.gaze.model.conv_features)}, FC "
            f"{config.gaze.model.hidden_features}, batch {config.gaze.batch_size}, {config.gaze.num_steps} "
            f"steps, {config.gaze.optimizer.name} lr {config.gaze.optimizer.learning_rate}; seeds {seeds}.",
            f"- Synthetic data: `{config.synthetic_data}` (simulator seed {config.synthetic_seed}); target "
            f"labelled training data: `{config.target_train_data or 'none'}`.",
            "- Whole config: `config.json` in the workdir; per-run results: `gaze/<set>/seed_<s>/results.json`.",
            ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path
