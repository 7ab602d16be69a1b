"""conv_impl="native" (C++ kernels behind jax.ffi): XLA's maths under jit, grad and shard_map.

The kernels are compiled on first use; a machine without a C++ compiler falls back to
``hybrid`` (tested below). Under CI the kernels must build: a silent fallback would
leave every native test skipped and the default CPU path untested.
"""

import functools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from simgan_jax import layers, native, parallel
from simgan_jax.configs import default


@pytest.fixture(autouse=True)
def _native_built():
  if not native.available():
    if os.environ.get("CI"):
      pytest.fail(f"native kernels did not build under CI: {native._STATE.get('error')}")
    pytest.skip(f"native kernels unavailable: {native._STATE.get('error')}")


def _x(shape, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), shape, minval=-1.0, maxval=1.0)


def _calls_native(fn, *args) -> bool:
  return "simgan_conv_forward" in str(jax.make_jaxpr(fn)(*args))


# Every padding, odd widths that leave a remainder after the register tiles, output
# channels of 1, 2, 3 and 4 vectors, 5 x 5 kernels, one image row, strides 2 and 4 with
# SAME's uneven split, and 1 or 3 input channels (direct loops instead of Winograd).
@pytest.mark.parametrize("padding,kernel,stride,cin,cout,size", [
    ("SAME", 3, 1, 16, 32, (7, 9)), ("REFLECT", 3, 1, 32, 48, (8, 13)), ("VALID", 3, 1, 16, 16, (9, 10)),
    ("SAME", 5, 1, 16, 64, (6, 11)), ("REFLECT", 5, 1, 16, 16, (5, 7)), ("SAME", 3, 1, 64, 64, (35, 55)),
    ("SAME", 3, 1, 16, 16, (1, 30)), ("SAME", 3, 2, 96, 64, (18, 28)), ("SAME", 3, 2, 1, 96, (35, 55)),
    ("SAME", 7, 4, 3, 32, (30, 29)), ("REFLECT", 3, 1, 1, 32, (9, 12)), ("VALID", 3, 2, 16, 16, (9, 12)),
])
def test_native_conv_and_gradients_equal_xla(padding, kernel, stride, cin, cout, size):
  x = _x((3, *size, cin))
  w = 0.2 * _x((kernel, kernel, cin, cout), seed=1)
  b = _x((cout,), seed=2)
  conv = lambda impl: lambda x, w: layers.conv2d(x, w, b, stride, padding, impl)  # noqa: E731
  assert _calls_native(conv("native"), x, w)
  ref, out = conv("xla")(x, w), jax.jit(conv("native"))(x, w)
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, atol=2e-5 * float(jnp.max(jnp.abs(ref))))
  grad = lambda impl: jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(impl)(x, w))), (0, 1)))  # noqa: E731
  for a, c in zip(grad("xla")(x, w), grad("native")(x, w)):
    np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))


@pytest.mark.parametrize("padding,residual,relu", [("SAME", True, True), ("REFLECT", False, True),
                                                   ("VALID", True, False), ("SAME", False, False)])
def test_fused_bias_residual_relu_equal_separate_operations(padding, residual, relu):
  x = _x((2, 8, 13, 16))
  w, b = 0.3 * _x((3, 3, 16, 32), seed=1), _x((32,), seed=2)
  out_shape = (2, 6, 11, 32) if padding == "VALID" else (2, 8, 13, 32)
  r = _x(out_shape, seed=3) if residual else None

  def f(impl, x, w, b, r):
    return layers.conv2d(x, w, b, 1, padding, impl, residual=r, relu=relu)

  ref, out = f("xla", x, w, b, r), jax.jit(functools.partial(f, "native"))(x, w, b, r)
  np.testing.assert_allclose(out, ref, atol=2e-5)
  if relu:
    assert float(jnp.mean(out == 0)) > 0.2  # the ReLU really cut something
  argnums = (0, 1, 2, 3) if residual else (0, 1, 2)
  grad = lambda impl: jax.grad(lambda *a: jnp.sum(jnp.sin(3 * f(impl, *a))), argnums)(x, w, b, r)  # noqa: E731
  for a, c in zip(grad("xla"), grad("native")):
    np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))


