"""Which label-free rule picks the checkpoint that helps most? One SimGAN run, every
checkpoint on disk, every rule, judged against a downstream result.

``compare(config, workdir, downstream)`` refines the same ``num_images`` synthetic
images with each checkpoint and scores them with

* the measures the training loop logged at that checkpoint (``metrics.jsonl``:
  ``realism_kid``, ``two_sample_accuracy``, ``label_drift``, ``selection_score``,
  the logged score before the realism window), and
* ``step=best``: the rule ``--step=best``, keep-best and reproduce apply
  (``probe/selection.py``: the logged score plus the realism window and the
  pretraining exclusion), as its ranking of the checkpoints it qualifies;
* the rules of ``rules.py`` (reverse validation, agreement, entropy), computed here;

and measures the downstream truth the rules try to predict: the error on a
*labelled* set (``downstream``: target-domain validation images, never the test
split) of a ``config.drift``-sized task network trained on the checkpoint's refined
images, averaged over ``downstream_seeds``. This downstream network is smaller
and shorter-trained than the experiments' estimators, so it ranks checkpoints, it
does not reproduce the reports' numbers. The raw synthetic images get the same
downstream measure (``unrefined``), the baseline a useful refiner beats, and the
seed noise of the measure itself (``downstream_noise``: the same unrefined images
with ``NOISE_SEEDS`` other seeds): a regret smaller than that noise says nothing.

Costs: per checkpoint, one refine pass plus 2 (reverse validation) + 2 (agreement) +
1 (entropy, classes only) + ``len(downstream_seeds)`` trainings of
``config.drift.train_steps`` steps.
"""

from __future__ import annotations

import json
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError
from simgan_jax.tasks import data as data_lib
from simgan_jax.refining import refine as refine_lib
from simgan_jax.probe import selection as selection_lib
from simgan_jax.probe import rules as rules_lib
from simgan_jax.simulators import sources as eye_sources

# Logged per checkpoint by the training loop; lower is better for each.
LOGGED = ("selection_score", *selection_lib.METRICS)
# Extra seeds of the downstream network on the unrefined images: its own seed noise.
NOISE_SEEDS = (1001, 1002, 1003)


def load_downstream(spec: str, config, data_dir: str):
  """(uint8 images, labels) of the labelled set a data spec names; a test split is refused."""
  options = ml_collections.ConfigDict({"data_dir": data_dir, "cache_dir": "", "max_examples": 0})
  section = data_lib.data_config(spec, options, training=False)
  if section.get("split", "") == "test" or spec.endswith(":test"):
    raise ConfigError(f"--downstream_data={spec}: a test split; decide on a validation split")
  section.labels = "all"  # the task's label is chosen from them (rules.task_of), not always 'gaze'
  shape = (config.image_height, config.image_width, config.channels)
  if section.name == "eyesim_target":
    return eye_sources.load_labelled_split(config.real_data, shape, section.split)
  source = sources_lib.make_source(section, shape, "downstream_data")
  if not isinstance(source, sources_lib.ArraySource) or not source.labels:
    raise ConfigError(f"--downstream_data={spec}: not a finite labelled set")
  images = source.images if source.images.dtype == "uint8" else sources_lib.from_unit_range(source.images)
  return images, dict(source.labels)


def draw(section, image_shape, num: int, seed: int, where: str) -> dict[str, np.ndarray]:
  """``num`` examples of a data section (a simulator renders them, a finite pool is
  read without replacement when it has enough rows), as uint8 images and labels."""
  source = sources_lib.make_source(section, image_shape, where)
  if isinstance(source, sources_lib.ArraySource):
    rows = np.random.default_rng(seed).permutation(source.total)[:num]
    out = {"image": np.asarray(source.images)[rows]}
    out.update({k: np.asarray(v)[rows] for k, v in source.labels.items()})
  else:
    key = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num))
    out = {k: np.asarray(v) for k, v in jax.device_get(jax.jit(source.sample)({}, keys)).items()}
  if out["image"].dtype != np.uint8:
    out["image"] = sources_lib.from_unit_range(out["image"])
  out.pop("index", None)
  return out


