"""Closing blocks (simgan_jax/summary.py) and the refiner's domain check (simgan_jax/domain.py)."""

import json
import os

import pytest

from simgan_jax import domain, summary
from simgan_jax.configs import default, handsim
from simgan_jax.configs import reproduce as reproduce_config
from simgan_jax.probe import selection


def _run(tmp_path, entries):
  """A workdir with checkpoint folders and their probe entries in metrics.jsonl."""
  for entry in entries:
    os.makedirs(tmp_path / "checkpoints" / str(entry["step"]))
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(e) + "\n" for e in entries)
  return str(tmp_path)


def test_selected_checkpoint_is_best_checkpoints_with_the_runner_up_and_the_rule(tmp_path):
  config = default.get_config("smoke")  # 5 pretraining steps: step 5 is no candidate
  workdir = _run(tmp_path, [
      {"step": 5, "realism_kid": 0.1, "selection_score": 0.1},
      {"step": 10, "realism_kid": 0.7, "selection_score": 0.7, "task_error_synthetic": 4.5},
      {"step": 15, "realism_kid": 0.4, "selection_score": 0.4, "task_error_synthetic": 4.25},
      {"step": 20, "realism_kid": 0.5, "selection_score": float("inf"), "collapsed": 1.0}])
  os.makedirs(tmp_path / "task_network")
  (tmp_path / "task_network" / "task_network.json").write_text('{"kind": "gaze", "unit": "deg"}')
  chosen = summary.selected_checkpoint(config, workdir)
  assert chosen["step"] == selection.best_checkpoint(config, workdir)["step"] == 15
  assert chosen["runner_up"] == {"step": 10, "scores": {"selection_score": 0.7, "realism_kid": 0.7}}
  lines = summary.selection_lines(chosen)
  assert lines == [
      "selected checkpoint: step 15 (selection_score 0.4, realism_kid 0.4)",
      "  runner-up: step 10 (selection_score 0.7, realism_kid 0.7)",
      "  rule: lowest realism_kid (config.selection.metric; collapsed or over config.drift.max_drift: never; "
      "KID less than 0.25 of the way from the unrefined images' to 0: only if all are (config.selection.min_kid_gain))",
      "  drift numbers are only as good as the drift network's own error of 4.25 deg on synthetic images"]

  facts = summary.train_summary(config, workdir, seconds=65.0)
  block = summary.format_block(facts).splitlines()
  assert block[0] == ("done: trained 20 of 9 steps in 1m05s; checkpoints at steps 5, 10, 15, 20; "
                      "0 sample grids written")
  assert f"  python launch/refine.py --checkpoint={workdir} --step=best --data=eyesim --num_examples=100000 " \
         f"--out={workdir}_refined" in block
  path = summary.append_json(workdir, facts)
  assert json.loads(open(path).read())["selected"]["step"] == 15
  # The sample grid linked is the selected step's, not the newest; the newest when it has none.
  os.makedirs(tmp_path / "samples")
  for step in (10, 20):
    (tmp_path / "samples" / f"step_{step:07d}.png").write_bytes(b"")
  assert summary.train_summary(config, workdir)["outputs"]["samples"].endswith("samples/step_0000020.png")
  (tmp_path / "samples" / "step_0000015.png").write_bytes(b"")
  assert summary.train_summary(config, workdir)["outputs"]["samples"].endswith("samples/step_0000015.png")


def test_no_scored_checkpoint_says_why_and_refine_takes_the_newest(tmp_path):
  config = default.get_config("smoke")
  workdir = _run(tmp_path, [])
  os.makedirs(tmp_path / "checkpoints" / "9")
  facts = summary.train_summary(config, workdir)  # :smoke scores no checkpoint
  assert summary.selection_lines(facts["selected"]) == [
      "selected checkpoint: none (checkpoints are not scored (config.realism.num_images is 0); "
      "refine takes the newest)"]
  config.realism.num_images = 32
  assert summary.selection_lines(summary.train_summary(config, workdir)["selected"])[0].startswith(
      f"selected checkpoint: none ({workdir}: no checkpoint on disk has a score in metrics.jsonl")
  assert facts["next"][0].startswith(f"python launch/refine.py --checkpoint={workdir} --data=eyesim ")


def test_data_line_names_the_data_used():
  config = default.get_config("smoke")
  assert "built-in eyesim_target set (rendered into a cache on first use" in summary.data_line(config)
  config.real_data = default.data_config("image_folder", builder_config="35x55x1", data_dir="/d")
  assert summary.data_line(config) == ("synthetic: the eyesim simulator (rendered on the fly); "
                                       "real: prepared image_folder/35x55x1 in /d")


