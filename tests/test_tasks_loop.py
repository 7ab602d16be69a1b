"""The estimator loop (simgan_jax.tasks) for gaze and pose: stop on SIGTERM and resume,
sharded pools, time-based checkpoints, checks before config.json."""

import os
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.conftest import REPO
from simgan_jax import tasks
from simgan_jax.data.sources import ArraySource
from simgan_jax.errors import ConfigError
from simgan_jax.tasks import data as gaze_data
from simgan_jax.tasks import pose_data
from simgan_jax.tasks import loop
from tests.test_gaze import _gaze_pool


def _pose_pool(n=32, size=32):
  rng = np.random.default_rng(0)
  joints = rng.uniform(4, size - 4, (n, 14, 2)).astype(np.float32)
  return ArraySource(rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8), {"joints": joints})


POOLS = {"gaze": _gaze_pool, "pose": _pose_pool}


def _config(name, **overrides):
  config = tasks.get(name).get_config("smoke")
  config.update(overrides)
  return config


def _train(name, workdir, source=None, **overrides):
  source = source or POOLS[name]()
  label = tasks.get(name).task.label
  sets = {"pool": (source.images[:16], source.labels[label][:16])}
  return loop.train_estimator(tasks.get(name).task, _config(name, **overrides), source, sets, str(workdir))


@pytest.mark.parametrize("name", ["gaze", "pose"])
def test_sigterm_saves_says_where_and_resumes_to_the_uninterrupted_run(tmp_path, name):
  # Before tasks/: SIGTERM killed the estimator at once, nothing saved, nothing said.
  pool = POOLS[name]()
  path = str(tmp_path / "pool.npz")
  np.savez(path, images=pool.images, **pool.labels)
  cmd = [sys.executable, os.path.join(REPO, "launch/train_estimator.py"), f"--task={name}",
         f"--config={REPO}/simgan_jax/configs/{name}.py:smoke", f"--workdir={tmp_path / 'run'}",
         f"--train_data=npz:{path}", f"--eval_data=npz:{path}", "--config.num_steps=10000",
         "--config.log_every=1", "--config.checkpoint_every=10000", "--config.checkpoint_every_minutes=0"]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  for line in proc.stdout:
    if line.startswith("step 2/10000"):
      break
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signal.SIGTERM, err
  match = re.fullmatch(r"stopped by SIGTERM at step (\d+); checkpoint saved in (\S+); run the same "
                       r"command to resume", err.strip().splitlines()[-1])
  assert match, err
  stopped = int(match[1])
  assert 2 <= stopped < 60 and match[2] == str(tmp_path / "run" / "checkpoints" / str(stopped))
  assert "Traceback" not in err and (out + err).count("checkpoint saved") == 1
  # Only the stop's checkpoint, complete (no orbax temporary folder left).
  assert os.listdir(tmp_path / "run" / "checkpoints") == [str(stopped)]

  # Resumed in this process, it ends where an uninterrupted run ends, bit for bit.
  source = ArraySource(pool.images, pool.labels)
  resumed = _train(name, tmp_path / "run", source, num_steps=stopped + 2)
  straight = _train(name, tmp_path / "straight", source, num_steps=stopped + 2)
  assert resumed["steps"] == straight["steps"] == stopped + 2
  config = _config(name, num_steps=stopped + 2)
  a = jax.device_get(tasks.restore_state(tasks.get(name).task, config, str(tmp_path / "run")))
  b = jax.device_get(tasks.restore_state(tasks.get(name).task, config, str(tmp_path / "straight")))
  assert int(a.step) == stopped + 2
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_pose_pool_is_sharded_along_the_batch_axis(tmp_path, capsys):
  # Before tasks/: pose always replicated its pool, whatever shard_pool said.
  pool = _pose_pool()
  sharded = ArraySource(pool.images, pool.labels, shard_pool="true")
  _train("pose", tmp_path / "sharded", sharded, num_steps=1)
  out = capsys.readouterr().out
  assert "pool per device: " in out and "(sharded 1/8)" in out, out


@pytest.mark.parametrize("module, label", [(gaze_data, "gaze"), (pose_data, "joints")])
def test_named_train_sets_keep_a_host_shard(monkeypatch, module, label):
  # A host's share of a sharded pool (host_shard) must stay one: the old code rebuilt
  # the ArraySource from images and labels only, a whole pool of this host's rows.
  images = np.zeros((4, 35, 55, 1), np.uint8)
  share = ArraySource(images, {label: np.zeros((4, 3), np.float32), "other": np.zeros(4)}, shard_pool="true",
                      num_examples=16, row_offset=8)
  monkeypatch.setattr(module.sources_lib, "make_source", lambda *args: share)
  source = module.train_source("npz:unused.npz", _config("gaze" if label == "gaze" else "pose"))
  assert (source.total, source.row_offset, source.sharded, list(source.labels)) == (16, 8, True, [label])


def test_time_based_checkpoints(tmp_path):
  now = [0.0]

  def clock():
    now[0] += 61.0  # every read a minute later
    return now[0]

  config = _config("gaze", num_steps=3, checkpoint_every=100, checkpoint_every_minutes=1.0,
                   max_checkpoints_to_keep=5)
  source = _gaze_pool()
  loop.train_estimator(tasks.get("gaze").task, config, source, {}, str(tmp_path), clock=clock)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2", "3"]


@pytest.mark.parametrize("overrides, error", [
    ({"batch_size": 12}, "config.batch_size: 12 is not divisible by 8 devices"),
    ({"image_width": 56}, r"train data: images are \(35, 55, 1\)"),
    ({"checkpoint_every_minutes": -1}, "config.checkpoint_every_minutes: must be a number >= 0"),
])
def test_bad_config_or_data_raise_one_line_and_write_no_config_json(tmp_path, overrides, error):
  with pytest.raises(ConfigError, match=error):
    _train("gaze", tmp_path / "run", **overrides)
  assert not os.path.exists(tmp_path / "run" / "config.json")


def test_unwritable_workdir_is_one_line(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(ConfigError, match=f"--workdir {blocker}/run: not writable"):
    _train("gaze", blocker / "run")


def test_at_most_two_steps_in_flight(tmp_path, monkeypatch):
  # Unbounded, hundreds of queued steps made XLA:CPU abort a collective (> 40 s wait).
  events, compile_train_step, block = [], loop.compile_train_step, jax.block_until_ready

  def counting_compile(*args, **kwargs):
    step_fn = compile_train_step(*args, **kwargs)

    def dispatch(state, data):
      state, metrics = step_fn(state, data)
      events.append(("dispatch", len([e for e in events if e[0] == "dispatch"]) + 1, id(metrics)))
      return state, metrics

    return dispatch

  def spy(tree):
    events.append(("wait", tree))
    return block(tree)

  monkeypatch.setattr(loop, "compile_train_step", counting_compile)
  monkeypatch.setattr(loop.jax, "block_until_ready", spy)
  _train("gaze", tmp_path, num_steps=6, log_every=100, checkpoint_every=100)
  step_of = {metrics_id: step for kind, step, metrics_id in (e for e in events if e[0] == "dispatch")}
  order = [(e[1], None) if e[0] == "dispatch" else (None, step_of.get(id(e[1]))) for e in events]
  # After dispatching step k (k >= 3) the loop waits for step k - 2, and for nothing else.
  assert order == [(1, None), (2, None)] + [x for k in range(3, 7) for x in ((k, None), (None, k - 2))]