def downstream_error(config, images: np.ndarray, labels: dict[str, np.ndarray], test: np.ndarray,
                     test_labels: dict[str, np.ndarray], seeds=(0,)) -> float:
  """Mean error on (test, test_labels) of task networks trained on (images, labels)."""
  kind, label = rules_lib.task_of(config, labels)
  errors = []
  for seed in seeds:
    task = rules_lib.train_task(config, images, labels[label], kind, label, seed=100 + int(seed))
    errors.append(np.mean(rules_lib.errors(task, rules_lib.drift_lib.predict(task, test),
                                            test_labels[label])))
  return float(np.mean(errors))


DEFAULT_RULE = "step=best"


def default_rule(config, workdir: str) -> dict[int, float]:
  """The ranking ``--step=best`` applies to ``workdir`` under ``config``: 0, 1, ... for
  the checkpoints it qualifies, best first, and +inf for every other checkpoint on disk."""
  ranked = selection_lib.ranked_steps(config, workdir)
  scores = {step: math.inf for step in selection_lib.checkpoint_steps(workdir)}
  scores.update({step: float(rank) for rank, step in enumerate(ranked)})
  return scores


def with_default_rule(result: dict, config, workdir: str) -> dict:
  """``result`` with the ``step=best`` rule's scores put first and the rules judged again."""
  scores = {DEFAULT_RULE: default_rule(config, workdir),
            **{k: v for k, v in result["scores"].items() if k != DEFAULT_RULE}}
  return {**result, "scores": scores, "judged": rules_lib.judge(scores, result["downstream"])}


def synthetic_and_real(config, num_images: int, num_real: int, num_heldout: int, seed: int):
  """The synthetic images (with labels) every checkpoint refines, held-out labelled
  synthetic images and the unlabelled real pool: the same for every call with one seed."""
  shape = (config.image_height, config.image_width, config.channels)
  synthetic = draw(config.synthetic_data, shape, num_images + num_heldout, seed, "synthetic_data")
  real = draw(config.real_data, shape, num_real, seed + 1, "real_data")["image"]
  labels = {k: v[:num_images] for k, v in synthetic.items() if k != "image"}
  heldout_labels = {k: v[num_images:] for k, v in synthetic.items() if k != "image"}
  return synthetic["image"][:num_images], labels, synthetic["image"][num_images:], heldout_labels, real


def downstream_noise(config, downstream, *, num_images: int = 1024, seed: int = 0,
                     seeds=NOISE_SEEDS) -> dict:
  """{"errors": [...], "std": ...}: the downstream error of the unrefined images, once per
  seed in ``seeds`` (the network's own seed noise, the scale to read regrets against)."""
  images, labels, _, _, _ = synthetic_and_real(config, num_images, 1, 1, seed)
  errors = [downstream_error(config, images, labels, *downstream, seeds=(s,)) for s in seeds]
  return {"errors": errors, "std": float(np.std(errors, ddof=1)) if len(errors) > 1 else float("nan")}


