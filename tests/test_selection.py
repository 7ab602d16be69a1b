"""Checkpoint selection (probe/selection.py): collapse, selection_score, --step=best."""

import json
import math
import os

import numpy as np
import pytest

from simgan_jax.configs import default
from simgan_jax.errors import ConfigError
from simgan_jax.probe import selection


def _config():
  return default.get_config("smoke")  # pretraining ends at step 3 + 2 = 5


def test_constant_output_is_a_collapse_and_scores_inf():
  rng = np.random.default_rng(0)
  synthetic = rng.integers(0, 256, (32, 35, 55, 1), dtype=np.uint8)
  config = _config()
  same = selection.output_spread(synthetic, synthetic)
  # All-black output (the lambda-0.1 run) and one image repeated for every input.
  black = selection.output_spread(synthetic, np.zeros_like(synthetic))
  repeated = selection.output_spread(synthetic, np.repeat(synthetic[:1], 32, axis=0))
  assert same == {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0}
  assert black["refined_std_ratio"] == 0.0 and black["refined_spread_ratio"] == 0.0
  assert repeated["refined_std_ratio"] > 0.5 and repeated["refined_spread_ratio"] == 0.0
  # Catches a check that only looks at per-image std (a repeated image has plenty).
  assert selection.collapse_reasons(config, same, None) == []
  assert len(selection.collapse_reasons(config, black, None)) == 2
  assert "spread across images" in selection.collapse_reasons(config, repeated, None)[0]
  # A drift over 3x the bound is a collapse too; over the bound alone only disqualifies.
  assert selection.collapse_reasons(config, {**same, "label_drift": 16.0}, 5.0)
  assert not selection.collapse_reasons(config, {**same, "label_drift": 6.0}, 5.0)
  scores = {**same, "realism_kid": 0.7, "label_drift": 6.0}
  assert selection.score(config, scores, 5.0, collapsed=False) == math.inf
  assert selection.score(config, scores, 10.0, collapsed=False) == 0.7
  assert selection.score(config, scores, 10.0, collapsed=True) == math.inf
  config.selection.metric = "two_sample_accuracy"
  with pytest.raises(ConfigError, match="config.selection.metric: 'two_sample_accuracy' is not measured"):
    selection.score(config, scores, 10.0, collapsed=False)
  # Selecting by a probe that is off stops before training, not at the first checkpoint.
  from simgan_jax import train

  train.validate_config(config, 1)
  config.two_sample.enabled = False
  with pytest.raises(ConfigError, match="^config.selection.metric: 'two_sample_accuracy' is not measured: "
                     "config.two_sample.enabled is false"):
    train.validate_config(config, 1)
  config.selection.metric = "realism_kid"
  train.validate_config(config, 1)


def _made_up_run(root, entries, on_disk):
  with open(root / "metrics.jsonl", "w") as f:
    for entry in entries:
      f.write(json.dumps(entry) + "\n")
  for step in on_disk:
    os.makedirs(root / "checkpoints" / str(step))


def test_best_step_skips_collapsed_drifting_deleted_and_pretraining_checkpoints(tmp_path):
  inf = float("inf")
  _made_up_run(tmp_path, [
      {"step": 3, "realism_kid": 0.1, "selection_score": 0.1},  # pretraining: no candidate
      {"step": 4, "discriminator_loss": 1.0},
      {"step": 6, "realism_kid": 0.2, "selection_score": inf, "collapsed": 1.0},  # lowest KID, collapsed
      {"step": 9, "realism_kid": 2.0, "selection_score": 2.0},
      {"step": 12, "realism_kid": 0.5, "selection_score": 0.5},  # best, but deleted
      {"step": 15, "realism_kid": 9.0, "selection_score": 9.0},
      {"step": 15, "realism_kid": 1.5, "selection_score": 1.5},  # a resumed run's entry wins
      {"step": 18, "realism_kid": 0.3, "selection_score": inf, "collapsed": 0.0,
       "label_drift": 13.0},  # over the drift bound
  ], on_disk=(3, 6, 9, 15, 18))
  config = _config()
  config.drift.max_drift = 12.0
  best = selection.best_checkpoint(config, str(tmp_path))
  # Wrong picks this catches: 3 (pretraining), 6 (collapsed, lowest KID), 12 (deleted),
  # 18 (over the drift bound), 9 (the first entry of 15 read instead of the last).
  assert best["step"] == 15
  assert best["candidates"] == [6, 9, 15, 18]
  assert best["selection_scores"]["6"] == inf and best["scores"]["6"] == 0.2
  assert selection.resolve_step(config, str(tmp_path), "best") == 15
  assert selection.resolve_step(_config(), str(tmp_path), "best") == 18  # smoke: no drift bound
  assert selection.resolve_step(_config(), str(tmp_path), "9") == 9
  assert selection.resolve_step(_config(), str(tmp_path), None) is None
  with pytest.raises(ConfigError, match="--step: expected a checkpoint step or 'best', got 'newest'"):
    selection.resolve_step(_config(), str(tmp_path), "newest")