def test_layers_native_cannot_take_go_through_hybrid():
  # 1 x 1, bfloat16 and 8-output-channel layers: the same maths through hybrid.
  for stride, k, cout, dtype in ((1, 1, 16, jnp.float32), (2, 3, 8, jnp.float32), (1, 3, 16, jnp.bfloat16)):
    x, w = _x((2, 9, 12, 16)).astype(dtype), (0.2 * _x((k, k, 16, cout), seed=1)).astype(dtype)
    fn = lambda x, w: layers.conv2d(x, w, None, stride, "SAME", "native")  # noqa: E731
    assert not _calls_native(fn, x, w)
    np.testing.assert_allclose(np.asarray(fn(x, w), np.float32),
                               np.asarray(layers.conv2d(x, w, None, stride, "SAME", "hybrid"), np.float32))


def test_native_results_are_bitwise_reproducible():
  x, w = _x((4, 20, 30, 32)), 0.2 * _x((3, 3, 32, 32), seed=1)
  f = jax.jit(jax.grad(lambda x, w: jnp.sum(layers.conv2d(x, w, None, 1, "REFLECT", "native") ** 2), (0, 1)))
  first, second = f(x, w), f(x, w)
  for a, c in zip(first, second):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_kernel_gradient_inside_shard_map_is_the_whole_batch_gradient():
  # The kernel is replicated and the batch split over 8 devices: the kernel's cotangent
  # must be summed over the devices (a per-device gradient would be 8x too small, and
  # a wrong type fails check_vma).
  mesh = parallel.make_mesh()
  n = mesh.devices.size
  x, w = _x((2 * n, 9, 11, 16)), 0.2 * _x((3, 3, 16, 32), seed=1)
  loss = lambda impl: lambda x, w: jnp.sum(jnp.sin(layers.conv2d(x, w, None, 1, "SAME", impl)))  # noqa: E731
  sharded = jax.jit(jax.shard_map(lambda x, w: jax.grad(loss("native"), (0, 1))(x, w), mesh=mesh,
                                  in_specs=(P(parallel.AXIS), P()), out_specs=(P(parallel.AXIS), P())))
  dx, dw = sharded(x, w)
  ref_dx, ref_dw = jax.grad(loss("xla"), (0, 1))(x, w)
  np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dw, ref_dw, rtol=1e-4, atol=1e-4)


def test_refiner_trains_the_same_with_native_and_hybrid(array_sources):
  from simgan_jax import training  # pylint: disable=g-import-not-at-top

  params = {}
  for impl in ("hybrid", "native"):
    config = default.get_config("smoke")
    config.refiner.features = 16  # native takes the 16 -> 16 layers
    config.refiner.padding = "REFLECT"
    config.conv_impl = impl
    mesh = parallel.make_mesh()
    s = training.make_setup(config, *array_sources, mesh.devices.size)
    state = training.create_state(s, mesh)
    data = parallel.put_replicated({"synthetic": s.synthetic.device_data(), "real": s.real.device_data()}, mesh)
    step = training.compile_step(training.adversarial_step, s, mesh, training.state_specs(state))
    for _ in range(3):
      state, _ = step(state, data)
    params[impl] = jax.device_get((state.refiner_params, state.discriminator_params))
  jax.tree.map(lambda a, c: np.testing.assert_allclose(c, a, rtol=1e-3, atol=1e-5), params["hybrid"],
               params["native"])


def test_build_failure_falls_back_to_hybrid_and_names_the_field(monkeypatch, tmp_path, caplog):
  monkeypatch.setattr(native, "_STATE", {})
  monkeypatch.setenv("SIMGAN_JAX_NATIVE_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
  with caplog.at_level(logging.WARNING):
    assert not native.available()
  assert "no-such-compiler" in caplog.text
  assert layers.resolve_impl("auto") == "hybrid"
  with pytest.raises(ValueError, match="config.conv_impl: 'native' is unavailable"):
    layers.resolve_impl("native")


def test_compile_error_names_the_source(monkeypatch, tmp_path):
  monkeypatch.setattr(native, "_STATE", {})
  monkeypatch.setenv("SIMGAN_JAX_NATIVE_CACHE", str(tmp_path))
  broken = tmp_path / "conv.cc"
  broken.write_text("this is not C++\n")
  monkeypatch.setattr(native, "SOURCE", broken)
  with pytest.raises(native.NativeBuildError, match="compiling .*conv.cc failed"):
    native.load()
  assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob("tmp*"))
