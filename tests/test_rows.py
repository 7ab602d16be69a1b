"""The estimator stage's loop over rows and seeds (experiments/rows.train_rows)."""

import json
import os

import pytest


def test_train_rows_trains_what_is_missing_and_builds_inputs_only_then(tmp_path):
  from simgan_jax.experiments import rows

  built, trained, said = [], [], []
  done_dir = tmp_path / "a" / "seed_0"
  os.makedirs(done_dir)
  json.dump({"from": "disk"}, open(done_dir / "results.json", "w"))

  def source(name):
    return lambda: built.append(name) or f"source {name}"

  def train(seed, source, eval_sets, run_dir):
    trained.append((source, seed, eval_sets["test"], os.path.relpath(run_dir, tmp_path)))
    return {"seed": seed}

  evals = []
  results = rows.train_rows({"a": source("a"), "b": source("b")}, (0, 1), str(tmp_path), said.append, "net",
                            lambda: evals.append(1) or {"test": "T"}, train)
  assert results == {"a": {"0": {"from": "disk"}, "1": {"seed": 1}}, "b": {"0": {"seed": 0}, "1": {"seed": 1}}}
  assert trained == [("source a", 1, "T", "a/seed_1"), ("source b", 0, "T", "b/seed_0"),
                     ("source b", 1, "T", "b/seed_1")]
  assert built == ["a", "b"] and evals == [1]  # each source once, the evaluation sets once
  assert said == ["net: training set a, seed 1", "net: training set b, seed 0", "net: training set b, seed 1"]
  # Everything on disk: nothing is built.
  built.clear(), evals.clear()
  for name, seed in (("a", 1), ("b", 0), ("b", 1)):
    os.makedirs(tmp_path / name / f"seed_{seed}")
    json.dump({"seed": seed}, open(tmp_path / name / f"seed_{seed}" / "results.json", "w"))
  assert rows.train_rows({"a": source("a"), "b": source("b")}, (0, 1), str(tmp_path), said.append, "net",
                         lambda: evals.append(1) or {"test": "T"}, train) == results
  assert built == [] and evals == []


def test_a_finished_run_scored_on_other_data_is_scored_again_never_read_as_this_one(tmp_path):
  """Rows copied from a validation workdir must not be read as test results."""
  from simgan_jax.errors import DataError
  from simgan_jax.experiments import rows

  validation = {"test": "eyesim_target:validation", "target_eval_examples": 0}
  test = {"test": "eyesim_target:test", "target_eval_examples": 0}
  for seed, record in ((0, validation), (1, None), (2, test)):  # other data, no record (older run), this data
    os.makedirs(tmp_path / "a" / f"seed_{seed}")
    done = {"steps": 9, "eval": {"test": {"error": "old"}}, **({"eval_data": record} if record else {})}
    json.dump(done, open(tmp_path / "a" / f"seed_{seed}" / "results.json", "w"))
  evaluated, said = [], []

  def evaluate(seed, eval_sets, run_dir):
    evaluated.append((seed, os.path.relpath(run_dir, tmp_path)))
    return {"test": {"error": f"new on {eval_sets['test']}"}}

  def train(*args):
    raise AssertionError("nothing should train")

  results = rows.train_rows({"a": lambda: "source"}, (0, 1, 2), str(tmp_path), said.append, "net",
                            lambda: {"test": "TEST SET"}, train, eval_data=test, evaluate=evaluate)
  assert evaluated == [(0, "a/seed_0"), (1, "a/seed_1")]
  assert results["a"]["0"]["eval"] == results["a"]["1"]["eval"] == {"test": {"error": "new on TEST SET"}}
  assert results["a"]["2"]["eval"] == {"test": {"error": "old"}}  # recorded as this data: read back
  on_disk = json.load(open(tmp_path / "a" / "seed_0" / "results.json"))
  assert on_disk["eval_data"] == test and on_disk["eval_data_was"] == validation and on_disk["steps"] == 9
  assert "evaluated on {'test': 'eyesim_target:validation'" in said[0]
  # Read back now without evaluating again.
  evaluated.clear()
  rows.train_rows({"a": lambda: "source"}, (0, 1, 2), str(tmp_path), said.append, "net",
                  lambda: {"test": "TEST SET"}, train, eval_data=test, evaluate=evaluate)
  assert evaluated == []
  # Without a way to evaluate, other data is refused, naming the file.
  with pytest.raises(DataError, match=r"a/seed_0/results.json: evaluated on .*validation"):
    rows.train_rows({"a": lambda: "source"}, (0,), str(tmp_path), said.append, "net",
                    lambda: {"test": "TEST SET"}, train, eval_data=validation)


