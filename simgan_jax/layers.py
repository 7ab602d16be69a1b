"""Convolution and max pooling with a selectable implementation, and mixed precision.

``Conv`` has exactly the parameters of ``flax.linen.Conv`` (``kernel`` HWIO,
``bias``; the same initialisers, so the same key gives the same weights and
checkpoints are interchangeable) and two implementations of the same maths:

* ``"xla"``: ``lax.conv_general_dilated`` (cuDNN on GPUs, the TPU's convolution);
* ``"matmul"``: the k x k shifted (strided) slices of the padded input
  concatenated on channels, then one matmul with the reshaped kernel (im2col by
  hand). On XLA:CPU the matmul reaches the CPU's GEMM rate while the convolution
  does not: the paper eye iteration at batch 32 took 3.03 s against 4.66 s with
  ``xla`` (1.5x; ``benchmarks/train_step.py``, idle 2-core AVX-512 CPU, 2 Dec
  2026); shared/probes/cpu_conv_probe.py measured 5x for the refiner's gradient
  on an AVX2 day.

``impl="auto"`` picks ``matmul`` on CPU and ``xla`` elsewhere. Padding
``"SAME"`` (zeros, as flax/lax define it, also for strides), ``"REFLECT"``
(mirror, stride 1) or ``"VALID"``. With the matmul path the mirror padding is
one ``jnp.pad`` and costs the same as zeros.

``dtype`` is the compute dtype: ``jnp.bfloat16`` casts the input and the kernel
for the matmul/convolution (the parameters stay float32); outputs are in
``dtype``. Networks cast their final outputs back to float32, so losses,
gradients and optimiser states stay float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "xla", "matmul")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def resolve_impl(impl: str, field: str = "conv_impl") -> str:
  if impl not in IMPLS:
    raise ValueError(f"config.{field}: {impl!r} is not one of {', '.join(IMPLS)}")
  if impl == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "xla"
  return impl


def resolve_dtype(name: str, field: str = "compute_dtype"):
  if name not in DTYPES:
    raise ValueError(f"config.{field}: {name!r} is not one of {', '.join(DTYPES)}")
  return DTYPES[name]


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """lax's SAME padding: output ceil(size / stride), the odd pixel at the end."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _pad(x, kernel: int, stride: int, padding: str, value=0.0):
  if padding == "VALID":
    return x
  if padding == "SAME":
    ph, pw = _same_pads(x.shape[1], kernel, stride), _same_pads(x.shape[2], kernel, stride)
    return jnp.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=value)
  if padding == "REFLECT":
    if stride != 1:
      raise ValueError("REFLECT padding is defined here for stride 1 only")
    lo, hi = (kernel - 1) // 2, kernel // 2
    return jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode="reflect")
  raise ValueError(f"padding {padding!r} is not 'SAME', 'REFLECT' or 'VALID'")


def _windows(x, kernel: int, stride: int):
  """The kernel x kernel strided slices of a padded [B, H, W, C] input, row-major."""
  out_h = (x.shape[1] - kernel) // stride + 1
  out_w = (x.shape[2] - kernel) // stride + 1
  return [x[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride, :]
          for i in range(kernel) for j in range(kernel)]


def conv2d(x, kernel, bias, stride: int = 1, padding: str = "SAME", impl: str = "matmul"):
  """NHWC x HWIO convolution with ``impl`` ``"xla"`` or ``"matmul"`` (see the module doc)."""
  k = kernel.shape[0]
  if kernel.shape[0] != kernel.shape[1]:
    raise ValueError(f"square kernels only, got {kernel.shape[:2]}")
  if impl == "xla":
    if padding == "REFLECT":
      x, padding = _pad(x, k, stride, "REFLECT"), "VALID"
    y = lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
  elif impl == "matmul":
    cin, cout = kernel.shape[2], kernel.shape[3]
    if k == 1:
      y = x[:, ::stride, ::stride, :] @ kernel.reshape(cin, cout)
    else:
      cols = jnp.concatenate(_windows(_pad(x, k, stride, padding), k, stride), axis=-1)
      y = cols @ kernel.reshape(k * k * cin, cout)
  else:
    raise ValueError(f"conv impl {impl!r} is not 'xla' or 'matmul'")
  return y if bias is None else y + bias


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
  impl: str = "matmul"  # "xla" or "matmul" (resolve "auto" with resolve_impl first)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32) \
        if self.use_bias else None
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    bias = None if bias is None else bias.astype(self.dtype)
    return conv2d(x, kernel, bias, self.strides, self.padding, self.impl)
