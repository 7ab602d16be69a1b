r"""Where the CPU time of a SimGAN iteration goes: one convolution layer and each network,
forward and forward + backward, for every ``config.conv_impl``, in one process run.

  python benchmarks/conv_profile.py                       # paper eye refiner, batch 32
  python benchmarks/conv_profile.py --batch_size=128 --impls=xla,hybrid

Rows: the refiner's 64->64 3x3 layer (input [B, 35, 55, 64]) forward, its input
gradient, its kernel gradient and both (each gradient row includes the forward pass); the whole refiner forward and
forward + backward at batch B, also with mirror (REFLECT) padding; the paper gaze
estimator's forward + backward at B (unpadded "VALID" convolutions); the
discriminator forward + backward at 2B (real + refined, as in its update). With torch installed (benchmarks/requirements.txt)
the same layer in PyTorch (NCHW and channels-last, ``--torch_threads``) is timed
beside it. Medians of ``--repeats`` calls after one warm-up call; windows of the
implementations alternate, so a drift of the machine hits all of them alike.
"""

import os
import sys
import time

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size B.")
_IMPLS = flags.DEFINE_list("impls", ["xla", "hybrid", "native"], "conv_impl values to compare.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed calls per cell (median).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch CPU threads (0: all cores; -1: skip torch).")


def _median_ms(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def jax_cells(impl: str, batch: int):
  """name -> zero-argument callable that runs one compiled call to completion."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from simgan_jax import layers, models  # pylint: disable=g-import-not-at-top
  from simgan_jax.tasks import gaze_net as gaze  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.standard_normal((batch, 35, 55, 64)).astype(np.float32))
  k = jnp.asarray(0.05 * rng.standard_normal((3, 3, 64, 64)).astype(np.float32))
  x = jnp.asarray(rng.uniform(-1, 1, (batch, 35, 55, 1)).astype(np.float32))
  conv = lambda h, k: layers.conv2d(h, k, None, 1, "SAME", impl)  # noqa: E731
  loss = lambda h, k: jnp.sum(conv(h, k) ** 2)  # noqa: E731
  refiner, disc = models.Refiner(conv_impl=impl), models.LocalDiscriminator(conv_impl=impl)
  refiner_reflect = models.Refiner(conv_impl=impl, padding="REFLECT")
  estimator = gaze.GazeEstimator(conv_impl=impl)
  rp = refiner.init(jax.random.PRNGKey(0), x[:1])["params"]
  gp = estimator.init(jax.random.PRNGKey(2), x[:1])["params"]
  dp = disc.init(jax.random.PRNGKey(1), x[:1])["params"]
  x2 = jnp.concatenate([x, x])
  fns = {
      "layer forward": (jax.jit(conv), (h, k)),
      "layer input gradient": (jax.jit(jax.grad(loss, 0)), (h, k)),
      "layer kernel gradient": (jax.jit(jax.grad(loss, 1)), (h, k)),
      "layer both gradients": (jax.jit(jax.grad(loss, (0, 1))), (h, k)),
      "refiner forward": (jax.jit(lambda p, x: refiner.apply({"params": p}, x)), (rp, x)),
      "refiner forward + backward": (jax.jit(jax.grad(lambda p, x: jnp.sum(refiner.apply({"params": p}, x)))),
                                     (rp, x)),
      "refiner forward + backward, REFLECT padding": (
          jax.jit(jax.grad(lambda p, x: jnp.sum(refiner_reflect.apply({"params": p}, x)))), (rp, x)),
      "gaze estimator forward + backward (VALID convolutions)": (
          jax.jit(jax.grad(lambda p, x: jnp.sum(estimator.apply({"params": p}, x) ** 2))), (gp, x)),
      "discriminator forward + backward (2B)": (
          jax.jit(jax.grad(lambda p, x: jnp.sum(disc.apply({"params": p}, x) ** 2))), (dp, x2)),
  }
  cells, compile_s = {}, {}
  for name, (fn, args) in fns.items():
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s[name] = time.perf_counter() - start
    cells[name] = (lambda fn=fn, args=args: jax.block_until_ready(fn(*args)))
  return cells, compile_s


def torch_cells(batch: int, threads: int):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}
  torch.set_num_threads(threads or os.cpu_count())
  cells = {}
  for name, fmt in (("torch NCHW", torch.contiguous_format), ("torch channels-last", torch.channels_last)):
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=fmt)
    h = torch.randn(batch, 64, 35, 55).to(memory_format=fmt).requires_grad_()
    cells[name] = {
        "layer forward": lambda conv=conv, h=h: conv(h),
        "layer both gradients": lambda conv=conv, h=h: (conv(h) ** 2).sum().backward(),
    }
    for fn in cells[name].values():
      fn()
  return cells


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top

  batch, repeats = _BATCH.value, _REPEATS.value
  columns = {}
  compile_s = {}
  for impl in _IMPLS.value:
    columns[impl], compile_s[impl] = jax_cells(impl, batch)
  if _TORCH_THREADS.value >= 0:
    columns.update(torch_cells(batch, _TORCH_THREADS.value))
  rows = list(next(iter(columns.values())))
  results = {c: {} for c in columns}
  for row in rows:  # alternate the columns within each row
    for c, cells in columns.items():
      if row in cells:
        results[c][row] = _median_ms(cells[row], repeats)
  print(f"\nms per call (median of {repeats}), batch {batch}, {jax.device_count()} x "
        f"{jax.devices()[0].device_kind}, jax {jax.__version__}\n")
  print("| | " + " | ".join(columns) + " |")
  print("|---|" + "---|" * len(columns))
  for row in rows:
    print(f"| {row} | " + " | ".join(f"{results[c][row]:.1f}" if row in results[c] else "-" for c in columns) + " |")
  print("| compile + first call, all rows (s) | " + " | ".join(
      f"{sum(compile_s[c].values()):.1f}" if c in compile_s else "-" for c in columns) + " |")


if __name__ == "__main__":
  app.run(main)
