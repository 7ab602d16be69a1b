"""The PyTorch twin (benchmarks/torch_twin.py) computes what our flax networks and losses do.

Skipped without torch (a benchmark-only dependency, benchmarks/requirements.txt).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import torch_twin  # noqa: E402
from simgan_jax import losses, models  # noqa: E402
from simgan_jax.configs import default  # noqa: E402


def _flax_leaves(params, prefix=()):
  """{(module path...): {"kernel": ..., "bias": ...}} of a flax params tree."""
  if "kernel" in params:
    return {prefix: params}
  out = {}
  for name, child in params.items():
    out.update(_flax_leaves(child, prefix + (name,)))
  return out


def _networks(config):
  images = jnp.zeros((1, config.image_height, config.image_width, config.channels))
  r_params = models.make_refiner(config).init(jax.random.PRNGKey(0), images)["params"]
  d_params = models.make_discriminator(config).init(jax.random.PRNGKey(1), images, train=False)["params"]
  return r_params, d_params


def _nchw(x):
  return torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def test_every_layer_has_the_same_parameter_count_as_ours():
  # Catches a wrong width, kernel, missing bias or a missing / extra layer in the twin.
  config = default.get_config()
  r_params, d_params = _networks(config)
  for twin, params in ((torch_twin.make_refiner(config), r_params), (torch_twin.make_discriminator(config), d_params)):
    ours = {path: sum(v.size for v in leaf.values()) for path, leaf in _flax_leaves(params).items()}
    theirs = {path: sum(p.numel() for p in conv.parameters()) for path, conv in twin.flax_paths().items()}
    assert theirs == ours
    assert sum(p.numel() for p in twin.parameters()) == sum(ours.values())


@pytest.mark.parametrize("padding", ["SAME", "REFLECT"])
def test_same_weights_give_the_same_refined_images_and_logits(padding):
  # Catches symmetric instead of XLA's asymmetric SAME padding in D's stride-2 convs
  # (same 9x14 patch map, different logits), a missing ReLU, a wrong kernel
  # transpose, and reflect padding on the wrong side. (Zero vs -inf padding of the
  # max pool cannot differ: it follows a ReLU.)
  config = default.get_config()
  config.refiner.padding = padding
  r_params, d_params = _networks(config)
  refiner, discriminator = torch_twin.make_refiner(config), torch_twin.make_discriminator(config)
  torch_twin.copy_flax_params(refiner, r_params)
  torch_twin.copy_flax_params(discriminator, d_params)
  images = jax.random.uniform(jax.random.PRNGKey(2), (2, 35, 55, 1), minval=-1, maxval=1)
  ours_refined = models.make_refiner(config).apply({"params": r_params}, images)
  ours_logits = models.make_discriminator(config).apply({"params": d_params}, images, train=False)
  with torch.no_grad():
    np.testing.assert_allclose(_nhwc(refiner(_nchw(images))), ours_refined, atol=2e-5)
    theirs = discriminator(_nchw(images))
  assert theirs.shape == (2, 2, 9, 14)
  np.testing.assert_allclose(_nhwc(theirs), ours_logits, atol=2e-4, rtol=1e-4)


def test_losses_match_ours():
  # Catches averaging instead of summing over patches, swapped real/refined labels, and
  # the L1 term against the wrong image or without lambda.
  config = default.get_config()
  config.refiner.features, config.refiner.num_blocks = 8, 1
  r_params, d_params = _networks(config)
  refiner, discriminator = torch_twin.make_refiner(config), torch_twin.make_discriminator(config)
  torch_twin.copy_flax_params(refiner, r_params)
  torch_twin.copy_flax_params(discriminator, d_params)
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  synthetic, real = (jax.random.uniform(k, (4, 35, 55, 1), minval=-1, maxval=1) for k in keys)
  weight = 0.5
  refined = models.make_refiner(config).apply({"params": r_params}, synthetic)
  apply_d = lambda x: models.make_discriminator(config).apply({"params": d_params}, x, train=False)  # noqa: E731
  ours_r = losses.local_adversarial_loss(apply_d(refined)) + weight * losses.self_regularization_loss(
      refined, synthetic, psi=losses.identity)
  ours_d = losses.local_discriminator_loss(apply_d(real), apply_d(refined))
  with torch.no_grad():
    theirs_r = torch_twin.refiner_loss(refiner, discriminator, _nchw(synthetic), weight)
    theirs_d = torch_twin.discriminator_loss(discriminator, _nchw(real), refiner(_nchw(synthetic)))
  np.testing.assert_allclose(float(theirs_r), float(ours_r), rtol=1e-5)
  np.testing.assert_allclose(float(theirs_d), float(ours_d), rtol=1e-5)


def test_iteration_updates_both_networks_and_fills_then_replaces_half_batch_history_slots():
  # Catches a history that never fills (copy instead of write), one that replaces more
  # or fewer than b/2 slots once full, and an update that leaves a network unchanged or
  # gives D's parameters a gradient in the refiner's update.
  config = default.get_config("smoke")
  config.kg, config.kd = 2, 1
  pool = np.random.default_rng(0).integers(0, 256, (32, 35, 55, 1), dtype=np.uint8)
  twin = torch_twin.TwinIteration(config, 8, pool, pool, history_size=8)  # 2 rows of 4 columns
  before_r = [p.detach().clone() for p in twin.refiner.parameters()]
  before_d = [p.detach().clone() for p in twin.discriminator.parameters()]
  twin.refiner_update()
  assert all(p.grad is None for p in twin.discriminator.parameters())
  assert all(torch.equal(a, p) for a, p in zip(before_d, twin.discriminator.parameters()))
  assert all(p.requires_grad for p in twin.discriminator.parameters())  # restored for D's update
  twin.iteration()
  assert all(not torch.equal(a, p) for a, p in zip(before_r, twin.refiner.parameters()))
  assert all(not torch.equal(a, p) for a, p in zip(before_d, twin.discriminator.parameters()))
  assert twin.history.filled_rows == 1
  twin.iteration()
  assert twin.history.filled_rows == 2
  full = twin.history.images.clone()
  twin.discriminator_update()
  changed = (twin.history.images != full).flatten(2).any(-1)  # [rows, columns]
  assert twin.history.filled_rows == 2
  assert changed.sum(0).tolist() == [1, 1, 1, 1]  # one slot per column: b/2 slots in all