def test_selection_applies_the_current_drift_bound_to_a_finished_run(tmp_path):
  """A run logged under the old 5-degree bound: step 9 (drift 6.1) scored +inf then; the
  bound that applies now (the config's, else the default for the run's task network)
  decides, so a finished run can be re-selected without retraining."""
  inf = float("inf")
  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0}
  _made_up_run(tmp_path, [
      {"step": 6, "realism_kid": 0.9, "selection_score": 0.9, "label_drift": 4.0, **spread},
      {"step": 9, "realism_kid": 0.5, "selection_score": inf, "label_drift": 6.1, **spread},
      {"step": 12, "realism_kid": 0.4, "selection_score": inf, "label_drift": 25.0, **spread},
  ], on_disk=(6, 9, 12))
  config = _config()
  config.drift.max_drift = 0.0  # the default: the bound for the run's kind of task network
  # No task network on record and no bound in the config: the logged scores stand.
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 6
  os.makedirs(tmp_path / "task_network")
  with open(tmp_path / "task_network" / "task_network.json", "w") as f:
    json.dump({"kind": "gaze", "label": "gaze", "unit": "deg"}, f)
  assert selection.run_max_drift(config, str(tmp_path)) == 12.0  # the gaze default
  best = selection.best_checkpoint(config, str(tmp_path))
  assert best["step"] == 9 and best["selection_scores"]["12"] == inf
  config.drift.max_drift = 5.0
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 6
  config.drift.max_drift = 30.0
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 12


def test_drift_ranked_selection_among_realistic_checkpoints(tmp_path):
  """metric=label_drift: the least-drifting checkpoint among those within realism_ratio x the
  lowest KID. Catches: ranking by KID (picks 9), ignoring the ratio (picks 6, barely refined),
  and the ratio taken over pretraining checkpoints (step 3's KID would set the bound)."""
  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0}
  _made_up_run(tmp_path, [
      {"step": 3, "realism_kid": 0.01, "label_drift": 0.5, **spread},  # pretraining
      {"step": 6, "realism_kid": 4.0, "label_drift": 2.0, **spread},  # early, far from real
      {"step": 9, "realism_kid": 0.57, "label_drift": 5.95, **spread},
      {"step": 12, "realism_kid": 0.93, "label_drift": 4.73, **spread},
      {"step": 15, "realism_kid": 0.66, "label_drift": 4.25, **spread},
  ], on_disk=(3, 6, 9, 12, 15))
  config = _config()
  config.drift.max_drift = 12.0
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 9  # realism_kid: lowest KID
  config.selection.metric = "label_drift"
  best = selection.best_checkpoint(config, str(tmp_path))
  assert best["step"] == 15 and best["selection_scores"]["6"] == float("inf")
  config.selection.realism_ratio = 1.5  # 0.93 > 1.5 x 0.57: 12 is out, 15 still wins
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 15
  config.selection.realism_ratio = 1.1  # only 9 is within 1.1 x 0.57
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 9
  config.selection.realism_ratio = 0.0  # no realism bound: the least drift of all candidates
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 6


