"""Label-free selection rules that try to predict which checkpoint's refined data trains
the best task network, and how to judge a rule against the downstream truth.

Each rule scores one checkpoint from its refined images with the synthetic labels
they keep, the unlabelled real pool and held-out labelled synthetic images; no
target label is used. Lower is better for every rule. The task network is
``probe/drift.py``'s (``config.drift``: the same small network, steps and
learning rate as the label-drift probe), trained afresh per call:

* ``reverse_validation``: train A on the refined images, pseudo-label the real
  pool with A, train B on the pseudo-labelled real images, and report B's error on
  held-out *synthetic* images with their true labels. Refined data that keeps the
  labels and looks like the real pool gives an A whose pseudo-labels are right, so
  B learns the task back (Zhong et al., ECML 2010; the DA-model-selection form).
* ``agreement``: train two networks on the refined images from different seeds
  and report how much their predictions on real images disagree (class flip rate,
  angle in degrees, or mean absolute change in label standard deviations). Blind
  to labels changed the same way for every image (a mirrored class layout), which
  reverse validation catches.
* ``entropy`` (classification only): the mean prediction entropy (nats) on real
  images of a network trained on the refined images.

``judge(scores, downstream)`` says, per rule, which checkpoint it picks, how that
pick did downstream against the best and the worst scored checkpoint, and the
Spearman rank correlation of the rule with the downstream result.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from simgan_jax.data import sources as sources_lib
from simgan_jax.errors import ConfigError
from simgan_jax.probe import drift as drift_lib

RULES = ("reverse_validation", "agreement", "entropy")


def train_task(config, images: np.ndarray, values: np.ndarray, kind: str, label: str, seed: int):
  """A task network of ``kind`` trained on (images, labels[label]); ``seed`` offsets
  ``config.drift.seed`` so that the networks of one rule differ."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.drift.seed, c.drift.label, c.drift.task = int(c.drift.seed) + int(seed), label, kind
  source = sources_lib.ArraySource(images, {label: values}, shard_pool=False, where="selection rule")
  return drift_lib.train_task_network(c, source, source.device_data(), tuple(images.shape[1:]),
                                      log=lambda _: None)


def _as_labels(task, outputs: np.ndarray, like: np.ndarray) -> np.ndarray:
  """A network's outputs turned into labels of the same form as ``like`` (pseudo-labels)."""
  if task.kind == "classify":
    return outputs.argmax(-1).reshape(-1, *like.shape[1:]).astype(like.dtype)
  if task.kind == "regress":
    values = outputs * task.label_scale + task.label_mean
    return values.reshape(-1, *like.shape[1:]).astype(like.dtype)
  return outputs.astype(like.dtype)  # gaze vectors


