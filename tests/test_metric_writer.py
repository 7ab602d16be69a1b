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
  bar = metric_writer.Progress("eyesim_target train", 1000, "images", every_s=10.0, stream=stream,
                               every_percent=50.0)
  clock.now = 5.0
  bar.update(100)  # under every_s since the start and under every_percent: nothing yet
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


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_in_a_log_file_writes_plain_lines_every_n_percent_and_on_a_terminal_redraws(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(metric_writer.time, "perf_counter", clock)
  log, terminal = io.StringIO(), _Terminal()
  bars = [metric_writer.Progress("refine", 100, "images", every_s=60.0, every_percent=25.0, stream=s)
          for s in (log, terminal)]
  for done in range(1, 101):
    clock.now = done * 0.1  # 10 s in all: never every_s, so the lines come from every_percent
    for bar in bars:
      bar.update(done)
  for bar in bars:
    bar.close()
  # A log file: no carriage return, a line per 25% (the last update at 100% adds none), then the total.
  assert "\r" not in log.getvalue()
  assert [line.split(" images")[0] for line in log.getvalue().splitlines()] == [
      "refine: 25/100", "refine: 50/100", "refine: 75/100", "refine: 100"]
  # A terminal: one line redrawn in place (every 0.5 s), ended by the total and a newline.
  assert terminal.getvalue().startswith("\r") and terminal.getvalue().count("\n") == 1
  assert terminal.getvalue().count("\r") == 20 + 1


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


def test_rates_read_without_exponents():
  # Catches "{rate:.3g}", which printed "1e+03 images/s" in the target-cache progress.
  from simgan_jax.metric_writer import rate_text

  assert [rate_text(r) for r in (1000.4, 1680.2, 38.63, 0.04123)] == ["1000", "1680", "38.6", "0.0412"]
