r"""Speed of the adversarial SimGAN iteration (Kg refiner + Kd discriminator updates).

  python benchmarks/train_step.py                       # eye config, batch 32, 128, 512
  python benchmarks/train_step.py --batch_sizes=32,64 --config=simgan_jax/configs/default.py:cpu

Prints iterations/s, refined images/s (images passed through the refiner per
second: batch x Kg for the refiner updates plus the fresh half batch per
discriminator update), achieved GFLOP/s (from layer shapes, simgan_jax/flops.py,
with XLA's own count beside it) and this device's float32 matmul GFLOP/s, so the
gap to the hardware is visible. Data are in-memory pools, so the simulator's cost
is not included (benchmarks/simulator.py measures that). Runs unchanged on GPU/TPU.
Compilation (once, also used for XLA's cost analysis) is timed in its own column.

  python benchmarks/train_step.py --compare_torch --batch_sizes=32,128 --seconds=20

alternates timed windows of ours, the PyTorch twin (benchmarks/torch_twin.py)
eager and the twin under torch.compile (--rounds each, medians) in one process
and prints seconds per iteration and the ratio twin / ours (> 1: ours faster);
--bfloat16_column adds ours with compute_dtype=bfloat16 to the same alternation,
--conv_impl_columns=hybrid,xla ours with other convolution implementations.
Needs torch (benchmarks/requirements.txt); the twin runs on CUDA when JAX runs on
a GPU and torch has CUDA, else on the CPU with --torch_threads threads.
"""

import os
import sys
import time

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "simgan_jax/configs/default.py"), "Config (networks, Kg, Kd).", lock_config=False)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["32", "128", "512"], "Global batch sizes.")
_SECONDS = flags.DEFINE_float("seconds", 20.0, "Minimum timed seconds per batch size (at least 2 iterations); "
                               "with --compare_torch, per window.")
_COMPARE_TORCH = flags.DEFINE_bool("compare_torch", False, "Alternate ours with the PyTorch twin "
                                   "(benchmarks/torch_twin.py) and print the ratio per batch size.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "--compare_torch: timed windows per implementation and batch size.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "--compare_torch: torch CPU threads (0: all CPU cores).")
_BF16 = flags.DEFINE_bool("bfloat16_column", False, "--compare_torch: also time ours with "
                          "compute_dtype=bfloat16 (float32 parameters), in the same alternation.")
_CONV_IMPLS = flags.DEFINE_list("conv_impl_columns", [], "--compare_torch: also time ours with these "
                                 "config.conv_impl values (e.g. hybrid,xla), in the same alternation.")
_COMPILE_TWIN = flags.DEFINE_bool("compile_twin", True, "--compare_torch: also time the twin under torch.compile.")


def matmul_gflops(jax, jnp, n=2048, repeats=10) -> float:
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    y = f(x)
  y.block_until_ready()
  return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


class Ours:
  """Our compiled adversarial iteration of ``config`` at ``batch_size`` on all devices."""

  def __init__(self, config, batch_size: int, synthetic, real):
    import jax  # pylint: disable=g-import-not-at-top

    from simgan_jax import parallel, training  # pylint: disable=g-import-not-at-top
    from simgan_jax.data.sources import ArraySource  # pylint: disable=g-import-not-at-top

    self.jax = jax
    mesh = parallel.make_mesh()
    self.num_devices = mesh.devices.size
    s = training.make_setup(config, ArraySource(synthetic), ArraySource(real), self.num_devices)
    self.state = training.create_state(s, mesh)
    self.data = parallel.put_replicated({"synthetic": s.data.synthetic.device_data(), "real": s.data.real.device_data()}, mesh)
    step = training.compile_step(training.adversarial_step, s, mesh, training.state_specs(self.state))
    # One compilation, used for both XLA's cost analysis and the calls.
    start = time.perf_counter()
    self.step = step.lower(self.state, self.data).compile()
    self.compile_seconds = time.perf_counter() - start
    cost = self.step.cost_analysis()
    self.cost = (cost[0] if isinstance(cost, list) else cost) or {}
    self.time_window(0)  # warm up

  def time_window(self, seconds: float) -> float:
    """Seconds per iteration over at least 2 iterations and ``seconds``.

    At most one iteration is in flight: the loop waits for iteration t-1's metrics
    after dispatching t. Without that, asynchronous dispatch queued every call the
    loop made in ``seconds`` (dozens at batch 128 on CPU) and the window ran for
    minutes, long after the clock said stop.
    """
    iterations, start, previous = 0, time.perf_counter(), None
    while iterations < 2 or time.perf_counter() - start < seconds:
      self.state, metrics = self.step(self.state, self.data)
      if previous is not None:
        self.jax.block_until_ready(previous)
      previous, iterations = metrics, iterations + 1
    self.jax.block_until_ready((self.state, metrics))
    return (time.perf_counter() - start) / iterations


