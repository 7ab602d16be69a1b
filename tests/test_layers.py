"""layers.Conv / max_pool: the matmul path is the XLA convolution's maths, with flax's parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax import layers, models, native
from simgan_jax.configs import default


def _x(shape, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=-1.0, maxval=1.0)


# Odd and even sizes, strides 1/2/4, every padding: a wrong SAME split (the odd pixel at
# the start instead of the end), a swapped kernel layout or an off-by-one stride slice fails.
@pytest.mark.parametrize("kernel,stride,padding,size", [
    (3, 1, "SAME", (35, 55)), (3, 2, "SAME", (35, 55)), (3, 2, "SAME", (18, 28)),
    (7, 4, "SAME", (30, 29)), (5, 2, "SAME", (16, 15)), (1, 1, "SAME", (9, 14)),
    (3, 1, "VALID", (35, 55)), (3, 1, "REFLECT", (35, 55)), (7, 1, "REFLECT", (12, 13)),
])
def test_matmul_conv_equals_xla_conv(kernel, stride, padding, size):
  x = _x((2, *size, 3))
  w = _x((kernel, kernel, 3, 5), seed=1)
  b = _x((5,), seed=2)
  ref = layers.conv2d(x, w, b, stride, padding, impl="xla")
  out = layers.conv2d(x, w, b, stride, padding, impl="matmul")
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, atol=2e-5)
  np.testing.assert_allclose(layers.conv2d(x, w, b, stride, padding, impl="hybrid"), ref, atol=2e-5)
  if padding != "REFLECT":
    flax = nn.Conv(5, (kernel, kernel), strides=(stride, stride), padding=padding).apply(
        {"params": {"kernel": w, "bias": b}}, x)
    np.testing.assert_allclose(out, flax, atol=2e-5)
  # Gradients too (the backward pass of slices + matmul is what training runs).
  g = lambda impl: jax.grad(lambda x, w: jnp.sum(jnp.sin(layers.conv2d(x, w, b, stride, padding, impl))),  # noqa: E731
                            argnums=(0, 1))(x, w)
  # "hybrid" has a hand-written kernel gradient (shifted copies + one matmul).
  for impl in ("matmul", "hybrid"):
    for a, c in zip(g("xla"), g(impl)):
      np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))


@pytest.mark.parametrize("window,stride,padding", [(3, 1, "SAME"), (3, 2, "SAME"), (3, 2, "VALID"),
                                                   (2, 2, "VALID")])
def test_max_pool_paths_agree(window, stride, padding):
  x = _x((2, 17, 22, 4))
  ref = nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
  np.testing.assert_array_equal(layers.max_pool(x, window, stride, padding, impl="matmul"), ref)


def test_reflect_padding_mirrors_without_repeating_the_edge():
  x = jnp.arange(4.0).reshape(1, 1, 4, 1)
  padded = layers._pad(jnp.broadcast_to(x, (1, 3, 4, 1)), 3, 1, "REFLECT")
  np.testing.assert_array_equal(padded[0, 1, :, 0], [1, 0, 1, 2, 3, 2])


def test_networks_get_flax_conv_parameters_and_match_across_impls():
  config = default.get_config("smoke")
  x = _x((4, 35, 55, 1))
  outs, params = {}, {}
  for impl in ("xla", "matmul", "hybrid"):
    config.conv_impl = impl
    refiner, disc = models.make_refiner(config), models.make_discriminator(config)
    params[impl] = (refiner.init(jax.random.PRNGKey(0), x)["params"],
                    disc.init(jax.random.PRNGKey(1), x, train=False)["params"])
    refined = refiner.apply({"params": params[impl][0]}, x)
    outs[impl] = (refined, disc.apply({"params": params[impl][1]}, refined, train=False))
  # The same key gives the same weights either way (checkpoints are interchangeable).
  for impl in ("matmul", "hybrid"):
    jax.tree.map(np.testing.assert_array_equal, params["xla"], params[impl])
    for a, b in zip(outs["xla"], outs[impl]):
      np.testing.assert_allclose(b, a, atol=1e-5)
  # Parameter names are flax.linen.Conv's.
  assert set(params["matmul"][0]["conv_in"]) == {"kernel", "bias"}


def test_unknown_impl_and_dtype_name_the_field():
  with pytest.raises(ValueError, match="config.conv_impl"):
    layers.resolve_impl("cudnn")
  with pytest.raises(ValueError, match="config.compute_dtype"):
    layers.resolve_dtype("float16")
  assert layers.resolve_impl("auto") == ("native" if native.available() else "hybrid")  # tests run on CPU


def test_bfloat16_networks_track_float32_and_keep_float32_outputs():
  config = default.get_config("smoke")
  x = _x((4, 35, 55, 1))
  config.compute_dtype = "float32"
  refiner32 = models.make_refiner(config)
  config.compute_dtype = "bfloat16"
  refiner16 = models.make_refiner(config)
  p = refiner32.init(jax.random.PRNGKey(0), x)["params"]
  y32, y16 = refiner32.apply({"params": p}, x), refiner16.apply({"params": p}, x)
  assert y16.dtype == jnp.float32 and jax.tree.leaves(p)[0].dtype == jnp.float32
  # bfloat16 has an 8-bit mantissa (relative step 2^-8 = 0.004) through 4 layers.
  err = float(jnp.max(jnp.abs(y16 - y32)))
  assert 0 < err < 0.05, err


def test_bfloat16_training_stays_close_to_float32(array_sources):
  """A few steps of every phase in bfloat16 against float32, from the same init."""
  from tests.test_training import run_steps  # pylint: disable=g-import-not-at-top

  curves = {}
  for dtype in ("float32", "bfloat16"):
    config = default.get_config("smoke")
    config.compute_dtype = dtype
    state, curves[dtype] = run_steps(config, array_sources, 1)
    assert jax.tree.leaves(state.refiner_params)[0].dtype == jnp.float32
    assert jax.tree.leaves(state.refiner_opt_state)[-1].dtype in (jnp.float32, jnp.int32)
  for m32, m16 in zip(curves["float32"], curves["bfloat16"]):
    for name in m32:
      # Stated tolerance: 3% relative (or 0.05 absolute for accuracies near 0).
      assert m16[name] == pytest.approx(m32[name], rel=0.03, abs=0.05), name
  # And bfloat16 really ran: a run that ignored compute_dtype would match bit for bit.
  assert any(m16[name] != m32[name] for m32, m16 in zip(curves["float32"], curves["bfloat16"]) for name in m32)
