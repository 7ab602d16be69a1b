"""Quiet launch scripts (simgan_jax/quiet.py, launch/common.py): other libraries' lines filtered,
ours kept, everything shown with --verbose; one-line errors for bad flags and configs."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

# A launch-style script: another library (a module outside simgan_jax/ and launch/) logs
# through Python logging and absl and warns; orbax warns on read_only options (as on
# every restore); our own code warns too.
SCRIPT = textwrap.dedent("""
    import json, os, pathlib, sys
    sys.path.insert(0, os.environ["FAKELIB_DIR"])
    from launch import common
    from absl import app

    def main(argv):
      import fakelib
      import orbax.checkpoint as ocp
      from simgan_jax.simulators import target_dataset
      fakelib.noise()
      ocp.CheckpointManagerOptions(read_only=True)
      folder = pathlib.Path(os.environ["FAKELIB_DIR"])
      (folder / "manifest.json").write_text("{not json")
      target_dataset._read_manifest(folder)  # our warning: the cache manifest is corrupt
      print("TF_CPP_MIN_LOG_LEVEL=" + os.environ.get("TF_CPP_MIN_LOG_LEVEL", ""), file=sys.stderr)

    common.run(main)
""")
FAKELIB = textwrap.dedent("""
    import logging, warnings
    from absl import logging as absl_logging

    def noise():
      logging.getLogger("fakelib").warning("FAKELIB python logging warning")
      logging.getLogger("fakelib").error("FAKELIB python logging error")
      absl_logging.warning("FAKELIB absl warning")
      absl_logging.info("FAKELIB absl info")
      warnings.warn("FAKELIB UserWarning", stacklevel=1)
""")


def _run(tmp_path, *flags):
  (tmp_path / "fakelib.py").write_text(FAKELIB)
  (tmp_path / "script.py").write_text(SCRIPT)
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env.update(FAKELIB_DIR=str(tmp_path), PYTHONPATH=REPO)
  proc = subprocess.run([sys.executable, str(tmp_path / "script.py"), *flags], capture_output=True,
                        text=True, cwd=REPO, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr
  return proc.stderr


def test_other_libraries_are_filtered_ours_kept_and_verbose_shows_all(tmp_path):
  quiet = _run(tmp_path)
  # Without the filter these lines appear (the --verbose run below proves it).
  for noise in ("FAKELIB python logging warning", "FAKELIB absl warning", "FAKELIB UserWarning",
                "read_only=True"):
    assert noise not in quiet, quiet
  assert "FAKELIB python logging error" in quiet  # errors still pass
  assert "cache manifest" in quiet and "is corrupt" in quiet  # our own warning
  assert "TF_CPP_MIN_LOG_LEVEL=2" in quiet

  verbose = _run(tmp_path, "--verbose")
  for noise in ("FAKELIB python logging warning", "FAKELIB absl warning", "FAKELIB absl info",
                "FAKELIB UserWarning", "CheckpointManagerOptions.read_only=True"):
    assert noise in verbose, verbose
  assert "TF_CPP_MIN_LOG_LEVEL=2" not in verbose  # jax's own default (1) then


def _train(*flags):
  proc = subprocess.run([sys.executable, os.path.join(REPO, "launch/train.py"), *flags],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
  return proc.returncode, proc.stderr


@pytest.mark.parametrize("flags, line", [
    (["--config.batch_sise=3"], "error: --config.batch_sise: no such config field; did you mean 'batch_size'?"),
    (["--config=simgan_jax/configs/default.py:cpu", "--config.refiner.featurs=3"],
     "error: --config.refiner.featurs: no such config field; did you mean 'features'?"),
    (["--config=nonexistent.py"], "error: config file nonexistent.py: no such file or directory"),
    (["--config=simgan_jax/configs/default.py:cpux"],
     "error: --config variant 'cpux' unknown; known: article, camera, cpu, paper, smoke"),
    (["--config.batch_size=abc"], "error: --config.batch_size=abc: not an integer (see --helpshort)"),
    (["--workdirr=/tmp/x"], "error: Unknown command line flag 'workdirr'. Did you mean: workdir ? "
     "(see --helpshort)"),
])
def test_bad_flags_and_configs_give_one_line(tmp_path, flags, line):
  # Each of these printed a traceback (or a multi-line absl message) before.
  code, err = _train(*([f"--workdir={tmp_path}/w"] if "--workdirr=/tmp/x" not in flags else []), *flags)
  assert code == 1 and err.strip() == line, err
  assert not os.path.exists(tmp_path / "w")


def test_missing_required_flag_and_verbose_traceback(tmp_path):
  code, err = _train()
  assert code == 1 and err.strip() == "error: --workdir is required (see --helpshort)", err
  code, err = _train(f"--workdir={tmp_path}/w", "--config.batch_sise=3", "--verbose")
  assert code == 1 and "Traceback" in err and 'Did you mean "batch_size"' in err