def benchmark_config(config, batch_size: int):
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  config.history_size = batch_size // 2 * 10
  return config


def random_pools(config, n: int = 1024):
  """Random uint8 synthetic and real pools: the iteration's compute does not depend on pixels."""
  shape = (config.image_height, config.image_width, config.channels)
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def measure(config, batch_size: int, seconds: float) -> dict:
  """Times the adversarial iteration of ``config`` at ``batch_size`` on all devices."""
  from simgan_jax import flops  # pylint: disable=g-import-not-at-top

  config = benchmark_config(config, batch_size)
  ours = Ours(config, batch_size, *random_pools(config))
  per_iteration = ours.time_window(seconds)
  refined = batch_size * config.kg + config.kd * (batch_size // 2 if config.use_history else batch_size)
  counted = flops.iteration_flops(config)
  return {
      "batch": batch_size,
      "compile_seconds": ours.compile_seconds,
      "iterations_per_second": 1 / per_iteration,
      "refined_images_per_second": refined / per_iteration,
      "gflop_per_iteration": counted / 1e9,
      "gflops_layer_count": counted / per_iteration / 1e9,
      # XLA's count is per device program; times the devices for the whole mesh.
      "gflops_xla_count": ours.cost.get("flops", float("nan")) * ours.num_devices / per_iteration / 1e9,
  }


def _first_line(error: BaseException) -> str:
  lines = [l for l in str(error).splitlines() if l.strip()]
  return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def variants(config, bfloat16: bool, conv_impls) -> dict:
  """Column label -> config: ours as configured, plus the --bfloat16_column and
  --conv_impl_columns variants."""
  from simgan_jax import layers  # pylint: disable=g-import-not-at-top

  out = {f"ours {layers.resolve_impl(config.conv_impl)}": config}
  if bfloat16:
    c = config.copy_and_resolve_references()
    c.compute_dtype = "bfloat16"
    out[f"ours {layers.resolve_impl(config.conv_impl)} bfloat16"] = c
  for impl in conv_impls:
    c = config.copy_and_resolve_references()
    c.conv_impl = impl
    out.setdefault(f"ours {layers.resolve_impl(impl)}", c)
  return out


def compare_torch(config, batch_size: int, seconds: float, rounds: int, device: str, compile_twin: bool,
                  bfloat16: bool = False, conv_impls=()) -> dict:
  """Alternates timed windows of ours (and its variants: ``variants``), the twin eager and
  the twin compiled; medians (s/iteration under each column label, "eager", "compiled")."""
  from benchmarks import torch_twin  # pylint: disable=g-import-not-at-top
  from simgan_jax import flops  # pylint: disable=g-import-not-at-top

  config = benchmark_config(config, batch_size)
  synthetic, real = random_pools(config)
  runners, compile_seconds = {}, {}
  for label, c in variants(config, bfloat16, conv_impls).items():
    ours = Ours(c, batch_size, synthetic, real)
    print(f"  batch {batch_size}: {label} compiled in {ours.compile_seconds:.1f} s", file=sys.stderr, flush=True)
    runners[label], compile_seconds[label] = ours.time_window, ours.compile_seconds
  labels = list(runners)
  twin = torch_twin.TwinIteration(config, batch_size, synthetic, real, device=device)
  twin.iteration()  # warm up
  runners["eager"] = twin.time_window
  result = {"batch": batch_size, "compile_seconds": compile_seconds[labels[0]], "labels": labels,
            "twin_compile_seconds": float("nan"),
            "compiled_error": "" if compile_twin else "not run (--nocompile_twin)"}
  if compile_twin:
    compiled = torch_twin.TwinIteration(config, batch_size, synthetic, real, compile=True, device=device)
    start = time.perf_counter()
    try:
      compiled.iteration()  # compiles every graph of the iteration
      compiled.iteration()  # and any recompilation a second call triggers
      compiled.sync()
      first_two = time.perf_counter() - start
      print(f"  batch {batch_size}: twin compiled (2 iterations) in {first_two:.1f} s", file=sys.stderr, flush=True)
      runners["compiled"] = compiled.time_window
    except Exception as e:  # pylint: disable=broad-except
      result["compiled_error"] = _first_line(e)
      print(f"torch.compile failed at batch {batch_size}: {result['compiled_error']}", file=sys.stderr, flush=True)
  windows = {name: [] for name in runners}
  for r in range(rounds):
    for name, run in runners.items():
      windows[name].append(run(seconds))
      print(f"  batch {batch_size} round {r + 1}/{rounds} {name}: {windows[name][-1]:.3f} s/iteration",
            file=sys.stderr, flush=True)
  for name, values in windows.items():
    result[name] = float(np.median(values))
  if "compiled" in result:
    result["twin_compile_seconds"] = first_two - 2 * result["compiled"]  # compilation alone, estimated
  result.setdefault("compiled", float("nan"))
  result["gflop_per_iteration"] = flops.iteration_flops(config) / 1e9
  return result


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  peak = matmul_gflops(jax, jnp)
  device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
  shape = (config.image_height, config.image_width, config.channels)
  print(f"\nSimGAN adversarial iteration (Kg={config.kg}, Kd={config.kd}, image {shape}, refiner "
        f"{config.refiner.num_blocks} blocks x {config.refiner.features}) on {device}; "
        f"float32 matmul {peak:.0f} GFLOP/s\n")
  if _COMPARE_TORCH.value:
    return _compare_torch_table(config, peak)
  print("| batch | compile s | iterations/s | refined images/s | GFLOP/iteration | achieved GFLOP/s (layer count) "
        "| achieved GFLOP/s (XLA count) | % of matmul |")
  print("|---|---|---|---|---|---|---|---|", flush=True)
  for b in _BATCH_SIZES.value:
    r = measure(config, int(b), _SECONDS.value)
    print(f"| {r['batch']} | {r['compile_seconds']:.1f} | {r['iterations_per_second']:.3f} "
          f"| {r['refined_images_per_second']:.0f} "
          f"| {r['gflop_per_iteration']:.1f} | {r['gflops_layer_count']:.1f} | {r['gflops_xla_count']:.1f} "
          f"| {100 * r['gflops_layer_count'] / peak:.0f}% |", flush=True)


def _f(value: float, digits: int) -> str:
  return "-" if np.isnan(value) else f"{value:.{digits}f}"


def _compare_torch_table(config, peak: float):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("--compare_torch needs torch: pip install -r benchmarks/requirements.txt") from None
  import jax  # pylint: disable=g-import-not-at-top

  threads = _TORCH_THREADS.value or os.cpu_count()
  torch.set_num_threads(threads)
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  if jax.default_backend() != "cpu" and device == "cpu":
    print(f"warning: ours runs on {jax.default_backend()}, the twin on the CPU (torch has no CUDA here)",
          file=sys.stderr)
  print(f"PyTorch twin (benchmarks/torch_twin.py): torch {torch.__version__} on {device}, {threads} threads; "
        f"{_ROUNDS.value} alternating windows of {_SECONDS.value:g} s each per column, medians; ratio > 1: "
        "ours faster\n")
  rows, errors = [], []
  for b in _BATCH_SIZES.value:
    r = compare_torch(config, int(b), _SECONDS.value, _ROUNDS.value, device, _COMPILE_TWIN.value, _BF16.value,
                      _CONV_IMPLS.value)
    if r["compiled_error"]:
      errors.append(f"batch {b}: twin compiled: {r['compiled_error']}")
    rows.append(r)
  labels, main = rows[0]["labels"], rows[0]["labels"][0]
  print("| batch | ours compile s | " + " | ".join(f"{l} s/iteration" for l in labels)
        + " | twin eager s/iteration | twin compiled s/iteration | twin compile s | "
        + " | ".join(f"eager / {l}" for l in labels) + f" | compiled / {main} | {main} % of matmul |")
  print("|---" * (7 + 2 * len(labels)) + "|")
  for r in rows:
    fraction = r["gflop_per_iteration"] / r[main] / peak
    print(f"| {r['batch']} | {r['compile_seconds']:.1f} | " + " | ".join(f"{r[l]:.3f}" for l in labels)
          + f" | {r['eager']:.3f} | {_f(r['compiled'], 3)} | {_f(r['twin_compile_seconds'], 1)} | "
          + " | ".join(f"{r['eager'] / r[l]:.2f}" for l in labels)
          + f" | {_f(r['compiled'] / r[main], 2)} | {100 * fraction:.0f}% |", flush=True)
  for line in errors:
    print(line)


if __name__ == "__main__":
  app.run(main)
