from simgan_jax import flops
from simgan_jax.configs import default


def test_eye_refiner_and_discriminator_flops_from_layer_shapes():
  c = default.get_config()
  pixels = 35 * 55
  # conv3x3 1->64, 4 blocks x 2 conv3x3 64->64, conv1x1 64->1; 2 FLOPs per multiply-add.
  assert flops.refiner_flops(c) == 2 * pixels * (9 * 64 + 8 * 9 * 64 * 64 + 64)
  # 35x55 -> conv/2 18x28 -> conv/2 9x14 -> pool/1 -> conv 9x14 -> 1x1 -> 1x1 logits.
  expected = 2 * (18 * 28 * 9 * 1 * 96 + 9 * 14 * (9 * 96 * 64 + 9 * 64 * 32 + 32 * 32 + 32 * 2))
  assert flops.discriminator_flops(c) == expected


def test_iteration_flops_counts_kg_refiner_and_kd_discriminator_updates():
  c = default.get_config()
  c.batch_size, c.kg, c.kd = 8, 3, 1
  r, d = flops.refiner_flops(c), flops.discriminator_flops(c)
  assert flops.iteration_flops(c) == 3 * 8 * (3 * r + 2 * d) + (4 * r + 16 * 3 * d)