def test_cpu_default_selects_lowest_two_sample_accuracy_without_kid_window(tmp_path):
  """default.py:cpu ranks by two-sample accuracy over every adversarial checkpoint (the
  rule docs/selection_eyesim.md found best), with the drift bound still applied. Catches:
  the old label-drift default (picks 500), a KID window left on (2.0 > 2 x 0.5 refuses 600:
  picks 700), pretraining checkpoints competing (picks 300), and the drift bound dropped
  (picks 400)."""
  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0}
  _made_up_run(tmp_path, [
      {"step": 300, "realism_kid": 0.5, "label_drift": 0.5, "two_sample_accuracy": 0.6, **spread},
      {"step": 400, "realism_kid": 0.5, "label_drift": 13.0, "two_sample_accuracy": 0.7, **spread},
      {"step": 500, "realism_kid": 0.5, "label_drift": 3.0, "two_sample_accuracy": 0.9, **spread},
      {"step": 600, "realism_kid": 2.0, "label_drift": 5.0, "two_sample_accuracy": 0.8, **spread},
      {"step": 700, "realism_kid": 0.6, "label_drift": 4.0, "two_sample_accuracy": 0.85, **spread},
  ], on_disk=(300, 400, 500, 600, 700))
  config = default.get_config("cpu")  # pretraining ends at step 200 + 100 = 300
  config.drift.max_drift = 12.0
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 600


def test_min_step_keeps_earlier_checkpoints_out(tmp_path):
  """selection.min_step: the best-scored checkpoint at or after it, not an earlier one the
  probe prefers (catches a filter on > instead of >=, and one applied only to the rule
  text); none on disk at or after it is a one-line error naming the field."""
  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0}
  _made_up_run(tmp_path, [
      {"step": 400, "realism_kid": 0.5, "label_drift": 1.0, "two_sample_accuracy": 0.6, **spread},
      {"step": 500, "realism_kid": 0.5, "label_drift": 1.0, "two_sample_accuracy": 0.8, **spread},
      {"step": 600, "realism_kid": 0.5, "label_drift": 1.0, "two_sample_accuracy": 0.7, **spread},
      {"step": 700, "realism_kid": 0.5, "label_drift": 1.0, "two_sample_accuracy": 0.75, **spread},
  ], on_disk=(400, 500, 600, 700))
  config = default.get_config("cpu")
  config.drift.max_drift = 12.0
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 400
  config.selection.min_step = 500
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 600
  assert selection.best_checkpoint(config, str(tmp_path))["candidates"] == [500, 600, 700]
  assert "lowest two_sample_accuracy from step 500 on (config.selection.min_step)" in selection.rule_text(config)
  # The reports' words: a checkpoint kept out by min_step is not called pretraining.
  picked = selection.best_checkpoint(config, str(tmp_path))
  assert [selection.checkpoint_mark(config, picked, s) for s in (300, 400, 500, 600)] == [
      "pretraining", "before selection.min_step", "", "selected"]
  config.selection.min_step = 701
  with pytest.raises(ConfigError) as e:
    selection.best_checkpoint(config, str(tmp_path))
  assert "\n" not in str(e.value) and "config.selection.min_step=701" in str(e.value)


def test_no_qualifying_checkpoint_is_one_line(tmp_path):
  inf = float("inf")
  _made_up_run(tmp_path, [{"step": 6, "realism_kid": 0.2, "selection_score": inf, "collapsed": 1.0},
                          {"step": 9, "realism_kid": 0.4, "selection_score": inf}], on_disk=(6, 9))
  with pytest.raises(ConfigError) as e:
    selection.best_checkpoint(_config(), str(tmp_path))
  message = str(e.value)
  assert "\n" not in message and "no checkpoint qualifies" in message
  assert "(1 collapsed, the others over config.drift.max_drift)" in message


def test_runs_without_selection_score_rank_by_kid(tmp_path):
  _made_up_run(tmp_path, [{"step": 6, "realism_kid": 3.0}, {"step": 9, "realism_kid": 2.0}], on_disk=(6, 9))
  assert selection.best_checkpoint(_config(), str(tmp_path))["step"] == 9


def test_kid_window_works_when_the_lowest_kid_is_negative(tmp_path):
  """KID is unbiased: a refiner as real as the target scores about 0, often below. Catches
  the window ``ratio * min(kid)``, which for min <= 0 admits nothing (not even the best)."""
  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0}
  _made_up_run(tmp_path, [
      {"step": 6, "realism_kid": 2.0, "label_drift": 1.0, **spread},  # barely refined: out
      {"step": 9, "realism_kid": -0.05, "label_drift": 5.0, **spread},
      {"step": 12, "realism_kid": 0.15, "label_drift": 3.0, **spread},  # within noise of 9
  ], on_disk=(6, 9, 12))
  config = _config()
  config.drift.max_drift = 12.0
  config.selection.metric = "label_drift"
  best = selection.best_checkpoint(config, str(tmp_path))
  assert best["step"] == 12 and best["runner_up"] == 9
  assert selection.kid_window(-0.05, 2.0) == pytest.approx(2 * selection.KID_NOISE)
  assert selection.kid_window(0.57, 2.0) == pytest.approx(1.14)


