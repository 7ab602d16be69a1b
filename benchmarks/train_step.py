r"""Speed of the adversarial SimGAN iteration (Kg refiner + Kd discriminator updates).

  python benchmarks/train_step.py                       # eye config, batch 32, 128, 512
  python benchmarks/train_step.py --batch_sizes=32,64 --config=simgan_jax/configs/default.py:cpu

Prints iterations/s, refined images/s (images passed through the refiner per
second: batch x Kg for the refiner updates plus the fresh half batch per
discriminator update), achieved GFLOP/s (from layer shapes, simgan_jax/flops.py,
with XLA's own count beside it) and this device's float32 matmul GFLOP/s, so the
gap to the hardware is visible. Data are in-memory pools, so the simulator's cost
is not included (benchmarks/simulator.py measures that). Runs unchanged on GPU/TPU.
"""

import os
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "simgan_jax/configs/default.py"), "Config (networks, Kg, Kd).", lock_config=False)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["32", "128", "512"], "Global batch sizes.")
_SECONDS = flags.DEFINE_float("seconds", 20.0, "Minimum timed seconds per batch size (at least 2 iterations).")


def matmul_gflops(jax, jnp, n=2048, repeats=10) -> float:
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    y = f(x)
  y.block_until_ready()
  return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(config, batch_size: int, seconds: float) -> dict:
  """Times the adversarial iteration of ``config`` at ``batch_size`` on all devices."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from simgan_jax import flops, parallel, training  # pylint: disable=g-import-not-at-top
  from simgan_jax.data.sources import ArraySource  # pylint: disable=g-import-not-at-top

  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  config.history_size = batch_size // 2 * 10
  shape = (config.image_height, config.image_width, config.channels)
  rng = np.random.default_rng(0)
  synthetic = ArraySource(rng.integers(0, 256, (1024, *shape), dtype=np.uint8))
  real = ArraySource(rng.integers(0, 256, (1024, *shape), dtype=np.uint8))
  mesh = parallel.make_mesh()
  s = training.make_setup(config, synthetic, real, mesh.devices.size)
  state = training.create_state(s, mesh)
  data = parallel.put_replicated({"synthetic": synthetic.device_data(), "real": real.device_data()}, mesh)
  step = training.compile_step(training.adversarial_step, s, mesh, training.state_specs(state))
  cost = step.lower(state, data).compile().cost_analysis()
  cost = (cost[0] if isinstance(cost, list) else cost) or {}
  state, metrics = step(state, data)  # warm up
  jax.block_until_ready(metrics)
  iterations, start = 0, time.perf_counter()
  while iterations < 2 or time.perf_counter() - start < seconds:
    state, metrics = step(state, data)
    iterations += 1
  jax.block_until_ready((state, metrics))
  per_iteration = (time.perf_counter() - start) / iterations
  refined = batch_size * config.kg + config.kd * (batch_size // 2 if config.use_history else batch_size)
  counted = flops.iteration_flops(config)
  return {
      "batch": batch_size,
      "iterations_per_second": 1 / per_iteration,
      "refined_images_per_second": refined / per_iteration,
      "gflop_per_iteration": counted / 1e9,
      "gflops_layer_count": counted / per_iteration / 1e9,
      # XLA's count is per device program; times the devices for the whole mesh.
      "gflops_xla_count": cost.get("flops", float("nan")) * mesh.devices.size / per_iteration / 1e9,
  }


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
  print("| batch | iterations/s | refined images/s | GFLOP/iteration | achieved GFLOP/s (layer count) "
        "| achieved GFLOP/s (XLA count) | % of matmul |")
  print("|---|---|---|---|---|---|---|", flush=True)
  for b in _BATCH_SIZES.value:
    r = measure(config, int(b), _SECONDS.value)
    print(f"| {r['batch']} | {r['iterations_per_second']:.3f} | {r['refined_images_per_second']:.0f} "
          f"| {r['gflop_per_iteration']:.1f} | {r['gflops_layer_count']:.1f} | {r['gflops_xla_count']:.1f} "
          f"| {100 * r['gflops_layer_count'] / peak:.0f}% |", flush=True)


if __name__ == "__main__":
  app.run(main)
