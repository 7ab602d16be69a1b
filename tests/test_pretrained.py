"""Shipped refiners (simgan_jax.refining.pretrained, launch/export_refiner.py, --checkpoint=pretrained:NAME)."""

import csv
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from tests.conftest import REPO
from simgan_jax import checkpoints, parallel, training
from simgan_jax.refining import pretrained
from simgan_jax.configs import default
from simgan_jax.errors import ConfigError
from simgan_jax.refining import refine


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
  """A smoke workdir whose checkpoint holds perturbed (not fresh) refiner parameters."""
  root = tmp_path_factory.mktemp("simgan")
  config = default.get_config("smoke")
  mesh = parallel.make_mesh()
  state = training.create_state(training.make_setup(config, None, None, mesh.devices.size), mesh)
  state = state.replace(refiner_params=jax.tree.map(lambda x: x + 0.01, state.refiner_params), step=state.step + 7)
  mngr = checkpoints.manager(str(root), 3)
  checkpoints.save(mngr, 7, state)
  mngr.close()
  (root / "config.json").write_text(config.to_json_best_effort(indent=2))
  return str(root)


def test_export_round_trips_the_refiner_and_refines_like_the_workdir(trained_workdir, tmp_path):
  out = tmp_path / "shipped"
  command = [sys.executable, os.path.join(REPO, "launch", "export_refiner.py"), f"--workdir={trained_workdir}",
             "--step=7", "--name=test", f"--out={out}", "--command=python launch/train.py ..."]
  run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  assert "exported the refiner of step 7" in run.stdout
  assert sorted(os.listdir(out)) == sorted([pretrained.CONFIG, pretrained.PARAMS, pretrained.META, pretrained.CARD])
  config = refine.load_config(str(out))
  shipped, step = refine.restore_refiner(config, str(out))
  original, _ = refine.restore_refiner(config, trained_workdir, 7)
  assert step == 7
  jax.tree.map(np.testing.assert_array_equal, shipped, original)
  with pytest.raises(ConfigError, match="holds the refiner of step 7 only"):
    refine.restore_refiner(config, str(out), 3)
  # Refining through the shipped folder gives the workdir's pixels.
  a = refine.refine_dataset(config, str(out), "eyesim", str(tmp_path / "a"), num_examples=8, progress=False,
                            format="png", step="best")
  b = refine.refine_dataset(config, trained_workdir, "eyesim", str(tmp_path / "b"), num_examples=8, progress=False,
                            format="png")
  for name in sorted(n for n in os.listdir(a) if n.endswith(".png")):
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(a, name))),
                                  np.asarray(Image.open(os.path.join(b, name))))


def test_unknown_shipped_name_is_one_line():
  with pytest.raises(ConfigError, match=r"no shipped refiner 'nope'; shipped: "):
    refine.load_config("pretrained:nope")


@pytest.mark.skipif("eyesim" not in pretrained.available(), reason="no shipped eyesim refiner in this checkout")
def test_shipped_eyesim_refiner_loads_and_refines(tmp_path):
  """The README's command from a fresh clone: 64 refined PNGs with the simulator's labels."""
  out = tmp_path / "refined"
  command = [sys.executable, os.path.join(REPO, "launch", "refine.py"), "--checkpoint=pretrained:eyesim",
             "--data=eyesim", "--num_examples=64", "--format=png", f"--out={out}"]
  run = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert run.returncode == 0, run.stderr[-2000:]
  names = sorted(n for n in os.listdir(out) if n.endswith(".png"))
  assert len(names) == 64
  with open(out / refine.LABELS_CSV) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 64 and {"gaze_0", "gaze_1", "gaze_2"} <= set(rows[0])
  # Not collapsed: every refined eye has contrast, and the eyes differ from each other.
  images = np.stack([np.asarray(Image.open(out / n), np.float32) for n in names])
  assert images.std(axis=(1, 2)).min() > 5 and images.std(axis=0).mean() > 5