def test_keep_best_keeps_exactly_what_step_best_picks(tmp_path):
  """Keep-best and --step=best must be one rule: ranking by the stored selection_score alone
  (no realism window) would keep step 6 (least drift, but far from real) and delete step 12,
  the checkpoint --step=best picks."""
  from simgan_jax import checkpoints

  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0}
  entries = [
      {"step": 6, "realism_kid": 4.0, "label_drift": 2.0, "selection_score": 2.0, **spread},
      {"step": 9, "realism_kid": 0.57, "label_drift": 5.95, "selection_score": 5.95, **spread},
      {"step": 12, "realism_kid": 0.66, "label_drift": 4.25, "selection_score": 4.25, **spread},
      {"step": 15, "realism_kid": 0.93, "label_drift": 4.73, "selection_score": 4.73, **spread},
      {"step": 18, "realism_kid": 0.9, "label_drift": 9.0, "selection_score": 9.0, **spread},
  ]
  config = _config()
  config.drift.max_drift = 12.0
  config.selection.metric = "label_drift"
  rank = lambda: selection.ranked_steps(config, str(tmp_path))  # noqa: E731
  mngr = checkpoints.manager(str(tmp_path), max_to_keep=1, keep_best=1, rank=rank)
  for entry in entries:  # as the loop does: the scores reach metrics.jsonl before the save
    with open(tmp_path / "metrics.jsonl", "a") as f:
      f.write(json.dumps(entry) + "\n")
    checkpoints.save(mngr, entry["step"], {"w": np.full((2,), entry["step"], np.float32)},
                     {"selection_score": entry["selection_score"]})
  mngr.close()
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 12
  assert checkpoints.steps(str(tmp_path)) == [12, 18]
  # The old policy (stored scores only) would have kept 6 instead: the test can tell.
  old = checkpoints._BestScored(1)
  infos = [type("Info", (), {"step": e["step"], "metrics": {"selection_score": e["selection_score"]}})
           for e in entries]
  assert [i.step for i, keep in zip(infos, old.should_preserve(infos)) if keep] == [6]


def test_rule_text_names_the_kid_window_only_when_there_is_one():
  """The rule in words (train.py's closing summary and the reports): a KID window is named
  only when it applies. Catches the folder report's old "within 0x the lowest KID"."""
  config = default.get_config("cpu")
  assert selection.rule_text(config) == (
      "lowest two_sample_accuracy (config.selection.metric; collapsed or over config.drift.max_drift: never; "
      "KID less than 0.25 of the way from the unrefined images' to 0: only if all are (config.selection.min_kid_gain)"
      "; KID above the unrefined images': never, the last pretraining checkpoint if no other qualifies "
      "(config.selection.refuse_kid_above_unrefined))")
  config.selection.min_kid_gain, config.selection.refuse_kid_above_unrefined = 0.0, False
  assert selection.rule_text(config) == ("lowest two_sample_accuracy (config.selection.metric; collapsed or "
                                         "over config.drift.max_drift: never)")
  config.selection.metric, config.selection.realism_ratio = "label_drift", 2.0
  assert selection.rule_text(config).startswith("lowest label_drift among checkpoints with realism_kid within 2x")


