"""Two processes on 127.0.0.1 (4 CPU devices each) train like one process with 8."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO, npz_flags


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def curve(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def test_two_processes_agree_with_one(tmp_path, npz_pools):
  base = [sys.executable, os.path.join(REPO, "launch/train.py"),
          f"--config={REPO}/simgan_jax/configs/default.py:smoke", *npz_flags(npz_pools)]
  address = f"127.0.0.1:{free_port()}"
  # The coordinator listens on loopback only.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
             JAX_COORDINATOR_BIND_ADDRESS=address)
  procs = [subprocess.Popen(base + [f"--workdir={tmp_path / 'two'}", f"--coordinator_address={address}",
                                    "--num_processes=2", f"--process_id={i}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "8 device(s) on 2 process(es)" in outs[0][0]
  assert "step " not in outs[1][0]  # only process 0 reports and writes metrics

  one = subprocess.run(base + [f"--workdir={tmp_path / 'one'}"], capture_output=True, text=True, timeout=600)
  assert one.returncode == 0, one.stderr[-3000:]
  two_curve, one_curve = curve(tmp_path / "two"), curve(tmp_path / "one")
  assert [r["step"] for r in two_curve] == [r["step"] for r in one_curve]
  for a, b in zip(two_curve, one_curve):
    for name in a:
      if name != "images_per_second":
        assert a[name] == pytest.approx(b[name], rel=1e-5), (a["step"], name)
