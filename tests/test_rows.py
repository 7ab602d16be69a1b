"""The estimator stage's loop over rows and seeds (experiments/rows.train_rows)."""

import json
import os


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