def test_model_card_use_line_refines_the_refiners_own_data():
  """The card's command must refine what the refiner was trained on (a hand refiner's card
  once told users to refine eyes)."""
  import json

  from simgan_jax.configs import handsim
  from simgan_jax.refining import export

  info = {"date": "2026-12-05", "step": 4, "workdir": "runs/x", "num_parameters": 1}
  assert "--data=handsim " in export.model_card("h", handsim.get_config("smoke"), info, "", "note")
  folder = default.get_config("smoke")
  folder.synthetic_data.name = "image_folder"
  assert "--data=YOUR_DATA_SPEC " in export.model_card("f", folder, info, "", "note")
  # A card names the refiner's extras beyond the paper (models.refiner_extras), or none.
  assert "output tanh; input" in export.model_card("f", folder, info, "", "note")
  folder.refiner.dropout_value = 1.0
  assert "output tanh, drop-out head to 1.0; input" in export.model_card("f", folder, info, "", "note")
  # The refiner's own learning rate (TTUR) is the one the card states (the hand card once said 2e-4 for 5e-5).
  folder.optimizer.learning_rate = 2e-4
  assert "adam lr 0.0002, Kg" in export.model_card("f", folder, info, "", "note")
  folder.optimizer.refiner_learning_rate = 5e-5
  assert "adam lr 5e-05 (refiner) / 0.0002 (discriminator), Kg" in export.model_card("f", folder, info, "", "note")
  assert "- Refiner: 1 ResNet blocks x 8 features, 3x3 kernels, padding" in export.model_card("f", folder, info, "", "note")
  folder.refiner.output_activation, folder.refiner.dropout_head_kernel = "identity", 5
  card = export.model_card("f", folder, info, "", "note")
  assert "- Refiner: no ResNet trunk, padding" in card  # a drop-only refiner has no blocks to name
  assert "output identity, drop-out head to 1.0 from a 5x5 input neighbourhood; input" in card
  assert ", lambda 0.5, psi `identity`, adam" in card  # drops are self-regularised
  # A camera-only refiner has no self-regularisation: a card must not claim lambda or psi.
  folder.refiner.dropout_value, folder.refiner.dropout_head_kernel, folder.refiner.sensor_stage = None, 0, True
  card = export.model_card("f", folder, info, "", "note")
  assert "batch 16, no self-regularisation (its term is 0 without a trunk), adam" in card and "lambda" not in card
  folder.refiner.output_activation, folder.refiner.trunk_start_step = "residual", 5300
  assert "sensor stage (random blur and sensor noise, learned magnitudes), trunk frozen until step 5300 (camera " \
      "stages alone before); input" in export.model_card("f", folder, info, "", "note")
  for name in pretrained.available():  # the shipped cards as committed
    folder_path = os.path.join(os.path.dirname(pretrained.__file__), "pretrained", name)
    with open(os.path.join(folder_path, "config.json")) as f:
      data = json.load(f)["synthetic_data"]["name"]
    with open(os.path.join(folder_path, "MODEL_CARD.md")) as f:
      assert f"--checkpoint=pretrained:{name} --data={data} " in f.read(), name


def test_model_card_selection_score_is_the_shipped_rules(tmp_path):
  """A run trained under one selection rule and exported under another: the card's selection
  score is the shipped config's (two-sample accuracy here), not the one logged at training
  time (label drift), and the card names the metric. Catches copying the logged score."""
  import json

  from simgan_jax.refining import export

  entries = [{"step": 6, "realism_kid": 0.9, "two_sample_accuracy": 0.8, "label_drift": 4.0, "selection_score": 4.0},
             {"step": 9, "realism_kid": 2.0, "two_sample_accuracy": 0.7, "label_drift": 5.0, "selection_score": 5.0}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
  for step in (6, 9):
    (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
  config = default.get_config("smoke")  # pretraining ends at step 5
  config.drift.max_drift = 12.0
  config.selection.metric, config.selection.realism_ratio = "two_sample_accuracy", 0.0
  scores = export.checkpoint_scores(config, str(tmp_path), 9)
  assert scores["selection_score"] == 0.7 and scores["label_drift"] == 5.0
  info = {"date": "2026-12-05", "step": 9, "workdir": "runs/x", "num_parameters": 1, "scores": scores}
  assert "| selection score (`two_sample_accuracy`, lower is better) | 0.7 |" in export.model_card(
      "e", config, info, "", "note")
