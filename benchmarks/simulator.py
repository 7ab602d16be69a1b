"""Rendered images per second of the eye simulator and the target domain, beside
what the SimGAN train step consumes (synthetic images refined per second, from
benchmarks/train_step.py) for the default and the ``cpu`` eye configs.

  python benchmarks/simulator.py

Compilation is excluded (one warm-up call); each timing is the best of 3 calls
ending in block_until_ready, on JAX's default device.
"""

import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # pylint: disable=g-import-not-at-top

from simgan_jax.configs import default  # pylint: disable=g-import-not-at-top
from simgan_jax.simulators import eyes, target  # pylint: disable=g-import-not-at-top


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
  rendered = {}
  for name, fn in cases.items():
    for batch in (128, 512):
      rendered[name, batch] = _images_per_second(fn, batch)
      print(f"{name:36s} {batch:6d} {rendered[name, batch]:10.0f}")
  simulator = max(v for (name, _), v in rendered.items() if name.startswith("eyesim ("))
  print("\ntrain step's consumption of synthetic images (adversarial iteration, refined images/s)")
  print(f"{'config':36s} {'batch':>6s} {'images/s':>10s} {'simulator / step':>17s}")
  cases = ((None, 32), ("cpu", 32)) if jax.default_backend() == "cpu" else ((None, 32), (None, 512))
  for variant, batch in cases:
    row = train_step.measure(default.get_config(variant), batch, seconds=5.0)
    consumed = row["refined_images_per_second"]
    print(f"{'default' + (':' + variant if variant else ''):36s} {batch:6d} {consumed:10.0f} "
          f"{simulator / consumed:16.0f}x")


if __name__ == "__main__":
  main()