def test_a_refiner_that_has_barely_started_competes_only_when_none_has(tmp_path):
  """The grid-phase run's SimGAN seed 1 (docs/ablation_val_grid_phase8.md; its logged
  KIDs and probe accuracies): the probe scored step 1000 (KID 9.63, unrefined 10.49) better
  than every later checkpoint. The guard skips it (picks 1300); catches: no guard (1000),
  a guard that only refuses KIDs within noise of the unrefined one (9.63 is 8 stds away:
  1000), one that lets a checkpoint whose KID is worse than the unrefined images' compete
  (1400, probe 80%, would win), and no fallback when every checkpoint has barely started
  (raises)."""
  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0, "label_drift": 1.0,
            "realism_kid_unrefined": 10.49}
  rows = [(1000, 9.628, 0.101, 0.741), (1100, 25.03, 0.885, 0.999), (1200, 11.47, 0.313, 0.971),
          (1300, 3.67, 0.1, 0.991), (1400, 13.0, 0.3, 0.80)]
  _made_up_run(tmp_path, [{"step": s, "realism_kid": k, "realism_kid_std": sd, "two_sample_accuracy": t, **spread}
                          for s, k, sd, t in rows], on_disk=(300, 1000, 1100, 1200, 1300, 1400))
  config = default.get_config("cpu")
  config.drift.max_drift = 12.0
  best = selection.best_checkpoint(config, str(tmp_path))
  assert best["step"] == 1300
  assert best["selection_scores"]["1000"] == best["selection_scores"]["1400"] == math.inf
  config.selection.min_kid_gain = 0.0
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 1000
  # Every checkpoint barely started: the guard steps aside and the probe decides.
  config.selection.min_kid_gain = 0.25
  still = tmp_path / "still"
  still.mkdir()
  _made_up_run(still, [{"step": s, "realism_kid": k, "two_sample_accuracy": t, **spread}
                       for s, k, t in ((400, 10.4, 0.79), (500, 9.0, 0.78), (600, 8.2, 0.8))],
               on_disk=(400, 500, 600))
  assert selection.best_checkpoint(config, str(still))["step"] == 500
  # The boundary: 0.75 x 10.49 = 7.87; runs logged without the unrefined KID are not touched.
  assert selection.barely_refined({"realism_kid": 7.9, "realism_kid_unrefined": 10.49}, 0.25)
  assert not selection.barely_refined({"realism_kid": 7.8, "realism_kid_unrefined": 10.49}, 0.25)
  assert not selection.barely_refined({"realism_kid": 10.4}, 0.25)


def test_a_refiner_less_real_than_no_refiner_is_never_picked(tmp_path):
  """The score-function hand run's SimGAN seed 1 (docs/ablation_val_hand_sfdrop_free.md;
  its logged KIDs): step 400 erased most of each hand (KID 63.74 against the unrefined
  20.65), every later step collapsed. The guard picks the last pretraining checkpoint
  (300); catches: no guard (400), a fallback to the first pretraining checkpoint (100)
  or to none (raises). Off, the old pick; without a pretraining checkpoint on disk, the
  one-line error; a less-real checkpoint beside a better one simply loses."""
  spread = {"refined_std_ratio": 1.0, "refined_spread_ratio": 1.0, "realism_kid_unrefined": 20.65}
  collapsed = {"refined_std_ratio": 0.05, "refined_spread_ratio": 0.05, "realism_kid_unrefined": 20.65}
  rows = ([{"step": s, "realism_kid": 14.84, **spread} for s in (100, 200, 300)]
          + [{"step": 400, "realism_kid": 63.74, **spread}]
          + [{"step": s, "realism_kid": 2104.0 + s, **collapsed} for s in (500, 600)])
  _made_up_run(tmp_path, rows, on_disk=(100, 200, 300, 400, 500, 600))
  config = default.get_config("cpu")
  config.selection.metric, config.selection.realism_ratio = "realism_kid", 0.0
  config.refiner_pretrain_steps, config.discriminator_pretrain_steps = 200, 100
  best = selection.best_checkpoint(config, str(tmp_path))
  assert best["step"] == 300
  assert best["selection_scores"]["400"] == math.inf
  config.selection.refuse_kid_above_unrefined = False
  assert selection.best_checkpoint(config, str(tmp_path))["step"] == 400
  config.selection.refuse_kid_above_unrefined = True
  bare = tmp_path / "bare"
  bare.mkdir()
  _made_up_run(bare, rows, on_disk=(400, 500, 600))
  with pytest.raises(ConfigError, match="no checkpoint qualifies for selection"):
    selection.best_checkpoint(config, str(bare))
  mixed = tmp_path / "mixed"
  mixed.mkdir()
  _made_up_run(mixed, rows[:3] + [{"step": 400, "realism_kid": 25.0, **spread},
                                  {"step": 500, "realism_kid": 18.0, **spread}], on_disk=(300, 400, 500))
  assert selection.best_checkpoint(config, str(mixed))["step"] == 500