def test_domain_check_warns_for_another_source_and_stops_at_another_subject_size_or_channels():
  eyes = domain.refiner_domain(default.get_config("smoke"))
  assert eyes == {"source": "eyesim", "target": "eyesim_target", "image_shape": [35, 55, 1], "subject": "eyes"}
  assert domain.check(eyes, "eyesim", (35, 55, 1)) == []
  assert "trained on eyesim images" in domain.check(eyes, "unityeyes", (35, 55, 1))[0]
  assert "unknown subject" in domain.check(eyes, "image_folder", (35, 55, 1))[0]
  with pytest.raises(domain.DomainMismatch, match="handsim images show hands.*pass --allow_domain_mismatch"):
    domain.check(eyes, "handsim", (35, 55, 1))
  assert "allowed by --allow_domain_mismatch" in domain.check(eyes, "handsim", (35, 55, 1), allow=True)[0]
  # Another channel count: no flag helps (the first convolution takes only its own).
  with pytest.raises(domain.DomainMismatch, match="3-channel images, .* 1-channel ones and takes no other"):
    domain.check(eyes, "image_folder", (35, 55, 3), allow=True)
  # Another size: refused, unless the user's own config asks for it.
  with pytest.raises(domain.DomainMismatch, match="36x60 images, the refiner was trained at 35x55; prepare"):
    domain.check(eyes, "image_folder", (36, 60, 1), allow=True)
  assert domain.check(eyes, "eyesim", (36, 60, 1), asked_shape=(36, 60, 1)) == [
      "refining at 36x60 as the given config asks; the refiner was trained at 35x55"]
  config = default.get_config("smoke")
  with pytest.raises(domain.DomainMismatch, match="image_folder: 64x64 images"):
    domain.check_refine(config, config, "image_folder/64x64x1")
  hands = domain.refiner_domain(handsim.get_config("smoke"))
  assert hands["subject"] == "hands" and hands["image_shape"] == [32, 32, 1]
  with pytest.raises(domain.DomainMismatch, match="eyesim images show eyes"):
    domain.check(hands, "eyesim", (32, 32, 1))


def test_refine_selection_of_a_shipped_refiner_is_its_one_step(tmp_path):
  from simgan_jax.refining import pretrained

  shipped = pretrained.meta(pretrained.resolve("pretrained:eyesim"))  # what the export recorded
  chosen = summary.refine_selection(default.get_config("smoke"), "pretrained:eyesim")
  assert chosen["step"] == shipped["step"] and chosen["scores"]["realism_kid"] == pytest.approx(
      shipped["scores"]["realism_kid"])
  assert chosen["rule"].startswith("the one checkpoint shipped; ") and chosen["rule"].endswith(
      "MODEL_CARD.md says how it was chosen")
  config = default.get_config("smoke")
  workdir = _run(tmp_path, [{"step": 9, "realism_kid": 1.0, "selection_score": float("inf"), "collapsed": 1.0}])
  with pytest.raises(ValueError, match="no checkpoint qualifies for selection"):
    summary.refine_selection(config, workdir)


def test_reproduce_block_names_the_selection_report_and_next_steps(tmp_path):
  config = reproduce_config.get_config("eyesim_gaze:smoke")
  _run(tmp_path / "simgan", [{"step": 6, "realism_kid": 0.3, "selection_score": 0.3},
                             {"step": 9, "realism_kid": 0.2, "selection_score": 0.2}])
  (tmp_path / "report.md").write_text("# report\n")
  facts = summary.reproduce_summary(config, str(tmp_path), {"report": str(tmp_path / "report.md")}, 130.0)
  block = summary.format_block(facts).splitlines()
  assert block[:3] == ["done: reproduced the experiment in 2m10s",
                       "selected checkpoint: step 9 (selection_score 0.2, realism_kid 0.2)",
                       "  runner-up: step 6 (selection_score 0.3, realism_kid 0.3)"]
  assert f"  report: {tmp_path}/report.md" in block and f"  checkpoints: {tmp_path}/simgan/checkpoints" in block
  assert block[-2].startswith(f"  python launch/reproduce.py --workdir={tmp_path} --publish=")


def test_train_and_reproduce_score_the_same_checkpoints_with_one_rule():
  # Catches the :cpu SimGAN run of launch/train.py scoring other checkpoints (or ranking
  # them by another rule) than the same run inside launch/reproduce.py: "best" would then
  # differ between the two commands on one run.
  from simgan_jax.configs import default, reproduce as reproduce_config

  for variant in ("cpu", "smoke", ""):
    alone = default.get_config("cpu,camera" if variant == "cpu" else variant)  # eyesim_gaze:cpu's SimGAN
    inside = reproduce_config.get_config(f"eyesim_gaze:{variant}" if variant else "eyesim_gaze").simgan
    if variant == "smoke":  # the smoke reproduction turns the probe on (off in :smoke)
      continue
    assert inside.checkpoint_every == alone.checkpoint_every, variant
    assert inside.selection.to_dict() == alone.selection.to_dict(), variant
    assert inside.drift.to_dict() == alone.drift.to_dict(), variant
