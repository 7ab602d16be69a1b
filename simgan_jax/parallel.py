"""Data parallelism shared by every training loop: the mesh, shardings, per-example
keys and the one way to average gradients across devices.

All devices of all processes form one mesh axis ``AXIS``. Parameters are
replicated; each device computes its share of the batch. The gradient of the
global-mean loss is the mean over devices of each device's local gradient, and
``mean_grad`` is the only place that computes it.

Why a helper: inside ``jax.shard_map`` (``check_vma=True``, the default since
jax 0.7) a replicated parameter is *invariant* over the axis. Differentiating a
per-device loss with respect to it transposes the implicit broadcast into a
``psum``, so ``jax.grad`` already returns the gradient *summed* over devices,
and a ``lax.pmean`` after it is a no-op: N devices gave an N times larger step
(invisible with Adam, which is scale-invariant; 8x with SGD on 8 devices).
``mean_grad`` first marks the parameters as varying (``lax.pcast``), so
``jax.grad`` gives each device's own gradient, then takes the mean explicitly.
The same code is exact with ``check_vma=False`` and on one device.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "batch"


def varying_axes(x) -> frozenset:
  """The mesh axes over which ``x`` varies inside ``shard_map`` (empty outside)."""
  if not hasattr(jax, "typeof"):
    return frozenset()
  aval = jax.typeof(x)
  if hasattr(aval, "manual_axis_type"):  # jax >= 0.10
    return frozenset(aval.manual_axis_type.varying)
  return frozenset(getattr(aval, "vma", frozenset()))  # jax 0.7 .. 0.9


def match_varying(*xs):
  """``xs`` all marked as varying over the union of their varying mesh axes (inside
  ``shard_map``; unchanged outside): for primitives that need equal types, such as
  an FFI custom call between a per-device activation and a replicated kernel."""
  union = frozenset().union(*(varying_axes(x) for x in xs))
  out = []
  for x in xs:
    missing = tuple(sorted(union - varying_axes(x)))
    if missing:
      x = lax.pcast(x, missing, to="varying") if hasattr(lax, "pcast") else lax.pvary(x, missing)
    out.append(x)
  return out


def sum_to_varying(cotangent, primal_vma: frozenset):
  """A custom VJP's cotangent with its primal's varying mesh axes: where the primal is
  replicated over an axis (D's parameters in the refiner's loss, inside ``shard_map``),
  its cotangent is the sum over that axis, the transpose of the implicit broadcast.
  Pass ``primal_vma = varying_axes(primal)`` statically: residuals lose it."""
  extra = tuple(sorted(varying_axes(cotangent) - primal_vma))
  return jax.lax.psum(cotangent, extra) if extra else cotangent


def _to_varying(tree):
  """``tree`` marked as varying over ``AXIS`` (a no-op where it already is)."""
  if hasattr(lax, "pcast"):  # jax >= 0.8
    cast = lambda x: lax.pcast(x, AXIS, to="varying")  # noqa: E731
  elif hasattr(lax, "pvary"):
    cast = lambda x: lax.pvary(x, AXIS)  # noqa: E731
  else:  # no varying-manual-axes tracking: grad is already per device
    return tree

  def one(x):
    return x if AXIS in varying_axes(x) else cast(x)

  return jax.tree.map(one, tree)


def mean_grad(loss_fn: Callable, params, *args, has_aux: bool = False):
  """``jax.grad(loss_fn)(params, *args)`` of the global mean of per-device losses.

  Call inside ``shard_map`` over ``AXIS`` with ``loss_fn`` the mean over this
  device's (equal-sized) share of the batch. Returns ``grads`` or
  ``(grads, aux)``; ``aux`` is left per device (average metrics yourself).
  """
  out = jax.grad(loss_fn, has_aux=has_aux)(_to_varying(params), *args)
  grads, aux = out if has_aux else (out, None)
  grads = lax.pmean(grads, AXIS)
  return (grads, aux) if has_aux else grads


def mean_value_and_grad(loss_fn: Callable, params, *args, has_aux: bool = False):
  """Like ``mean_grad``, also returning the per-device loss value (and aux)."""
  out = jax.value_and_grad(loss_fn, has_aux=has_aux)(_to_varying(params), *args)
  value, grads = out
  return value, lax.pmean(grads, AXIS)


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-axis mesh over all devices of all hosts (or the first ``num_devices``)."""
  devices = jax.devices()
  if num_devices:
    devices = devices[:num_devices]
  return Mesh(np.array(devices), (AXIS,))


def local_mesh(num_devices: int = 0) -> Mesh:
  """A 1-axis mesh over this process's devices (or the first ``num_devices``)."""
  devices = jax.local_devices()
  if num_devices:
    devices = devices[:num_devices]
  return Mesh(np.array(devices), (AXIS,))


def shardings(mesh: Mesh, specs) -> Any:
  """PartitionSpecs -> NamedShardings on ``mesh`` (same tree)."""
  return jax.tree.map(lambda p: NamedSharding(mesh, p), specs, is_leaf=lambda x: isinstance(x, P))


def put_replicated(tree, mesh: Mesh):
  """Places host arrays on every device of every host (each host passes the same data)."""
  sharding = NamedSharding(mesh, P())
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda idx: np.asarray(x)[idx]), tree)


def example_keys(key: jax.Array, num_local: int) -> jax.Array:
  """One key per local example, from its *global* index in the batch, so a batch
  is the same on 1 device or N (call inside ``shard_map`` over ``AXIS``)."""
  start = lax.axis_index(AXIS) * num_local
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(start + jnp.arange(num_local))


def to_host(tree):
  """Replicated device arrays -> numpy, reading this host's own copy (no transfer
  between hosts)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
