"""Convolution and max pooling with a selectable implementation, and mixed precision.

``Conv`` has exactly the parameters of ``flax.linen.Conv`` (``kernel`` HWIO,
``bias``; the same initialisers, so the same key gives the same weights and
checkpoints are interchangeable) and four implementations of the same maths:

* ``"xla"``: ``lax.conv_general_dilated`` (cuDNN on GPUs, the TPU's convolution);
* ``"matmul"``: the k x k shifted (strided) slices of the padded input side by
  side on channels, then one matmul with the reshaped kernel (im2col by hand);
* ``"hybrid"``: XLA's convolution for the output and the input
  gradient, and a hand-written kernel gradient (k shifted copies of the input
  along W against k shifted copies of the output gradient along H, one matmul);
* ``"native"`` (the CPU default where a C++ compiler is present): C++ kernels
  called from XLA (``simgan_jax/native``): Winograd F(2x2, 3x3) for 3 x 3 layers,
  direct register-blocked loops for other sizes; stride-1 float32 layers with
  channel counts that are multiples of 16 (the refiner's and D's last 3 x 3 layer),
  every other layer goes through ``hybrid``.

Where the CPU time went (``python benchmarks/conv_profile.py --torch_threads=2``:
the eye refiner's 64->64 layer at batch 32, 2-core AVX-512 CPU, 2 Dec 2026, one
run): XLA:CPU's convolution runs the forward pass in 31 ms (PyTorch: 15), but its
kernel gradient (a convolution with an image-sized kernel) is slow, and im2col
pays for a 9x larger copy of the activations in every pass. ``hybrid`` takes the
fast part of each: 120 ms per layer forward + backward against 200 (matmul), 216
(xla) and 54-56 (PyTorch); the refiner's forward + backward 858 ms against 1270
and 1758. The paper eye iteration at batch 32 went from 2.19 s (matmul) to 1.57 s
(``benchmarks/train_step.py --compare_torch``, one run each, against the PyTorch
twin's 0.78 s in both).

``impl="auto"`` picks ``native`` on CPU (``hybrid`` if the kernels cannot be built
there, with a logged warning) and ``xla`` elsewhere. ``native`` on the same machine,
2 Dec 2026 (``benchmarks/conv_profile.py``, one idle run, batch 32): the 64->64 layer
forward 10.8 ms (PyTorch 13.8-16.0), forward + both gradients 35.0 ms (PyTorch
57.9-66.8), the refiner's forward + backward 362 ms; the paper eye iteration
(``benchmarks/train_step.py --compare_torch``) 0.755 s against 1.556 s (hybrid) and
the PyTorch twin's 1.063 s in one run, 2.98 / 6.35 / 5.24 s at batch 128.

``dtype`` is the compute dtype: ``jnp.bfloat16`` casts the input and the kernel
for the matmul/convolution (the parameters stay float32); outputs are in
``dtype``. Networks cast their final outputs back to float32, so losses,
gradients and optimiser states stay float32.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils

from simgan_jax import parallel

IMPLS = ("auto", "xla", "matmul", "hybrid", "native")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _native():
  """``simgan_jax.native``, or None where it is missing: the C++ kernels are an optional
  CPU speed-up, and everything runs through XLA without them (so it is imported on
  first use, not with this module)."""
  try:
    return importlib.import_module("simgan_jax.native")
  except ImportError:
    return None


def resolve_impl(impl: str, field: str = "conv_impl") -> str:
  if impl not in IMPLS:
    raise ValueError(f"config.{field}: {impl!r} is not one of {', '.join(IMPLS)}")
  native = _native()
  if impl == "auto":
    if jax.default_backend() != "cpu":
      return "xla"
    resolved = "native" if native is not None and native.available() else "hybrid"
    return _same_on_every_process(resolved, field)
  if impl == "native":
    if native is None:
      raise ValueError(f"config.{field}: 'native' is unavailable here (simgan_jax/native is missing); "
                       "use 'hybrid' or 'auto'")
    try:
      native.load()
    except native.NativeBuildError as e:
      raise ValueError(f"config.{field}: 'native' is unavailable here ({e}); use 'hybrid' or 'auto'") from e
  return impl


def _same_on_every_process(resolved: str, field: str) -> str:
  """``resolved`` if every process of a multi-host job resolved ``auto`` the same way
  (hosts without a compiler pick hybrid: float32 results would then differ by host)."""
  if jax.process_count() == 1:
    return resolved
  code = np.array([IMPLS.index(resolved)], np.int32)
  codes = np.asarray(multihost_utils.process_allgather(code)).reshape(-1)
  if len(set(codes.tolist())) > 1:
    hybrid = [i for i, c in enumerate(codes) if IMPLS[c] == "hybrid"]
    raise ValueError(f"config.{field}: 'auto' picks 'native' on some processes and 'hybrid' on "
                     f"processes {hybrid} (no C++ compiler there); install g++ on every host or set "
                     f"--config.{field}=hybrid")
  return resolved


def resolve_dtype(name: str, field: str = "compute_dtype"):
  if name not in DTYPES:
    raise ValueError(f"config.{field}: {name!r} is not one of {', '.join(DTYPES)}")
  return DTYPES[name]


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """lax's SAME padding: output ceil(size / stride), the odd pixel at the end."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _pad_widths(x_shape, kernel: int, stride: int, padding: str) -> tuple[int, int, int, int]:
  """(top, bottom, left, right) padding of a [B, H, W, C] input for ``padding``."""
  if padding == "VALID":
    return (0, 0, 0, 0)
  if padding == "SAME":
    return (*_same_pads(x_shape[1], kernel, stride), *_same_pads(x_shape[2], kernel, stride))
  if padding == "REFLECT":
    if stride != 1:
      raise ValueError("REFLECT padding is defined here for stride 1 only")
    return ((kernel - 1) // 2, kernel // 2) * 2
  raise ValueError(f"padding {padding!r} is not 'SAME', 'REFLECT' or 'VALID'")


def _pad(x, kernel: int, stride: int, padding: str, value=0.0):
  pt, pb, pl, pr = _pad_widths(x.shape, kernel, stride, padding)
  widths = ((0, 0), (pt, pb), (pl, pr), (0, 0))
  if padding == "REFLECT":
    return jnp.pad(x, widths, mode="reflect")
  return jnp.pad(x, widths, constant_values=value) if padding == "SAME" else x


def _windows(x, kernel: int, stride: int):
  """The kernel x kernel strided slices of a padded [B, H, W, C] input, row-major."""
  out_h = (x.shape[1] - kernel) // stride + 1
  out_w = (x.shape[2] - kernel) // stride + 1
  return [x[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride, :]
          for i in range(kernel) for j in range(kernel)]


def _side_by_side(parts):
  """``jnp.concatenate(parts, -1)`` as a sum of channel-padded parts: XLA:CPU fuses this
  into one loop (47 ms for the eye refiner's im2col at batch 32) where the
  concatenation materialises every part first and then copies them (73 ms)."""
  c, n = parts[0].shape[-1], len(parts)
  pads = [(0, 0)] * (parts[0].ndim - 1)
  return sum(jnp.pad(p, (*pads, (i * c, (n - 1 - i) * c))) for i, p in enumerate(parts))


def _im2col(x_padded, kernel: int, stride: int = 1):
  """[B, h, w, kernel * kernel * C]: the windows of a padded input side by side on channels."""
  return _side_by_side(_windows(x_padded, kernel, stride))


def _kernel_grad_stride1(x_padded, g, k: int):
  """d(loss)/d(kernel) [k, k, C, Cout] of a stride-1 VALID convolution, as one matmul
  between k shifted copies of the input along W and k shifted copies of the output
  gradient along H (k-fold copies on each side instead of a k*k-fold im2col: 54 ms
  against 90 ms for the eye refiner's layer at batch 32 on XLA:CPU)."""
  b, hp, _, c = x_padded.shape
  ho, wo, cout = g.shape[1], g.shape[2], g.shape[3]
  # Row m = (image, padded row h, column w): the k column windows of the input...
  cols = _side_by_side([x_padded[:, :, j:j + wo] for j in range(k)]).reshape(-1, k * c)
  # ...and the output gradient at (image, h - i, w), zero where h - i is outside [0, ho):
  # rows shift by whole image rows, so a shift only ever meets the zero rows of padding.
  g_rows = jnp.pad(g, ((0, 0), (0, hp - ho), (0, 0), (0, 0))).reshape(-1, cout)
  m = g_rows.shape[0]
  g_shifted = _side_by_side([jnp.pad(g_rows[:m - i * wo], ((i * wo, 0), (0, 0))) for i in range(k)])
  d = (cols.T @ g_shifted).reshape(k, c, k, cout)  # [j, ci, i, co]
  return d.transpose(2, 0, 1, 3)


def _valid_conv(x_padded, kernel, stride: int):
  """A "VALID" convolution of an already padded input. XLA:CPU runs a convolution with
  no padding at all 3-5x slower than one with any padding (a 64->64 3x3 layer at batch
  32: 92 ms against 32 ms; ``benchmarks/conv_profile.py``'s REFLECT and VALID rows), so
  for multi-channel inputs one row of zeros is padded below and the output row it adds
  is sliced off: the kept rows never read it. (One-channel inputs are faster unpadded.)"""
  k = kernel.shape[0]
  if x_padded.shape[-1] == 1:
    return lax.conv_general_dilated(x_padded, kernel, (stride, stride), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ho = (x_padded.shape[1] - k) // stride + 1
  y = lax.conv_general_dilated(x_padded, kernel, (stride, stride), ((0, 1), (0, 0)),
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y[:, :ho]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _hybrid_conv(x_padded, kernel, stride: int, x_vma: frozenset, kernel_vma: frozenset):
  """XLA's convolution for the output and the input gradient, a matmul for the kernel
  gradient (``_kernel_grad_stride1``; strided: im2col): XLA:CPU's own kernel gradient,
  a convolution with an image-sized kernel, is its slowest part (module doc)."""
  return _valid_conv(x_padded, kernel, stride)


def _hybrid_conv_fwd(x_padded, kernel, stride, x_vma, kernel_vma):
  return _valid_conv(x_padded, kernel, stride), (x_padded, kernel)


def _hybrid_conv_bwd(stride, x_vma, kernel_vma, residuals, g):
  x_padded, kernel = residuals
  k, _, cin, cout = kernel.shape
  (d_x,) = jax.vjp(lambda x: _valid_conv(x, kernel, stride), x_padded)[1](g)
  if stride == 1:
    d_kernel = _kernel_grad_stride1(x_padded, g, k)
  else:
    cols = _im2col(x_padded, k, stride).reshape(-1, k * k * cin)
    d_kernel = (g.reshape(-1, cout).T @ cols).T.reshape(kernel.shape)
  # The varying mesh axes of the inputs are passed statically: residuals lose them.
  return (parallel.sum_to_varying(d_x, x_vma),
          parallel.sum_to_varying(d_kernel.astype(kernel.dtype), kernel_vma))


_hybrid_conv.defvjp(_hybrid_conv_fwd, _hybrid_conv_bwd)


def conv2d(x, kernel, bias, stride: int = 1, padding: str = "SAME", impl: str = "matmul", residual=None,
           relu: bool = False):
  """``[relu](conv(x, kernel) + bias [+ residual])``, NHWC x HWIO, with ``impl`` ``"xla"``,
  ``"matmul"``, ``"hybrid"`` or ``"native"`` (module doc; ``native`` applies the bias, the
  residual and the ReLU inside its kernel, the others as separate operations)."""
  if impl == "native":
    native = _native()
    if kernel.shape[0] > 1 and native.supports(x.shape, kernel.shape, stride, x.dtype):
      return native.conv2d(x, kernel, _pad_widths(x.shape, kernel.shape[0], stride, padding),
                           reflect=padding == "REFLECT", bias=bias, residual=residual, relu=relu, stride=stride)
    impl = "hybrid"  # 1 x 1, bfloat16 layers, or output channels not a multiple of 16
  y = _conv2d(x, kernel, stride, padding, impl)
  y = y if bias is None else y + bias
  y = y if residual is None else y + residual
  return nn.relu(y) if relu else y


def _conv2d(x, kernel, stride, padding, impl):
  k = kernel.shape[0]
  if kernel.shape[0] != kernel.shape[1]:
    raise ValueError(f"square kernels only, got {kernel.shape[:2]}")
  if impl == "xla":
    if padding == "REFLECT":
      x, padding = _pad(x, k, stride, "REFLECT"), "VALID"
    y = lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
  elif impl in ("matmul", "hybrid"):
    cin, cout = kernel.shape[2], kernel.shape[3]
    if k == 1:
      y = x[:, ::stride, ::stride, :] @ kernel.reshape(cin, cout)
    elif impl == "hybrid":
      x_padded = _pad(x, k, stride, padding)
      y = _hybrid_conv(x_padded, kernel, stride, parallel.varying_axes(x_padded),
                       parallel.varying_axes(kernel))
    else:
      y = _im2col(_pad(x, k, stride, padding), k, stride) @ kernel.reshape(k * k * cin, cout)
  else:
    raise ValueError(f"conv impl {impl!r} is not one of {', '.join(IMPLS[1:])}")
  return y


def max_pool(x, window: int, stride: int, padding: str = "VALID", impl: str = "matmul"):
  """Max pooling; ``matmul`` (the CPU path) takes the max over shifted slices, which
  XLA:CPU differentiates faster than ``reduce_window``'s select-and-scatter."""
  if impl == "xla":
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
  neg = jnp.asarray(-jnp.inf, x.dtype)
  windows = _windows(_pad(x, window, stride, padding, value=neg), window, stride)
  out = windows[0]
  for w in windows[1:]:
    out = jnp.maximum(out, w)
  return out


class Conv(nn.Module):
  """``flax.linen.Conv``'s parameters (square kernel) with a selectable implementation."""

  features: int
  kernel_size: int
  strides: int = 1
  padding: str = "SAME"
  use_bias: bool = True
  impl: str = "matmul"  # "xla", "matmul", "hybrid" or "native" (resolve "auto" with resolve_impl first)
  dtype: Any = jnp.float32
  relu: bool = False  # ReLU after the bias (and residual): fused into the native kernel
  zero_init: bool = False  # kernel initialised to zeros (a residual branch that starts as nothing)

  @nn.compact
  def __call__(self, x, residual=None):
    k = self.kernel_size
    init = nn.initializers.zeros_init() if self.zero_init else nn.initializers.lecun_normal()
    kernel = self.param("kernel", init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32) \
        if self.use_bias else None
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    bias = None if bias is None else bias.astype(self.dtype)
    residual = None if residual is None else residual.astype(self.dtype)
    return conv2d(x, kernel, bias, self.strides, self.padding, self.impl, residual, self.relu)