def test_evaluate_saved_scores_the_saved_estimator_as_training_did(tmp_path):
  from simgan_jax import tasks
  from simgan_jax.tasks import loop
  from tests.test_gaze import _gaze_pool

  pool = _gaze_pool()
  task = tasks.get("gaze")
  config = task.get_config("smoke")
  sets = {"test": (pool.images[:16], pool.labels["gaze"][:16])}
  trained = loop.train_estimator(task.task, config, pool, sets, str(tmp_path))
  again = loop.evaluate_saved(task.task, config, sets, str(tmp_path))
  assert again["test"]["mean_angular_error_deg"] == pytest.approx(
      trained["eval"]["test"]["mean_angular_error_deg"], rel=1e-5)
  other = loop.evaluate_saved(task.task, config, {"test": (pool.images[16:32], pool.labels["gaze"][16:32])},
                              str(tmp_path))
  assert other["test"]["mean_angular_error_deg"] != again["test"]["mean_angular_error_deg"]
  # The config.json the run wrote is the config it was given: reading it back passes.
  from simgan_jax.errors import DataError
  from simgan_jax.experiments import rows
  rows.check_settings(str(tmp_path), config)
  config.num_steps += 1
  with pytest.raises(DataError, match="num_steps"):
    rows.check_settings(str(tmp_path), config)


def test_a_finished_run_trained_with_other_estimator_settings_is_refused(tmp_path):
  """A rerun with another estimator schedule must not read old estimators as its own."""
  import ml_collections
  from simgan_jax.errors import DataError
  from simgan_jax.experiments import rows

  def config(**changes):
    c = ml_collections.ConfigDict({"seed": 0, "num_steps": 600, "log_every": 100, "data_dir": "",
                                   "optimizer": {"learning_rate": 1e-3, "lr_decay_steps": ()}})
    for k, v in changes.items():
      section, _, field = k.rpartition(".")
      (c[section] if section else c)[field] = v
    return c

  for seed, written in ((0, config()), (1, config(log_every=7, data_dir="/elsewhere")),
                        (2, config(**{"optimizer.lr_decay_steps": (450,)}))):
    os.makedirs(tmp_path / "a" / f"seed_{seed}")
    json.dump({"seed": seed}, open(tmp_path / "a" / f"seed_{seed}" / "results.json", "w"))
    written.seed = seed
    (tmp_path / "a" / f"seed_{seed}" / "config.json").write_text(written.to_json_best_effort())

  def train(*args):
    raise AssertionError("nothing should train")

  settings = lambda seed: config(seed=seed)
  # Logging and data-location fields do not count.
  assert rows.train_rows({"a": lambda: "s"}, (0, 1), str(tmp_path), print, "net", dict, train,
                         settings=settings) == {"a": {"0": {"seed": 0}, "1": {"seed": 1}}}
  with pytest.raises(DataError, match=r"a/seed_2/config.json: this finished run was trained with other "
                                      r"estimator settings \(optimizer.lr_decay_steps: \[450\] there, \[\] now\)"):
    rows.train_rows({"a": lambda: "s"}, (0, 1, 2), str(tmp_path), print, "net", dict, train, settings=settings)
  # Another seed is another setting too: seed_0's run is not seed 1's.
  with pytest.raises(DataError, match=r"a/seed_0/config.json: .*seed: 0 there, 1 now"):
    rows.train_rows({"a": lambda: "s"}, (0,), str(tmp_path), print, "net", dict, train,
                    settings=lambda seed: config(seed=1))
  os.remove(tmp_path / "a" / "seed_0" / "config.json")
  with pytest.raises(DataError, match=r"a/seed_0/config.json: missing or unreadable"):
    rows.train_rows({"a": lambda: "s"}, (0,), str(tmp_path), print, "net", dict, train, settings=settings)