def errors(task, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per-image error against true labels: class wrong (0/1), angle (deg), or mean
  absolute error in label standard deviations."""
  if task.kind == "classify":
    return (outputs.argmax(-1) != labels.reshape(len(labels), -1)[:, 0]).astype(np.float64)
  if task.kind == "regress":
    target = (labels.reshape(len(labels), -1) - task.label_mean) / task.label_scale
    return np.mean(np.abs(outputs - target), axis=-1)
  return task.drift(outputs, labels)  # the angle between predicted and true gaze


def task_of(config, labels: dict[str, np.ndarray]) -> tuple[str, str]:
  """(kind, label) the rules train on: ``config.drift``'s choice from the synthetic labels."""
  chosen = drift_lib.choose_task(config, labels)
  if chosen is None:
    raise ConfigError("selection rules: the synthetic data has no numeric label to train a task network on")
  return chosen


def reverse_validation(config, refined: np.ndarray, labels: dict[str, np.ndarray], real: np.ndarray,
                       heldout: np.ndarray, heldout_labels: dict[str, np.ndarray]) -> float:
  """Error on held-out synthetic images of a network trained on real images that a
  refined-trained network pseudo-labelled (module docstring)."""
  kind, label = task_of(config, labels)
  forward = train_task(config, refined, labels[label], kind, label, seed=0)
  pseudo = _as_labels(forward, drift_lib.predict(forward, real), labels[label])
  backward = train_task(config, real, pseudo, kind, label, seed=1)
  return float(np.mean(errors(backward, drift_lib.predict(backward, heldout), heldout_labels[label])))


def agreement(config, refined: np.ndarray, labels: dict[str, np.ndarray], real: np.ndarray) -> float:
  """Disagreement on real images of two refined-trained networks (module docstring)."""
  kind, label = task_of(config, labels)
  first, second = (train_task(config, refined, labels[label], kind, label, seed=s) for s in (0, 1))
  return float(np.mean(first.drift(drift_lib.predict(first, real), drift_lib.predict(second, real))))


def entropy(config, refined: np.ndarray, labels: dict[str, np.ndarray], real: np.ndarray) -> float:
  """Mean prediction entropy (nats) on real images; classification only."""
  kind, label = task_of(config, labels)
  if kind != "classify":
    raise ConfigError(f"selection rule 'entropy': needs class labels; '{label}' is a {kind} label")
  logits = drift_lib.predict(train_task(config, refined, labels[label], kind, label, seed=0), real)
  logits = logits - logits.max(-1, keepdims=True)
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  return float(np.mean(-np.sum(p * np.log(np.maximum(p, 1e-12)), axis=-1)))


def score_all(config, refined: np.ndarray, labels: dict[str, np.ndarray], real: np.ndarray,
              heldout: np.ndarray, heldout_labels: dict[str, np.ndarray],
              rules: tuple[str, ...] = RULES) -> dict[str, float]:
  """{rule: score} for one checkpoint (``entropy`` left out for non-class labels)."""
  kind, _ = task_of(config, labels)
  out = {}
  for rule in rules:
    if rule == "reverse_validation":
      out[rule] = reverse_validation(config, refined, labels, real, heldout, heldout_labels)
    elif rule == "agreement":
      out[rule] = agreement(config, refined, labels, real)
    elif rule == "entropy":
      if kind == "classify":
        out[rule] = entropy(config, refined, labels, real)
    else:
      raise ConfigError(f"selection rule {rule!r}: unknown; known: {', '.join(RULES)}")
  return out


def spearman(x: list[float], y: list[float]) -> float:
  """Spearman's rank correlation (average ranks for ties); nan for fewer than 3 points
  or a constant side."""
  if len(x) < 3:
    return float("nan")

  def ranks(v):
    v = np.asarray(v, np.float64)
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v), dtype=np.float64)
    for value in np.unique(v):  # ties share their mean rank
      r[v == value] = r[v == value].mean()
    return r

  a, b = ranks(x), ranks(y)
  if a.std() == 0 or b.std() == 0:
    return float("nan")
  return float(np.corrcoef(a, b)[0, 1])


def judge(scores: dict[str, dict[int, float]], downstream: dict[int, float],
          higher_is_better: bool = False) -> dict[str, dict]:
  """Per rule (``scores``: {rule: {step: score}}, lower picks): the step it picks among
  the checkpoints it scores finitely, that step's downstream value beside the best and
  the worst of *all* judged checkpoints (a rule that refuses the checkpoint that helps
  most is charged for it: ``refused_best``), the share of the best-worst range the pick
  lost (``regret``: 0 = picked the best, 1 = the worst), how many judged checkpoints it
  refused (inf or no score), and the Spearman correlation between the rule's finite
  scores and the downstream *goodness* (+1 = the rule orders those checkpoints exactly
  as the downstream result does)."""
  sign: Callable[[float], float] = (lambda v: v) if higher_is_better else (lambda v: -v)
  judged = sorted(downstream)
  values = [downstream[s] for s in judged]
  out = {}
  for rule, by_step in scores.items():
    steps = [s for s in judged if s in by_step and np.isfinite(by_step[s])]
    if not steps:
      out[rule] = {"pick": None, "reason": "no checkpoint has both a finite score and a downstream result"}
      continue
    best = max(values, key=sign)
    worst = min(values, key=sign)
    best_step = judged[values.index(best)]
    pick = min(steps, key=lambda s: (by_step[s], s))
    spread = abs(best - worst)
    out[rule] = {"pick": pick, "pick_downstream": downstream[pick], "best": best, "worst": worst,
                 "best_step": best_step, "regret": abs(best - downstream[pick]) / spread if spread else 0.0,
                 "refused": len(judged) - len(steps), "refused_best": best_step not in steps,
                 # Lower rule score = better, so correlate -score with goodness.
                 "spearman": spearman([-by_step[s] for s in steps], [sign(downstream[s]) for s in steps]),
                 "checkpoints": len(steps)}
  return out
