"""Checkpoints in and around the loop: keep-best, damaged checkpoints, a full disk,
config checks on resume and the time policy (in-process, 8 fake devices)."""

import errno
import json
import math
import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from simgan_jax import checkpoints, train
from simgan_jax.probe import selection
from simgan_jax.probe import checkpoint as checkpoint_probe
from simgan_jax.configs import default
from simgan_jax.data.sources import ArraySource
from simgan_jax.errors import ConfigError, DataError
from tests.conftest import random_pool


def smoke(**overrides):
  config = default.get_config("smoke")
  config.update(overrides)
  return config


def sources():
  return ArraySource(random_pool(0)), ArraySource(random_pool(1))


def host(state):
  return jax.device_get(state)


def assert_bitwise_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, host(a), host(b))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A 9-step smoke run with checkpoints 3, 5 (phase ends), 6 and 9; its final state."""
  workdir = tmp_path_factory.mktemp("finished")
  state = train.train_and_evaluate(smoke(checkpoint_every=3, max_checkpoints_to_keep=10), str(workdir),
                                   *sources())
  assert checkpoints.steps(str(workdir)) == [3, 5, 6, 9]
  return workdir, host(state)


def copy(finished, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(finished[0], workdir)
  return workdir


# ----------------------------------------------------------------------------- keep-best


def tiny_state(value):
  return {"w": jnp.full((4,), value, jnp.float32)}


def test_keeps_the_newest_and_the_best_scored(tmp_path):
  # With LatestN only (the old manager) steps 2 and 6 are gone; a policy that ranks
  # realism_kid over selection_score keeps the collapsed step 4; one that ranks
  # NaN/inf as scores keeps 3 or 5.
  scores = {1: {"realism_kid": 5.0}, 2: {"realism_kid": 1.0}, 3: {"realism_kid": math.inf},
            4: {"realism_kid": 0.1, "selection_score": math.inf},  # collapsed: never best
            5: {"realism_kid": math.nan}, 6: {"realism_kid": 3.0}, 7: None,
            8: {"realism_kid": 8.0}}
  mngr = checkpoints.manager(str(tmp_path), max_to_keep=2, keep_best=2)
  for step in range(1, 9):
    checkpoints.save(mngr, step, tiny_state(step), scores[step])
  assert mngr.all_steps() == [2, 6, 7, 8]
  mngr.close()
  # Resumed: the stored scores still rank the old checkpoints.
  mngr = checkpoints.manager(str(tmp_path), max_to_keep=2, keep_best=2)
  checkpoints.save(mngr, 9, tiny_state(9), {"selection_score": 2.0})
  checkpoints.save(mngr, 10, tiny_state(10), {"realism_kid": 0.5, "selection_score": 4.0})
  assert mngr.all_steps() == [2, 9, 10]
  mngr.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "2", "9"]


def test_loop_keeps_the_best_by_the_probe_scores(tmp_path, monkeypatch):
  kids = iter([5.0, 1.0, math.inf, 0.1, math.nan, 3.0, 7.0, 8.0, 9.0])

  def fake_probe(config, setup, data, *unused_args, **unused_kwargs):
    def probe(params):
      kid = next(kids)
      selection = math.inf if kid == 0.1 else kid  # step 4 "collapsed"
      return {"realism_kid": kid, "realism_kid_std": 0.0, "realism_kid_unrefined": 10.0,
              "selection_score": selection}
    return probe

  monkeypatch.setattr(checkpoint_probe, "make_realism_probe", fake_probe)
  config = smoke(checkpoint_every=1, max_checkpoints_to_keep=2, keep_best_checkpoints=2)
  config.realism.num_images = 1
  train.train_and_evaluate(config, str(tmp_path), *sources())
  # Keep-best follows --step=best's rule: pretraining checkpoints (steps 1-5 here) stop
  # counting once adversarial ones exist, so 2 (the lowest KID of all) goes; 6 and 7 are
  # the two best adversarial ones, 8 and 9 the newest. A policy on stored scores alone
  # would have kept 2.
  assert checkpoints.steps(str(tmp_path)) == [6, 7, 8, 9]
  best = selection.best_checkpoint(config, str(tmp_path))
  assert (best["step"], best["runner_up"]) == (6, 7)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in records if "realism_kid" in r] == list(range(1, 10))


def test_a_pending_stop_saves_before_the_probes_and_scores_after(tmp_path, monkeypatch):
  # Catches probes run before the save when a stop is pending: a grace period that runs
  # out during them (SIGKILL) would lose the checkpoint.
  events = []

  def fake_probe(config, setup, data, *unused_args, **unused_kwargs):
    def probe(params):
      events.append("probe")
      return {"realism_kid": 1.0, "realism_kid_std": 0.0, "realism_kid_unrefined": 2.0, "selection_score": 1.0}
    return probe

  real_save = checkpoints.save

  def save(mngr, step, state, scores=None):
    events.append(f"save {step}")
    return real_save(mngr, step, state, scores)

  real_at = train._Decisions.at
  monkeypatch.setattr(checkpoint_probe, "make_realism_probe", fake_probe)
  monkeypatch.setattr(checkpoints, "save", save)
  monkeypatch.setattr(train._Decisions, "at",
                      lambda self, step: (15, False) if step == 6 else real_at(self, step))
  config = smoke(checkpoint_every=3, max_checkpoints_to_keep=10)
  config.realism.num_images = 1
  with pytest.raises(train.Stopped, match="stopped by SIGTERM at step 6"):
    train.train_and_evaluate(config, str(tmp_path), *sources())
  assert events == ["probe", "save 3", "save 5", "save 6", "probe"]
  assert checkpoints.steps(str(tmp_path)) == [3, 5, 6]
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in records if "realism_kid" in r] == [3, 6]


def test_the_loop_keeps_at_most_two_steps_in_flight(tmp_path, monkeypatch):
  # Catches a loop that dispatches every step without ever waiting (hundreds queued, each
  # with collectives over 8 fake devices on 2 cores).
  waited = []
  real_block = jax.block_until_ready
  monkeypatch.setattr(train.jax, "block_until_ready", lambda x: waited.append(1) or real_block(x))
  train.train_and_evaluate(smoke(), str(tmp_path), *sources())
  total = sum(train.phase_lengths(smoke()).values())
  assert len(waited) == total - train.MAX_IN_FLIGHT


# ----------------------------------------------------------------------------- damaged


def truncate_largest_array_file(step_dir):
  files = [os.path.join(root, f) for root, _, names in os.walk(step_dir / "default" / "ocdbt.process_0")
           for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(os.path.getsize(largest) // 2)


def empty_metadata(step_dir):
  open(step_dir / "default" / "_METADATA", "w").close()


@pytest.mark.parametrize("damage", [truncate_largest_array_file, empty_metadata])
def test_damaged_newest_checkpoint_falls_back_and_ends_bitwise_equal(finished, tmp_path, capsys, damage):
  # Without the fallback, resuming raises (146-line traceback or a bare JSON error).
  workdir = copy(finished, tmp_path)
  damage(workdir / "checkpoints" / "9")
  capsys.readouterr()
  state = train.train_and_evaluate(smoke(checkpoint_every=3, max_checkpoints_to_keep=10), str(workdir),
                                   *sources())
  out = capsys.readouterr().out
  line = next(line for line in out.splitlines() if "damaged" in line)
  assert line.startswith("checkpoint step 9 is damaged (")
  assert line.endswith(f"moved to {workdir}/damaged_checkpoints/9; resuming from step 6")
  assert "resuming at step 6 of 9" in out
  assert_bitwise_equal(state, finished[1])
  # Kept for inspection, and step 9 written afresh and restorable.
  assert os.path.isdir(workdir / "damaged_checkpoints" / "9" / "default")
  assert checkpoints.steps(str(workdir)) == [3, 5, 6, 9]
  assert_bitwise_equal(train.restore_state(smoke(), str(workdir)), finished[1])


def test_read_only_restore_skips_a_damaged_checkpoint(finished, tmp_path, capsys):
  workdir = copy(finished, tmp_path)
  empty_metadata(workdir / "checkpoints" / "9")
  state = train.restore_state(smoke(), str(workdir))
  assert int(state.step) == 6
  assert "checkpoint step 9 in" in capsys.readouterr().out
  with pytest.raises(DataError, match=r"checkpoints/9: checkpoint is damaged \(JSONDecodeError"):
    train.restore_state(smoke(), str(workdir), step=9)
  assert os.path.isdir(workdir / "checkpoints" / "9")  # a reader never moves anything


def test_transient_read_errors_never_move_a_checkpoint_aside(finished, tmp_path, monkeypatch, capsys):
  # Catches "any exception while restoring = damage": an EIO or memory pressure while
  # reading the newest checkpoint would move it to damaged_checkpoints/ and resume from
  # an older one.
  workdir = copy(finished, tmp_path)
  monkeypatch.setattr(checkpoints, "READ_RETRY_DELAYS", (0.0, 0.0))
  real_read = checkpoints._read
  calls = []

  def flaky(mngr, directory, step, like_state, fail_times, error):
    calls.append(step)
    if len(calls) <= fail_times:
      raise error
    return real_read(mngr, directory, step, like_state)

  config = smoke(checkpoint_every=3, max_checkpoints_to_keep=10)
  # Two EIOs, then the read succeeds: step 9 is restored, nothing moved.
  monkeypatch.setattr(checkpoints, "_read", lambda *a: flaky(*a, 2, OSError(errno.EIO, "I/O error")))
  state = train.restore_state(config, str(workdir))
  assert int(state.step) == 9 and calls == [9, 9, 9]
  mngr = checkpoints.manager(str(workdir), 10)
  restored, step = checkpoints.restore_newest_intact(mngr, state)
  assert step == 9
  # EIO every time: a one-line CheckpointReadError naming the step; nothing moved.
  calls.clear()
  monkeypatch.setattr(checkpoints, "_read", lambda *a: flaky(*a, 99, OSError(errno.EIO, "I/O error")))
  with pytest.raises(checkpoints.CheckpointReadError, match=r"checkpoint step 9 .* after 3 tries"):
    checkpoints.restore_newest_intact(checkpoints.manager(str(workdir), 10), state)
  # Memory pressure is not damage either.
  calls.clear()
  monkeypatch.setattr(checkpoints, "_read", lambda *a: flaky(*a, 99, MemoryError()))
  with pytest.raises(MemoryError):
    checkpoints.restore_newest_intact(checkpoints.manager(str(workdir), 10), state)
  assert checkpoints.steps(str(workdir)) == [3, 5, 6, 9]
  assert not os.path.exists(workdir / "damaged_checkpoints")


# ----------------------------------------------------------------------------- config on resume


def test_changed_shapes_name_the_config_field_and_keep_config_json(finished, tmp_path):
  workdir = copy(finished, tmp_path)
  before = (workdir / "config.json").read_text()
  config = smoke(checkpoint_every=3, max_checkpoints_to_keep=10)
  config.refiner.features = 16
  config.optimizer.learning_rate = 3e-4  # changes no shape: not named
  with pytest.raises(ConfigError) as e:
    train.train_and_evaluate(config, str(workdir), *sources())
  message = str(e.value)
  assert message.startswith(f"config does not fit checkpoint step 9 in {workdir}/checkpoints: "
                            "config.refiner.features is 16, the checkpoint's run had 8 (")
  assert "learning_rate" not in message and "\n" not in message
  assert re.search(r"refiner_params\.\S+: checkpoint \(3, 3, 8, 8\) float32, config \(3, 3, 16, 16\) float32",
                   message), message
  assert (workdir / "config.json").read_text() == before
  assert checkpoints.steps(str(workdir)) == [3, 5, 6, 9]  # nothing moved: not damage


def test_failed_start_keeps_config_json(finished, tmp_path):
  # Old code wrote config.json first, so the workdir then described the failed run.
  workdir = copy(finished, tmp_path)
  before = (workdir / "config.json").read_text()
  config = smoke()
  config.real_data = default.data_config("npz", path=str(tmp_path / "missing.npz"))
  with pytest.raises(DataError):
    train.train_and_evaluate(config, str(workdir), ArraySource(random_pool(0)))
  assert (workdir / "config.json").read_text() == before


# ----------------------------------------------------------------------------- full disk


def test_disk_full_during_a_save_names_it_and_keeps_what_was_saved(finished, tmp_path, monkeypatch):
  workdir = copy(finished, tmp_path)

  async def no_space(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", no_space)
  with pytest.raises(checkpoints.CheckpointWriteError) as e:
    train.train_and_evaluate(smoke(num_iterations=5, checkpoint_every=3, max_checkpoints_to_keep=10),
                             str(workdir), *sources())
  assert str(e.value) == (f"could not write checkpoint step 10 in {workdir}/checkpoints: No space left on "
                          "device; checkpoints saved before are kept (newest kept: step 9)")
  monkeypatch.undo()
  assert sorted(os.listdir(workdir / "checkpoints")) == ["3", "5", "6", "9"]  # no partial folder left
  assert_bitwise_equal(train.restore_state(smoke(), str(workdir)), finished[1])


# ----------------------------------------------------------------------------- time policy


class Crash(Exception):
  pass


def test_time_policy_checkpoint_survives_a_crash_between_step_checkpoints(tmp_path, capsys):
  # A fake clock: 4 minutes per step. Saves: 3 and 5 (phase ends) and 8 (10 minutes
  # after 5, by time); the clock's call for step 9 crashes the run. Without the time
  # policy the newest checkpoint would be 5; with checkpoint_every=100 none is due by step.
  calls = []

  def clock():
    calls.append(None)
    if len(calls) == 10:  # the start, then one call per step
      raise Crash()
    return 240.0 * (len(calls) - 1)

  with pytest.raises(Crash):
    train.train_and_evaluate(smoke(checkpoint_every=100, checkpoint_every_minutes=10.0), str(tmp_path),
                             *sources(), clock=clock)
  assert checkpoints.steps(str(tmp_path)) == [3, 5, 8]
  # One console line per checkpoint, with the phase it was saved in.
  saved = [line for line in capsys.readouterr().out.splitlines() if "checkpoint saved" in line]
  assert saved == ["step 3: checkpoint saved (refiner_pretrain)",
                   "step 5: checkpoint saved (discriminator_pretrain)", "step 8: checkpoint saved (adversarial)"]
  assert int(train.restore_state(smoke(), str(tmp_path)).step) == 8
