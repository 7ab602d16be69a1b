"""Rendered images per second of the eye simulator and the target domain.

  python benchmarks/simulator.py

Compilation is excluded (one warm-up call); each timing is the best of 3 calls
ending in block_until_ready, on JAX's default device.
"""

import time

import jax

from simgan_jax.simulators import eyes, target


def _images_per_second(fn, batch: int, repeats: int = 3) -> float:
  keys = jax.random.split(jax.random.PRNGKey(0), batch)
  jax.block_until_ready(fn(keys))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(keys))
    best = min(best, time.perf_counter() - start)
  return batch / best


def main():
  sim, tgt = eyes.EyeSimConfig(), target.TargetConfig()
  cases = {
      "eyesim (one jit)": jax.jit(lambda k: eyes.render_batch(k, sim)),
      "eyesim_target (one jit)": jax.jit(lambda k: target.render_batch(k, tgt)),
      "eyesim_target (staged, as cached)": lambda k: target.render_batch_staged(k, tgt),
  }
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
  print(f"{'renderer':36s} {'batch':>6s} {'images/s':>10s}")
  for name, fn in cases.items():
    for batch in (128, 512):
      print(f"{name:36s} {batch:6d} {_images_per_second(fn, batch):10.0f}")


if __name__ == "__main__":
  main()
