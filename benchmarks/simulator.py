"""Rendered images per second of the eye simulator and the target domain, beside
what the SimGAN train step consumes (synthetic images refined per second, from
benchmarks/train_step.py) for the default and the ``cpu`` eye configs; the same
for the depth-hand simulator against the hand configs (configs/handsim.py).

  python benchmarks/simulator.py            # eyes, then hands
  python benchmarks/simulator.py hands      # hands only

Compilation is excluded (one warm-up call); each timing is the best of 3 calls
ending in block_until_ready, on JAX's default device.
"""

import dataclasses
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # pylint: disable=g-import-not-at-top

from simgan_jax.configs import default  # pylint: disable=g-import-not-at-top
from simgan_jax.configs import handsim  # pylint: disable=g-import-not-at-top
from simgan_jax.simulators import eyes, target  # pylint: disable=g-import-not-at-top
from simgan_jax.simulators import hand_sources, hands, hands_target  # pylint: disable=g-import-not-at-top


def _images_per_second(fn, batch: int, repeats: int = 3) -> float:
  keys = jax.random.split(jax.random.PRNGKey(0), batch)
  jax.block_until_ready(fn(keys))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(keys))
    best = min(best, time.perf_counter() - start)
  return batch / best


def main_hands():
  """The hand simulator and target at the default (224) and cpu (64) sizes vs the hand train step."""
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
  print(f"{'renderer':36s} {'batch':>6s} {'images/s':>10s}")
  on_cpu = jax.default_backend() == "cpu"
  variant = "cpu" if on_cpu else None
  config = handsim.get_config(variant)
  size = config.image_height
  sim = hands.HandSimConfig(height=size, width=size)
  tgt = hands_target.HandTargetConfig(scene=dataclasses.replace(hands_target.TARGET_SCENE, height=size,
                                                                width=size))
  cases = {f"handsim {size}x{size}": jax.jit(lambda k: hands.render_batch(k, sim)),
           f"handsim_target {size}x{size}": lambda k: hand_sources._render(k, tgt)}  # pylint: disable=protected-access
  rendered = {}
  for name, fn in cases.items():
    for batch in ((32,) if on_cpu else (32, 512)):
      rendered[name, batch] = _images_per_second(fn, batch, repeats=2)
      print(f"{name:36s} {batch:6d} {rendered[name, batch]:10.0f}", flush=True)
  simulator = max(v for (name, _), v in rendered.items() if name.startswith("handsim "))
  row = train_step.measure(config, 32, seconds=2.0)
  consumed = row["refined_images_per_second"]
  print(f"\nhand train step (handsim{':' + variant if variant else ''}, batch 32): {consumed:.0f} refined "
        f"images/s; the simulator renders {simulator / consumed:.0f}x that")


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
  if sys.argv[1:] != ["hands"]:
    main()
  main_hands()
