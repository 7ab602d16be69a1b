"""History of refined images (SIMGAN.md "Training" 4), as pure functions over arrays.

The buffer is ``images`` of shape ``[rows, columns, H, W, C]`` with one column per
example of the half batch (``columns = batch_size // 2``) and ``rows =
history_size // columns``, plus ``filled_rows``. Example ``c`` of a half batch
only ever reads and writes column ``c``: since examples are i.i.d., this samples
the same distribution as uniform slots, and it lets the buffer be sharded along
the column axis with every device touching only its own shard. Randomness comes
from one key per column, derived from the column's *global* index, so the buffer
evolves identically on 1 or N devices.

* ``push``: fill rows in order first; once full, each column replaces one
  uniformly random row, i.e. exactly ``batch_size // 2`` random slots change.
* ``sample``: each column returns the image at a uniformly random filled row.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class History:
  images: jax.Array  # [rows, columns, H, W, C]
  filled_rows: jax.Array  # int32 scalar


def init(history_size: int, half_batch: int, image_shape, dtype=jnp.float32) -> History:
  """An empty buffer of ``history_size`` images; the size must divide into rows."""
  if half_batch <= 0 or history_size <= 0 or history_size % half_batch:
    raise ValueError(
        f"config.history_size: {history_size} must be a positive multiple of batch_size // 2 = {half_batch}")
  rows = history_size // half_batch
  return History(images=jnp.zeros((rows, half_batch, *image_shape), dtype),
                 filled_rows=jnp.zeros((), jnp.int32))


def num_images(history: History) -> jax.Array:
  return history.filled_rows * history.images.shape[1]


def sample(history: History, keys_C: jax.Array, fallback_CHWC: jax.Array) -> jax.Array:
  """One image per column from a random filled row; ``fallback`` while empty."""
  high = jnp.maximum(history.filled_rows, 1)
  rows_C = jax.vmap(lambda k: jax.random.randint(k, (), 0, high))(keys_C)
  picked = history.images[rows_C, jnp.arange(history.images.shape[1])]
  return jnp.where(history.filled_rows > 0, picked, fallback_CHWC)


def push(history: History, new_CHWC: jax.Array, keys_C: jax.Array) -> History:
  """Writes one new image per column: the next empty row, or a random row once full."""
  num_rows = history.images.shape[0]
  random_rows_C = jax.vmap(lambda k: jax.random.randint(k, (), 0, num_rows))(keys_C)
  full = history.filled_rows >= num_rows
  rows_C = jnp.where(full, random_rows_C, jnp.minimum(history.filled_rows, num_rows - 1))
  images = history.images.at[rows_C, jnp.arange(history.images.shape[1])].set(
      new_CHWC.astype(history.images.dtype))
  return History(images=images, filled_rows=jnp.minimum(history.filled_rows + 1, num_rows))