def compare(config, workdir: str, downstream: tuple[np.ndarray, dict[str, np.ndarray]], *,
            num_images: int = 1024, num_real: int = 1024, num_heldout: int = 512, seed: int = 0,
            downstream_seeds=(0,), rules=rules_lib.RULES, steps=None, noise_seeds=NOISE_SEEDS,
            noise: dict | None = None, log: Callable[[str], None] = print) -> dict:
  """Scores every checkpoint of ``workdir`` by every rule and judges the rules (module
  docstring). Returns {"steps", "scores": {rule: {step: score}}, "downstream": {step:
  error}, "unrefined": error, "downstream_noise": downstream_noise(...) or ``noise``, "judged":
  rules.judge(...), "seconds"}."""
  images, labels, heldout, heldout_labels, real = synthetic_and_real(config, num_images, num_real,
                                                                   num_heldout, seed)
  test, test_labels = downstream
  kind, label = rules_lib.task_of(config, labels)
  if label not in test_labels:
    raise ConfigError(f"--downstream_data: has no '{label}' label (the synthetic task's); "
                      f"found: {', '.join(test_labels) or 'none'}")
  steps = list(steps) if steps is not None else selection_lib.checkpoint_steps(workdir)
  if not steps:
    raise ConfigError(f"--workdir {workdir}: no checkpoint on disk to compare")
  logged = selection_lib.checkpoint_metrics(workdir)
  start = time.time()
  unrefined = downstream_error(config, images, labels, test, test_labels, downstream_seeds)
  log(f"compare: {kind} '{label}', {len(steps)} checkpoints; unrefined synthetic -> downstream error "
      f"{unrefined:.4g}")
  scores = {name: {} for name in (*LOGGED, *rules)}
  errors = {}
  for step in steps:
    params, _ = refine_lib.restore_refiner(config, workdir, step)
    refined = refine_lib.refine_arrays(config, params, images)
    for name in LOGGED:
      if name in logged.get(step, {}):
        scores[name][step] = float(logged[step][name])
    scores_here = rules_lib.score_all(config, refined, labels, real, heldout, heldout_labels, rules)
    for name, value in scores_here.items():
      scores[name][step] = value
    errors[step] = downstream_error(config, refined, labels, test, test_labels, downstream_seeds)
    log(f"compare: step {step}: downstream error {errors[step]:.4g}; "
        + ", ".join(f"{k} {v:.4g}" for k, v in scores_here.items()))
  scores = {name: by_step for name, by_step in scores.items() if by_step}
  if noise is None:  # given when another run of the same setting measured it (same images, same seeds)
    noise = downstream_noise(config, downstream, num_images=num_images, seed=seed, seeds=noise_seeds)
  log(f"compare: downstream noise: unrefined images with {len(noise['errors'])} other seeds: std {noise['std']:.3g}")
  result = {"kind": kind, "label": label, "steps": steps, "scores": scores, "downstream": errors,
            "unrefined": unrefined, "downstream_noise": noise, "seconds": time.time() - start}
  return with_default_rule(result, config, workdir)


def table(result: dict) -> list[str]:
  """Markdown lines: per rule, its pick against the best and worst checkpoint downstream."""
  lines = [f"Downstream: error of a task network trained on each checkpoint's refined images "
           f"({result['kind']} '{result['label']}'); unrefined synthetic: {result['unrefined']:.4g}. "
           "That network is config.drift's (small, short schedule), not the experiment's estimator: "
           "it ranks checkpoints, and its ranking can differ from a bigger network's. Best and worst are "
           "over every judged checkpoint, including those a rule refuses (refused: inf or not scored)."
           + _noise_sentence([result]),
           "", "| rule | pick | its error | best (step) | worst | regret | Spearman | refused |",
           "|---|---|---|---|---|---|---|---|"]
  for rule, j in result["judged"].items():
    if j["pick"] is None:
      lines.append(f"| {rule} | none | | | | | | all |")
      continue
    refused = f"{j['refused']}" + (" (the best)" if j["refused_best"] else "")
    lines.append(f"| {rule} | {j['pick']} | {j['pick_downstream']:.4g} | {j['best']:.4g} ({j['best_step']}) | "
                 f"{j['worst']:.4g} | {j['regret']:.2f} | {j['spearman']:.2f} | {refused} |")
  rules = list(result["scores"])
  lines += ["", "Per checkpoint (every rule: lower is better):", "",
            "| step | downstream error | " + " | ".join(rules) + " |", "|---" * (len(rules) + 2) + "|"]
  for step in result["steps"]:
    cells = [f"{result['scores'][r][step]:.4g}" if step in result["scores"][r] else "" for r in rules]
    lines.append(f"| {step} | {result['downstream'][step]:.4g} | " + " | ".join(cells) + " |")
  return lines


def _noise_sentence(results: list[dict]) -> str:
  stds = [r["downstream_noise"]["std"] for r in results if "downstream_noise" in r]
  if not stds:
    return " The downstream measure's seed noise was not measured."
  return (f" Seed noise of the downstream measure (std of the unrefined images' error over "
          f"{len(results[0]['downstream_noise']['errors'])} other seeds{', mean over runs' if len(stds) > 1 else ''}): "
          f"{np.mean(stds):.3g}; differences smaller than that are noise.")


