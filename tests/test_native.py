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
    data = parallel.put_replicated({"synthetic": s.data.synthetic.device_data(), "real": s.data.real.device_data()}, mesh)
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


_SCRIPT = """
import os, sys
import jax, jax.numpy as jnp
from simgan_jax import layers
x = jnp.ones((2, 8, 13, 16)); w = jnp.ones((3, 3, 16, 32)) * 0.1; b = jnp.zeros((32,))
f = jax.jit(lambda x, w, b: layers.conv2d(x, w, b, 1, "SAME", "native", relu=True))
try:
  print("ok", float(f(x, w, b).sum()))
except Exception as e:
  print("raised", type(e).__name__, str(e).splitlines()[0])
"""


@pytest.mark.parametrize("fault,message", [("bad_alloc", "out of memory (std::bad_alloc)"),
                                           ("worker", "fault injected in a pool thread")])
def test_a_cpp_exception_is_a_python_error_not_an_abort(fault, message):
  # Catches handlers or pool threads without an exception barrier: the exception would
  # reach std::terminate and SIGABRT the whole process (a test worker's abort).
  import subprocess
  import sys
  from tests.conftest import REPO

  env = dict(os.environ, SIMGAN_JAX_NATIVE_INJECT_FAULT=fault, SIMGAN_JAX_NATIVE_THREADS="2")
  done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, cwd=REPO,
                        env=env, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "raised" in done.stdout and message in done.stdout, done.stdout
  clean = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ), timeout=300)
  assert clean.stdout.startswith("ok"), clean.stdout + clean.stderr[-2000:]


def test_fused_relu_keeps_nan_like_jax_nn_relu():
  # Catches a ReLU written as "v > 0 ? v : 0", which turns NaN into 0: divergence would
  # then show a step later, and native and XLA would disagree.
  x = _x((2, 8, 13, 16)).at[0, 3, 4, 5].set(jnp.nan)
  w, b = 0.3 * _x((3, 3, 16, 32), seed=1), _x((32,), seed=2)
  ref = jax.nn.relu(layers.conv2d(x, w, b, 1, "SAME", "xla"))
  out = jax.jit(lambda x: layers.conv2d(x, w, b, 1, "SAME", "native", relu=True))(x)
  assert _calls_native(lambda x: layers.conv2d(x, w, b, 1, "SAME", "native", relu=True), x)
  nan = np.isnan(np.asarray(ref))
  assert nan.sum() == 9 * 32  # the 3x3 neighbourhood of the NaN pixel, every channel
  np.testing.assert_array_equal(np.isnan(np.asarray(out)), nan)
  np.testing.assert_allclose(np.where(nan, 0, out), np.where(nan, 0, ref), atol=2e-5)


def test_thread_count_follows_the_cpu_affinity_and_the_cache_is_readable():
  # Catches hardware_concurrency() (every CPU of the host, whatever the process may use)
  # and a cache file left 0600 by mkstemp (other users would silently fall back).
  import stat
  import subprocess
  import sys
  from tests.conftest import REPO

  script = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from simgan_jax import native; native.load(); print(native._STATE['threads'])")
  env = {k: v for k, v in os.environ.items() if k != "SIMGAN_JAX_NATIVE_THREADS"}
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                        env=env, timeout=300)
  assert done.stdout.strip() == "1", done.stdout + done.stderr[-2000:]
  if "SIMGAN_JAX_NATIVE_THREADS" not in os.environ:
    assert native._STATE["threads"] == min(len(os.sched_getaffinity(0)), os.cpu_count())
  mode = native.build().stat().st_mode
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(mode) == 0o755 & ~umask


def test_auto_must_agree_on_every_process(monkeypatch):
  # Catches a multi-host job whose hosts differ in having g++: 'auto' would run native
  # kernels on some and hybrid on others (results differing by host).
  from jax.experimental import multihost_utils

  monkeypatch.setattr(jax, "process_count", lambda: 3)
  gathered = lambda codes: lambda x: np.array(codes, np.int32).reshape(-1, 1)  # noqa: E731
  monkeypatch.setattr(layers.multihost_utils, "process_allgather",
                      gathered([layers.IMPLS.index(i) for i in ("native", "hybrid", "native")]))
  with pytest.raises(ValueError, match=r"config.conv_impl: 'auto' picks 'native' on some .* processes \[1\]"):
    layers.resolve_impl("auto")
  monkeypatch.setattr(layers.multihost_utils, "process_allgather", gathered([4, 4, 4]))
  assert layers.resolve_impl("auto") == "native"
  del multihost_utils


def test_everything_works_without_the_native_package():
  # Catches an unconditional "from simgan_jax import native": deleting the folder (or a
  # platform where it cannot exist) must leave every path working through XLA.
  import subprocess
  import sys
  from tests.conftest import REPO

  script = """
import sys
sys.modules["simgan_jax.native"] = None  # as if the folder were deleted
import jax, numpy as np
from simgan_jax import layers, models, train
from simgan_jax.configs import default
from simgan_jax.data.sources import ArraySource
assert layers.resolve_impl("auto") == "hybrid"
try:
  layers.resolve_impl("native")
except ValueError as e:
  assert "simgan_jax/native is missing" in str(e)
pool = lambda s: ArraySource(np.random.default_rng(s).integers(0, 256, (64, 35, 55, 1), dtype=np.uint8))
config = default.get_config("smoke")
config.conv_impl = "auto"
import tempfile
state = train.train_and_evaluate(config, tempfile.mkdtemp(), pool(0), pool(1))
assert "simgan_jax.native" not in {m for m, v in sys.modules.items() if v is not None}
print("ok", int(state.step))
"""
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                        env=dict(os.environ), timeout=600)
  assert done.returncode == 0 and done.stdout.strip().splitlines()[-1].startswith("ok"), \
      done.stdout[-2000:] + done.stderr[-3000:]
