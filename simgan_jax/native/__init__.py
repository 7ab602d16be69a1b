"""Native CPU convolutions (``conv_impl="native"``): C++ kernels called from XLA.

XLA:CPU's convolutions were the CPU train step's bottleneck (``simgan_jax/layers.py``'s
module doc; ``benchmarks/conv_profile.py``). ``conv.cc`` holds the forward pass (with
the bias, a residual and a ReLU applied as each output is stored) and the kernel
gradient: Winograd F(2x2, 3x3) for stride-1 3x3 layers with input channels in
whole vectors, register-blocked direct loops for every other size and stride. The
input gradient is a forward call with the flipped kernel (stride 1; XLA's for
strided layers and odd channel counts). They are exposed to XLA as FFI custom calls
(``jax.ffi``). The source is compiled on first use on the machine that runs it
(``g++ -O3 -march=native``, 3-5 s on 2 cores, once: the library is cached under
``~/.cache/simgan_jax/native`` (``$SIMGAN_JAX_CACHE/native``) keyed by the source,
compiler and CPU flags), so it uses
AVX-512 where the CPU has it and AVX2 where it does not. Set ``CXX`` to choose the
compiler, ``SIMGAN_JAX_NATIVE_CACHE`` to move the cache and
``SIMGAN_JAX_NATIVE_THREADS`` to set the threads per call (default: all cores).

``available()`` says whether the kernels built and loaded (``conv_impl="auto"`` uses
them on CPU when they do, and XLA-based ``hybrid`` otherwise, logging why once);
``conv2d`` is differentiable (``jax.custom_vjp``) and works inside ``shard_map``.
CPU and float32 only: ``layers.conv2d`` sends other cases to ``hybrid``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax import parallel

SOURCE = pathlib.Path(__file__).with_name("conv.cc")
_FORWARD, _FUSED, _KERNEL_GRAD = "simgan_conv_forward", "simgan_conv_forward_fused", "simgan_conv_kernel_grad"
_LOCK = threading.Lock()
_STATE: dict = {}


class NativeBuildError(RuntimeError):
  """The native kernels could not be compiled or loaded (the message says why)."""


def _cache_dir() -> pathlib.Path:
  if os.environ.get("SIMGAN_JAX_NATIVE_CACHE"):
    return pathlib.Path(os.environ["SIMGAN_JAX_NATIVE_CACHE"])
  root = os.environ.get("SIMGAN_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "simgan_jax")
  return pathlib.Path(root) / "native"


def _cpu_flags() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return line
  except OSError:
    pass
  import platform  # pylint: disable=g-import-not-at-top
  return platform.processor() + platform.machine()


def _compiler() -> str:
  cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
  if not cxx:
    raise NativeBuildError("no C++ compiler found (set CXX, or install g++: apt-get install g++)")
  return cxx


def build() -> pathlib.Path:
  """Compiles ``conv.cc`` into the cache (once per source, compiler and CPU) and returns its path."""
  cxx = _compiler()
  include = jax.ffi.include_dir()
  try:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError) as e:
    raise NativeBuildError(f"C++ compiler {cxx!r} does not run: {e}") from e
  command = [cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread", f"-I{include}"]
  key = hashlib.sha256("\n".join([SOURCE.read_text(), version, " ".join(command), _cpu_flags(),
                                  jax.__version__]).encode()).hexdigest()[:16]
  out = _cache_dir() / f"conv_{key}.so"
  if out.exists():
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
  os.close(fd)
  try:
    result = subprocess.run(command + [str(SOURCE), "-o", tmp], capture_output=True, text=True)
    if result.returncode != 0:
      raise NativeBuildError(f"compiling {SOURCE} failed ({cxx}):\n{result.stderr.strip()[-2000:]}")
    # mkstemp makes the file 0600: a cache shared between users would then be unreadable
    # to all but its builder (they would silently fall back). Readable as the umask allows.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o755 & ~umask)
    os.replace(tmp, out)  # atomic: concurrent builders (test workers) each write a whole file
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return out


def load() -> None:
  """Builds (if needed), loads and registers the kernels with XLA; raises NativeBuildError."""
  with _LOCK:
    if "error" in _STATE:
      raise NativeBuildError(_STATE["error"])
    if "lib" in _STATE:
      return
    try:
      if jax.default_backend() != "cpu":
        raise NativeBuildError(f"the native kernels are CPU kernels; the default backend is {jax.default_backend()}")
      lib = ctypes.cdll.LoadLibrary(str(build()))
      jax.ffi.register_ffi_target(_FORWARD, jax.ffi.pycapsule(lib.SimganConvForward), platform="cpu")
      jax.ffi.register_ffi_target(_KERNEL_GRAD, jax.ffi.pycapsule(lib.SimganConvKernelGrad), platform="cpu")
      jax.ffi.register_ffi_target(_FUSED, jax.ffi.pycapsule(lib.SimganConvForwardFused), platform="cpu")
      _STATE["vector_length"] = int(lib.simgan_conv_vector_length())
      _STATE["threads"] = int(lib.simgan_conv_num_threads())
      _STATE["lib"] = lib
    except (NativeBuildError, OSError, AttributeError) as e:
      _STATE["error"] = str(e)
      raise NativeBuildError(str(e)) from e


def available() -> bool:
  """True when the kernels are loaded (building them if needed); logs why not, once."""
  try:
    load()
    return True
  except NativeBuildError as e:
    if not _STATE.get("warned"):
      _STATE["warned"] = True
      logging.warning("simgan_jax native convolutions unavailable, using conv_impl='hybrid': %s", e)
    return False


def supports(x_shape, kernel_shape, stride: int, dtype) -> bool:
  """Whether ``conv2d`` handles this layer (else ``layers.conv2d`` uses ``hybrid``): a k x k
  kernel with k > 1, float32, output channels a multiple of 16. (Its input gradient is a
  native call for stride 1 and input channels a multiple of 16, XLA's otherwise.)"""
  k, _, cin, cout = kernel_shape
  return (k > 1 and kernel_shape[0] == kernel_shape[1] and jnp.dtype(dtype) == jnp.float32
          and cout % 16 == 0 and len(x_shape) == 4 and stride >= 1)


def _call(target: str, out_shape, operands, pads, reflect: bool, stride: int = 1, **attrs):
  # Inside shard_map the call needs operands of one type and says its result's: the
  # result varies over the mesh axes the operands vary over (the first's type, reshaped).
  operands = parallel.match_varying(*operands)
  result = jax.typeof(operands[0]).update(shape=tuple(out_shape), dtype=jnp.float32)
  pt, pb, pl, pr = (np.int64(p) for p in pads)
  attrs = {k: np.int64(v) for k, v in attrs.items()}
  return jax.ffi.ffi_call(target, result, vmap_method="sequential")(
      *operands, stride=np.int64(stride), pad_top=pt, pad_bottom=pb, pad_left=pl, pad_right=pr,
      reflect=np.int64(reflect), **attrs)


def _out_shape(x, kernel, pads, stride: int = 1):
  k, cout = kernel.shape[0], kernel.shape[3]
  b, h, w, _ = x.shape
  pt, pb, pl, pr = pads
  return (b, (h + pt + pb - k) // stride + 1, (w + pl + pr - k) // stride + 1, cout)


def _forward(x, kernel, pads, reflect: bool):
  return _call(_FORWARD, _out_shape(x, kernel, pads), (x, kernel), pads, reflect)


def _fused(x, kernel, bias, residual, pads, reflect: bool, relu: bool, stride: int):
  placeholder = residual is None
  residual = jnp.zeros((1,), jnp.float32) if placeholder else residual
  return _call(_FUSED, _out_shape(x, kernel, pads, stride), (x, kernel, bias, residual), pads, reflect, stride,
               relu=relu, has_residual=not placeholder)


def _xla_input_grad(x, kernel, g, pads, reflect: bool, stride: int):
  """d<conv(x), g>/dx by XLA (strided layers, input channels not a multiple of 16)."""
  pt, pb, pl, pr = pads

  def conv(x):
    if reflect:
      x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), mode="reflect")
      padding = ((0, 0), (0, 0))
    else:
      padding = ((pt, pb), (pl, pr))
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  return jax.vjp(conv, x)[1](g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _conv(x, kernel, bias, residual, pads, reflect, relu, stride, vmas):
  return _fused(x, kernel, bias, residual, pads, reflect, relu, stride)


def _conv_fwd(x, kernel, bias, residual, pads, reflect, relu, stride, vmas):
  y = _fused(x, kernel, bias, residual, pads, reflect, relu, stride)
  return y, (x, kernel, y if relu else None)


def _conv_bwd(pads, reflect, relu, stride, vmas, residuals, g):
  x, kernel, y = residuals
  x_vma, kernel_vma, bias_vma, residual_vma = vmas
  if relu:
    g = jnp.where(y > 0, g, 0.0)  # ReLU's gradient, 0 at 0 like jax.nn.relu's
  d_bias = jnp.sum(g, axis=(0, 1, 2))
  d_residual = None if residual_vma is None else parallel.sum_to_varying(g, residual_vma)
  k = kernel.shape[0]
  # The input gradient is the convolution of g with the kernel flipped in space and
  # transposed in channels, zero-padded by k - 1 - pad (for mirror padding: the full
  # gradient of the padded input, folded back by the transpose of the mirror pad).
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  if stride != 1 or kernel.shape[2] % 16:
    d_x = _xla_input_grad(x, kernel, g, pads, reflect, stride)
  elif reflect:
    d_padded = _forward(g, flipped, (k - 1,) * 4, False)
    pt, pb, pl, pr = pads
    pad = lambda v: jnp.pad(v, ((0, 0), (pt, pb), (pl, pr), (0, 0)), mode="reflect")  # noqa: E731
    (d_x,) = jax.vjp(pad, x)[1](d_padded)
  else:
    d_x = _forward(g, flipped, tuple(k - 1 - p for p in pads), False)
  d_kernel = _call(_KERNEL_GRAD, kernel.shape, (x, g), pads, reflect, stride)
  return (parallel.sum_to_varying(d_x, x_vma), parallel.sum_to_varying(d_kernel, kernel_vma),
          parallel.sum_to_varying(d_bias, bias_vma), d_residual)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x, kernel, pads: tuple[int, int, int, int], reflect: bool = False, bias=None, residual=None,
           relu: bool = False, stride: int = 1):
  """``[relu](conv(x, kernel) + bias [+ residual])``: an NHWC x HWIO convolution (``stride``) with
  explicit padding (top, bottom, left, right), zeros or mirror (``reflect``), with the
  bias, the residual and the ReLU applied as the kernel stores each output (no extra
  pass over the activations). float32, on CPU; output channels a multiple of 16
  (``supports``). Differentiable in every array argument."""
  load()
  if any(p < 0 or p >= kernel.shape[0] for p in pads):
    raise ValueError(f"native conv2d: pads {pads} must be in [0, {kernel.shape[0]})")
  if reflect and stride != 1:
    raise ValueError("native conv2d: mirror padding is defined here for stride 1 only")
  bias = jnp.zeros((kernel.shape[3],), jnp.float32) if bias is None else bias
  vmas = (parallel.varying_axes(x), parallel.varying_axes(kernel), parallel.varying_axes(bias),
          None if residual is None else parallel.varying_axes(residual))
  return _conv(x, kernel, bias, residual, tuple(int(p) for p in pads), bool(reflect), bool(relu), int(stride),
               vmas)
