"""launch/train.py trains a few steps on prepared fixture datasets of each kind."""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO
from simgan_jax.data.builders.prepare import prepare
from tests import fixtures_data

TINY = ["--config.refiner.features=8", "--config.refiner.num_blocks=1", "--config.discriminator.width_multiplier=0.25",
        "--config.refiner_pretrain_steps=1", "--config.discriminator_pretrain_steps=1", "--config.num_iterations=2",
        "--config.log_every=1", "--config.kg=1"]


def train(config, workdir, *flags):
  cmd = [sys.executable, os.path.join(REPO, "launch/train.py"), f"--config={REPO}/simgan_jax/configs/{config}",
         f"--workdir={workdir}", *TINY, *flags]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert records[-1]["step"] == 4
  assert all(np.isfinite(v) for r in records for v in r.values())
  return records


def test_unityeyes_to_mpiigaze(tmp_path):
  fixtures_data.write_unityeyes(tmp_path / "unity", count=6)
  fixtures_data.write_mpiigaze(tmp_path / "mpii", days={0: [1, 2]}, count=4)
  data = tmp_path / "data"
  prepare("unityeyes", tmp_path / "unity", data)
  prepare("mpiigaze", tmp_path / "mpii", data)
  train("unityeyes_mpiigaze.py:smoke", tmp_path / "run", f"--config.synthetic_data.data_dir={data}",
        f"--config.real_data.data_dir={data}")


def test_nyu_hand_synthetic_to_real_at_64x64(tmp_path):
  fixtures_data.write_nyu(tmp_path / "nyu", num_frames=4, frames=(1, 2, 3, 4))
  data = tmp_path / "data"
  names = {kind: prepare("nyu_hand", tmp_path / "nyu", data, builder_config=kind,
                         overrides={"height": 64, "width": 64}).builder_config
           for kind in ("synthetic", "real")}
  train("nyu_hand.py:smoke", tmp_path / "run", "--config.image_height=64", "--config.image_width=64",
        "--config.refiner.kernel_size=3", f"--config.synthetic_data.data_dir={data}",
        f"--config.synthetic_data.builder_config={names['synthetic']}", f"--config.real_data.data_dir={data}",
        f"--config.real_data.builder_config={names['real']}")


def test_rgb_image_folders_at_24x40(tmp_path):
  rng = np.random.default_rng(0)
  data = tmp_path / "data"
  names = {}
  for kind in ("sim", "photos"):
    fixtures_data.write_image_folder(
        tmp_path / kind, {f"{i}.png": rng.integers(0, 256, (30 + i, 50, 3), dtype=np.uint8) for i in range(8)})
    names[kind] = prepare("image_folder", tmp_path / kind, data / kind,
                          overrides={"height": 24, "width": 40, "channels": 3}).builder_config
  train("default.py:smoke", tmp_path / "run", "--config.image_height=24", "--config.image_width=40",
        "--config.channels=3", "--config.loss.psi=channel_mean",
        "--config.synthetic_data.name=image_folder", f"--config.synthetic_data.data_dir={data / 'sim'}",
        f"--config.synthetic_data.builder_config={names['sim']}",
        "--config.real_data.name=image_folder", f"--config.real_data.data_dir={data / 'photos'}",
        f"--config.real_data.builder_config={names['photos']}")