def summary(results: list[dict], names: list[str]) -> list[str]:
  """Markdown lines judging each rule over several SimGAN runs (``results``, one
  ``compare`` result per run, ``names`` their labels): per rule its picks, the mean
  downstream error of its pick beside the mean best and worst checkpoint's and the
  unrefined images', the mean regret with its spread over runs, how often it picked
  the best or refused it, the share of the best checkpoint's gain over unrefined
  images that its pick kept, and the mean Spearman correlation."""
  n = len(results)
  rules = [r for r in results[0]["judged"] if all(r in res["judged"] for res in results)]
  mean = lambda v: float(np.mean(v))  # noqa: E731
  best = [res["downstream"][min(res["downstream"], key=res["downstream"].get)] for res in results]
  worst = [max(res["downstream"].values()) for res in results]
  unrefined = [res["unrefined"] for res in results]
  lines = [f"{n} SimGAN runs ({', '.join(names)}), every checkpoint of each judged by a task network "
           f"trained on its refined images ({results[0]['kind']} '{results[0]['label']}', error: lower is "
           "better). Mean over runs: unrefined synthetic "
           f"{mean(unrefined):.4g}, best checkpoint {mean(best):.4g} (needs target labels), worst "
           f"{mean(worst):.4g}. Gain kept: (unrefined - pick) / (unrefined - best), 100% = the best "
           "checkpoint's gain over unrefined images, negative = the pick is worse than not refining."
           + _noise_sentence(results),
           "", "| rule | picks | pick's error | regret (mean ± std) | picked the best | refused the best | "
           "gain kept | Spearman |", "|---|---|---|---|---|---|---|---|"]
  ranked = []
  for rule in rules:
    js = [res["judged"][rule] for res in results]
    if any(j["pick"] is None for j in js):
      lines.append(f"| {rule} | " + ", ".join(str(j["pick"]) for j in js) + " | | | | | | |")
      continue
    regret = [j["regret"] for j in js]
    kept = [(u - j["pick_downstream"]) / (u - b) if u != b else float("nan")
            for j, u, b in zip(js, unrefined, best)]
    rho = [j["spearman"] for j in js if np.isfinite(j["spearman"])]
    ranked.append((mean(regret), float(np.std(regret)), rule))
    lines.append(f"| {rule} | {', '.join(str(j['pick']) for j in js)} | {mean([j['pick_downstream'] for j in js]):.4g} "
                 f"| {mean(regret):.2f} ± {np.std(regret):.2f} | {sum(j['regret'] == 0 for j in js)}/{n} "
                 f"| {sum(j['refused_best'] for j in js)}/{n} | {100 * np.nanmean(kept):.0f}% "
                 f"| {mean(rho) if rho else float('nan'):.2f} |")
  if ranked:
    ranked.sort()
    (r1, s1, first), rest = ranked[0], ranked[1:]
    line = f"Lowest mean regret: {first} ({r1:.2f} ± {s1:.2f} over {n} runs)"
    if rest:
      r2, s2, second = rest[0]
      line += (f"; next {second} ({r2:.2f} ± {s2:.2f}): "
               + ("the difference is within the spread over runs." if r2 - r1 <= max(s1, s2)
                  else "the difference exceeds the spread over runs."))
    lines += ["", line + (" One run: no spread; compare rules over several runs." if n == 1 else "")]
  stds = [r["downstream_noise"]["std"] for r in results if "downstream_noise" in r]
  if stds and mean(unrefined) - mean(best) < float(np.mean(stds)):
    lines += ["", f"The best checkpoint gains {mean(unrefined) - mean(best):.3g} over unrefined images, less "
              f"than the measure's seed noise ({np.mean(stds):.3g}): no checkpoint measurably beats the unrefined "
              "images, so regrets among the near-best checkpoints are noise and gain-kept shares divide by "
              "that tiny gain; only a pick worse than unrefined by more than the noise says something."]
  return lines


def save_result(path: str, result: dict, **extra) -> None:
  """``compare``'s result (and ``extra`` fields) as JSON."""
  with open(path, "w") as f:
    json.dump({**result, **extra}, f, indent=1, default=str)


def load_result(path: str) -> dict:
  """A saved result with its step keys back to ints."""
  with open(path) as f:
    result = json.load(f)
  ints = lambda d: {int(k): v for k, v in d.items()}  # noqa: E731
  result["scores"] = {rule: ints(by_step) for rule, by_step in result["scores"].items()}
  result["downstream"] = ints(result["downstream"])
  result["judged"] = rules_lib.judge(result["scores"], result["downstream"])  # today's judge
  return result

