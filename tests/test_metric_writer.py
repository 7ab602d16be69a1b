"""Console helpers (simgan_jax/metric_writer.py): progress lines and the compile-time line."""

import io

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax import metric_writer


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_progress_lines_without_a_terminal(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(metric_writer.time, "perf_counter", clock)
  stream = io.StringIO()
  bar = metric_writer.Progress("eyesim_target train", 1000, "images", every_s=10.0, stream=stream)
  clock.now = 5.0
  bar.update(100)  # under every_s since the start: nothing yet
  clock.now = 20.0
  bar.update(400)
  clock.now = 40.0
  bar.update(1000)
  bar.close()
  # Not a terminal: whole lines, no carriage returns (which would garble a log file).
  assert stream.getvalue().splitlines() == [
      "eyesim_target train: 400/1000 images (40%), 20 images/s, ETA 0m30s",
      "eyesim_target train: 1000/1000 images (100%), 25 images/s, ETA 0m00s",
      "eyesim_target train: 1000 images in 0m40s (25 images/s)",
  ]


def test_timed_first_call_reports_compilation_once(capsys):
  calls = []
  fn = jax.jit(lambda x: calls.append(1) or jnp.sin(x) * 2)  # appends while tracing only
  timed = metric_writer.timed_first_call(fn, "refiner pretrain")
  x = jnp.arange(4.0)
  np.testing.assert_allclose(timed(x), np.sin(np.arange(4.0)) * 2, rtol=1e-6)
  timed(x)
  out = capsys.readouterr().out
  assert out.count("compiling the refiner pretrain step ...") == 1 and out.endswith(" s\n"), out
  assert len(calls) == 1
  quiet = metric_writer.timed_first_call(fn, "x", enabled=False)
  quiet(x)
  assert capsys.readouterr().out == ""


def test_format_seconds():
  assert metric_writer.format_seconds(65) == "1m05s"
  assert metric_writer.format_seconds(7380) == "2h03m00s"
