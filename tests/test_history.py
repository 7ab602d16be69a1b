import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax import history


def keys(seed, n):
  return jax.random.split(jax.random.PRNGKey(seed), n)


def batch(value, n=4):
  return jnp.full((n, 1, 1, 1), float(value))


def test_fills_rows_in_order_then_stays_full():
  h = history.init(history_size=12, half_batch=4, image_shape=(1, 1, 1))
  assert h.images.shape == (3, 4, 1, 1, 1)
  for i in range(3):
    h = history.push(h, batch(i + 1), keys(i, 4))
    assert int(h.filled_rows) == i + 1
    np.testing.assert_array_equal(h.images[i, :, 0, 0, 0], i + 1)
  assert int(history.num_images(h)) == 12


def test_replaces_exactly_half_a_batch_once_full():
  h = history.init(16, 4, (1, 1, 1))
  for i in range(4):
    h = history.push(h, batch(i + 1), keys(i, 4))
  before = np.asarray(h.images)
  for step in range(5):
    h = history.push(h, batch(100 + step), keys(10 + step, 4))
    after = np.asarray(h.images)
    assert int((after != before).sum()) == 4  # one slot per column, b/2 in all
    assert int((after == 100 + step).sum()) == 4
    before = after


def test_sample_mixes_old_and_new_and_falls_back_while_empty():
  h = history.init(40, 4, (1, 1, 1))
  fallback = batch(-1)
  np.testing.assert_array_equal(history.sample(h, keys(0, 4), fallback), fallback)
  for i in range(10):
    h = history.push(h, batch(i), keys(i, 4))
  seen = set()
  for s in range(50):
    seen.update(np.asarray(history.sample(h, keys(100 + s, 4), fallback)).ravel().tolist())
  assert seen == set(range(10))  # every row, oldest and newest, gets sampled


def test_size_must_divide_into_rows():
  with pytest.raises(ValueError, match="config.history_size: 10 must be a positive multiple of batch_size // 2 = 4"):
    history.init(10, 4, (1, 1, 1))
