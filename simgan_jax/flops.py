"""FLOPs of the refiner and discriminator, counted from layer shapes (2 per multiply-add).

Only convolutions are counted (activations, pooling and the optimiser are a few
percent at most). A backward pass costs 2x the forward (input and weight
gradients); a backward pass taken only for input gradients (D inside the
refiner's loss) costs 1x.
"""

from __future__ import annotations

import math


def _conv(h, w, k, cin, cout, stride=1):
  ho, wo = math.ceil(h / stride), math.ceil(w / stride)  # SAME padding
  return 2 * ho * wo * k * k * cin * cout, ho, wo


def refiner_flops(config) -> int:
  """Forward FLOPs of the refiner for one image."""
  h, w, c = config.image_height, config.image_width, config.channels
  k, f = config.refiner.kernel_size, config.refiner.features
  total = _conv(h, w, k, c, f)[0]
  total += config.refiner.num_blocks * 2 * _conv(h, w, k, f, f)[0]
  return total + _conv(h, w, 1, f, c)[0]


def discriminator_flops(config) -> int:
  """Forward FLOPs of the local discriminator for one image."""
  from simgan_jax import models  # pylint: disable=g-import-not-at-top

  h, w, cin = config.image_height, config.image_width, config.channels
  total = 0
  for kind, kernel, stride, features in models.DISCRIMINATOR_PRESETS[config.discriminator.preset]:
    if kind == "pool":
      h, w = math.ceil(h / stride), math.ceil(w / stride)
      continue
    cout = max(1, int(round(features * config.discriminator.width_multiplier)))
    flops, h, w = _conv(h, w, kernel, cin, cout, stride)
    total, cin = total + flops, cout
  return total + _conv(h, w, 1, cin, 2)[0]


def iteration_flops(config, kg: int | None = None) -> int:
  """FLOPs of one adversarial iteration (Kg refiner + Kd discriminator updates)."""
  r, d, b = refiner_flops(config), discriminator_flops(config), config.batch_size
  kg = config.kg if kg is None else kg
  refiner_update = b * (3 * r + 2 * d)  # R fwd+bwd, D fwd + input-gradient bwd
  fresh = b // 2 if config.use_history else b  # refined images made for D
  discriminator_update = fresh * r + 2 * b * 3 * d  # R fwd, D fwd+bwd on b real + b refined
  return kg * refiner_update + config.kd * discriminator_update
