"""Two processes on 127.0.0.1 (4 CPU devices each) train like one process with one device."""

import json
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from simgan_jax import train
from simgan_jax.configs import default
from tests.conftest import REPO, npz_flags
from tests.test_training import assert_same_updates


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_two_processes(command, workdir):
  """Runs ``command`` as 2 processes x 4 CPU devices on loopback; their (stdout, stderr)."""
  address = f"127.0.0.1:{free_port()}"
  # The coordinator listens on loopback only.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
             JAX_COORDINATOR_BIND_ADDRESS=address)
  procs = [subprocess.Popen(command + [f"--workdir={workdir}", f"--coordinator_address={address}",
                                       "--num_processes=2", f"--process_id={i}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def curve(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def test_two_processes_agree_with_one(tmp_path, npz_pools):
  # SGD, whose update is the gradient itself: 8 devices on 2 hosts must take the
  # step of 1 device, not 8 times it.
  sgd = ["--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e-3"]
  base = [sys.executable, os.path.join(REPO, "launch/train.py"),
          f"--config={REPO}/simgan_jax/configs/default.py:smoke", *npz_flags(npz_pools), *sgd]
  # A checkpoint is due by time at every step on each process's own clock; they must
  # agree to save at the same steps (every sync_every_steps=2), else the save hangs.
  agree = ["--config.checkpoint_every_minutes=1e-9", "--config.sync_every_steps=2"]
  outs = run_two_processes(base + agree, tmp_path / "two")
  assert "8 device(s) on 2 process(es)" in outs[0][0]
  assert "step " not in outs[1][0]  # only process 0 reports and writes metrics
  # Saved at 2, 4, 6, 8 (time, agreed), 3, 5 (phase ends), 9 (end); the newest 3 kept.
  assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["6", "8", "9"]

  one_env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
  one = subprocess.run(base + [f"--workdir={tmp_path / 'one'}"], capture_output=True, text=True, timeout=600,
                       env=one_env)
  assert one.returncode == 0, one.stderr[-3000:]
  assert "1 device(s) on 1 process(es)" in one.stdout
  two_curve, one_curve = curve(tmp_path / "two"), curve(tmp_path / "one")
  assert [r["step"] for r in two_curve] == [r["step"] for r in one_curve]
  for a, b in zip(two_curve, one_curve):
    for name in a:
      if name not in ("steps_per_second", "refined_images_per_second"):
        # Float sums in another order drift by up to ~5e-4 over these 9 steps.
        assert a[name] == pytest.approx(b[name], rel=2e-3), (a["step"], name)
  config = default.get_config("smoke")
  config.optimizer.name, config.optimizer.learning_rate = "sgd", 1e-3
  init = jax.device_get(train.training.init_state(train.training.make_setup(config, None, None, 1)))
  two, one = (jax.device_get(train.restore_state(config, str(tmp_path / name))) for name in ("two", "one"))
  assert int(np.asarray(two.step)) == int(np.asarray(one.step)) > 0
  # The same ~5e-4 drift moves single weights by ~2% of the largest update; an N-times
  # gradient moves every weight by 800% (step 2's loss is then already 33% off).
  for params in ("refiner_params", "discriminator_params"):
    assert_same_updates(getattr(init, params), getattr(one, params), getattr(two, params), rtol=5e-2)


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, npz_pools):
  # Only process 1 is signalled; without agreeing on the step, process 0 would run
  # on into a collective that process 1 never joins (a hang), or save alone.
  address = f"127.0.0.1:{free_port()}"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
             JAX_COORDINATOR_BIND_ADDRESS=address)
  base = [sys.executable, os.path.join(REPO, "launch/train.py"),
          f"--config={REPO}/simgan_jax/configs/default.py:smoke", *npz_flags(npz_pools),
          "--config.num_iterations=40", "--config.sync_every_steps=2", "--config.sample_every=100",
          f"--workdir={tmp_path / 'run'}", f"--coordinator_address={address}", "--num_processes=2"]
  procs = [subprocess.Popen(base + [f"--process_id={i}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  for line in procs[0].stdout:
    if line.startswith("step 6/45"):
      break
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=600) for p in procs]
  lines = [err.strip().splitlines()[-1] for _, err in outs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 128 + signal.SIGTERM, err[-3000:]
  assert lines[0] == lines[1] and lines[0].startswith("stopped by SIGTERM at step "), lines
  stopped = int(lines[0].split()[5].rstrip(";"))
  assert 6 < stopped < 45 and stopped % 2 == 0
  assert str(stopped) in os.listdir(tmp_path / "run" / "checkpoints")


def test_gaze_estimator_on_two_processes_takes_the_one_device_step(tmp_path):
  # The gaze estimator's loop through its launcher, with SGD (an N-times gradient moves N
  # times as far): 2 processes x 4 devices against 1 process x 1 device.
  from simgan_jax.configs import gaze as gaze_config  # pylint: disable=g-import-not-at-top
  from simgan_jax.tasks import gaze as gaze_task, loop  # pylint: disable=g-import-not-at-top
  from tests.test_gaze import _gaze_pool  # pylint: disable=g-import-not-at-top

  pool = _gaze_pool(64)
  path = tmp_path / "gaze.npz"
  np.savez(path, images=pool.images, gaze=pool.labels["gaze"])
  flags = [f"--config={REPO}/simgan_jax/configs/gaze.py:smoke", f"--train_data=npz:{path}",
           f"--eval_data=npz:{path}", "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e-2",
           "--config.num_steps=6"]
  base = [sys.executable, os.path.join(REPO, "launch/train_gaze.py"), *flags]
  run_two_processes(base, tmp_path / "two")
  one_env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
  one = subprocess.run(base + [f"--workdir={tmp_path / 'one'}"], capture_output=True, text=True, timeout=600,
                       env=one_env)
  assert one.returncode == 0, one.stderr[-3000:]
  config = gaze_config.get_config("smoke")
  config.optimizer.name, config.optimizer.learning_rate, config.num_steps = "sgd", 1e-2, 6
  init = jax.device_get(loop.init_state(loop.make_setup(gaze_task.TASK, config, pool, 1)).params)
  two = jax.device_get(loop.restore_params(gaze_task.TASK, config, str(tmp_path / "two")))
  one = jax.device_get(loop.restore_params(gaze_task.TASK, config, str(tmp_path / "one")))
  assert_same_updates(init, one, two, rtol=5e-2)
