"""Array sources: input checks, sharded pools (identical batches, 1/D memory), host rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from simgan_jax import errors, parallel, training
from simgan_jax.configs import default
from simgan_jax.data import sources
from simgan_jax.train import PHASE_ORDER
from tests.conftest import npz_flags, random_pool
from tests.test_train import final_state, launch
from tests.test_training import assert_same_updates

# 61 rows: not a multiple of 8, so the last shard is padded.
N = 61


def _pool_source(shard_pool, dtype=np.uint8):
  rng = np.random.default_rng(3)
  images = random_pool(3, N, (5, 7, 1))
  if dtype != np.uint8:
    images = (images.astype(dtype) / 127.5 - 1).astype(dtype)
  labels = {"gaze": rng.normal(size=(N, 3)).astype(np.float32), "person": np.arange(N, dtype=np.int32)}
  return sources.ArraySource(images, labels, shard_pool=shard_pool)


def _sample_in_shard_map(source, num_devices, batch=16):
  mesh = parallel.make_mesh(num_devices)
  data, specs = sources.place(source, mesh)

  def body(data, key):
    return source.sample(data, parallel.example_keys(key, batch // num_devices))

  fn = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(specs, P()), out_specs=P(parallel.AXIS)))
  return jax.device_get(fn(data, jax.random.PRNGKey(7))), data


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_sharded_pool_gives_the_replicated_batch_exactly(dtype):
  # A wrong owner offset, a missing mask or a psum of all rows would change pixels here.
  replicated, _ = _sample_in_shard_map(_pool_source("false", dtype), 1)
  sharded, data = _sample_in_shard_map(_pool_source("true", dtype), 8)
  assert set(sharded) == {"image", "index", "gaze", "person"}
  for name in replicated:
    np.testing.assert_array_equal(sharded[name], replicated[name], err_msg=name)
  np.testing.assert_array_equal(sharded["person"], sharded["index"])  # each row's own label
  # Each device holds ceil(61 / 8) = 8 rows of the images and labels, not 61.
  row = 5 * 7 * np.dtype(dtype).itemsize + 3 * 4 + 4
  assert sources.bytes_per_device(data) == 8 * row
  assert data["images"].shape[0] == 64 and data["images"].addressable_shards[0].data.shape[0] == 8


def test_sharded_pool_under_plain_jit_reads_the_global_array():
  # make_sample_fn and the realism probe sample outside shard_map.
  source = _pool_source("true")
  keys = jax.random.split(jax.random.PRNGKey(1), 10)
  want = jax.jit(source.sample)(source.device_data(), keys)
  data, _ = sources.place(source, parallel.make_mesh(8))
  got = jax.jit(source.sample)(data, keys)
  for name in want:
    np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)


def test_shard_pool_auto_and_one_row_pools():
  assert not _pool_source("auto").sharded  # 2 KiB: replicated
  big = sources.ArraySource(np.zeros((2, 1, 1, 1), np.uint8), num_examples=2)
  assert not big.sharded
  assert sources.ArraySource(np.zeros((1, 2, 2, 1), np.uint8), shard_pool="true").sharded is False
  partial = sources.ArraySource(np.zeros((3, 2, 2, 1), np.uint8), num_examples=10, row_offset=4)
  assert partial.sharded  # a host's share of a pool is always sharded
  with pytest.raises(errors.ConfigError, match=r"shard_pool='maybe'; expected one of auto, true, false"):
    sources.ArraySource(np.zeros((2, 2, 2, 1), np.uint8), shard_pool="maybe")
  with pytest.raises(errors.ConfigError, match=r"shard_pool=false but this host holds only rows \[4, 7\) of 10"):
    sources.ArraySource(np.zeros((3, 2, 2, 1), np.uint8), num_examples=10, row_offset=4, shard_pool="false")


class _Device:
  def __init__(self, process_index):
    self.process_index = process_index


def test_host_rows_cover_each_process_devices():
  devices = [_Device(p) for p in (0, 0, 0, 0, 1, 1, 1, 1)]
  # 61 rows over 8 devices: 8 per device, process 1 holds devices 4..7 = rows 32..61.
  assert sources.host_rows(61, devices, 0) == (0, 32)
  assert sources.host_rows(61, devices, 1) == (32, 61)
  assert sources.host_rows(5, devices, 1) == (4, 5)
  assert sources.host_rows(5, devices, 2) == (0, 0)


def test_place_refuses_rows_this_process_does_not_hold():
  # A host share placed on a mesh whose devices need other rows: one line, not wrong data.
  source = sources.ArraySource(np.zeros((4, 2, 2, 1), np.uint8), num_examples=16, row_offset=4, where="pool.npz")
  with pytest.raises(errors.DataError, match=r"pool.npz: this process holds rows \[4, 8\) but its device "
                     r"needs \[0, 2\)"):
    sources.place(source, parallel.make_mesh(8))


BAD_IMAGES = [
    (np.full((2, 3, 3, 1), 200.0), "images are float64 200..200; expected uint8 0..255 or float in [-1, 1] "
     "(uint8 0..255 data: images.astype(np.uint8))"),
    (np.full((2, 3, 3, 1), 255, np.int32), "images are int32 255..255; expected uint8 0..255 or float in "
     "[-1, 1] (e.g. images.astype(np.uint8) for 0..255)"),
    (np.full((2, 3, 3, 1), np.nan, np.float32), "images are float32 with NaN values; expected uint8 "
     "0..255 or float in [-1, 1]"),
    (np.full((2, 3, 3, 1), -1.5, np.float32), "images are float32 -1.5..-1.5; expected uint8 0..255 or "
     "float in [-1, 1]"),
    (np.full((2, 3, 3, 1), np.inf, np.float32), "images are float32 inf..inf; expected uint8 0..255 or "
     "float in [-1, 1] (uint8 0..255 data: images.astype(np.uint8))"),
    (np.zeros((2, 3, 3, 1), bool), "images are bool; expected uint8 0..255 or float in [-1, 1]"),
]


@pytest.mark.parametrize("images, message", BAD_IMAGES)
def test_npz_images_of_the_wrong_dtype_or_range_name_the_field_and_file(tmp_path, images, message):
  # The old npz source used float64 0..255 pixels unscaled and int32 ones as they came.
  path = tmp_path / "pool.npz"
  np.savez(path, images=images)
  config = default.data_config("npz", path=str(path))
  with pytest.raises(errors.DataError) as e:
    sources.make_source(config, (3, 3, 1), field="real_data")
  assert str(e.value) == f"config.real_data.path={path}: {message}"


def test_good_npz_images_and_array_source_errors(tmp_path):
  path = tmp_path / "pool.npz"
  np.savez(path, images=np.linspace(-1, 1, 18, dtype=np.float32).reshape(2, 3, 3), gaze=np.zeros((2, 3)))
  source = sources.make_source(default.data_config("npz", path=str(path)), (3, 3, 1))
  assert source.image_shape == (3, 3, 1) and set(source.labels) == {"gaze"}
  np.savez(path, images=np.zeros((2, 3, 3), np.uint8), gaze=np.zeros((3, 3)))
  with pytest.raises(errors.DataError, match=rf"^config.synthetic_data.path={path}: labels\['gaze'\]: 3 "
                     r"entries for 2 images$"):
    sources.make_source(default.data_config("npz", path=str(path)), (3, 3, 1), field="synthetic_data")
  with pytest.raises(errors.DataError, match=r"^config.real_data.path: the npz source needs a path"):
    sources.make_source(default.data_config("npz"), (3, 3, 1), field="real_data")
  with pytest.raises(errors.DataError, match=r"^ArraySource: images: expected \[N, H, W, C\], got shape \(2, 3\)"):
    sources.ArraySource(np.zeros((2, 3), np.uint8))


def _run(config, synthetic, real, num_devices, steps):
  mesh = parallel.make_mesh(num_devices)
  s = training.make_setup(config, synthetic, real, num_devices)
  state = training.create_state(s, mesh)
  specs = training.state_specs(state)
  placed = {"synthetic": sources.place(synthetic, mesh), "real": sources.place(real, mesh)}
  data = {k: v[0] for k, v in placed.items()}
  data_specs = {k: v[1] for k, v in placed.items()}
  fns = {p: training.compile_step(training.PHASES[p], s, mesh, specs, data_specs) for p in PHASE_ORDER}
  for phase in steps:
    state, _ = fns[phase](state, data)
  return jax.device_get(state)


def test_training_on_sharded_pools_matches_one_device_replicated(tiny_config):
  # SGD, so an N-times gradient or a different batch (wrong rows from a shard) moves the weights.
  tiny_config.optimizer.name, tiny_config.optimizer.learning_rate = "sgd", 1e-3
  pools = [random_pool(0, N), random_pool(1, N)]
  # One discriminator step samples both pools (real, and synthetic to refine) and
  # pushes to the history: one compile per mesh keeps this test short.
  steps = ["discriminator_pretrain"]
  one = _run(tiny_config, *(sources.ArraySource(p, shard_pool="false") for p in pools), 1, steps)
  eight = _run(tiny_config, *(sources.ArraySource(p, shard_pool="true") for p in pools), 8, steps)
  init = jax.device_get(training.init_state(training.make_setup(tiny_config, None, None, 1)))
  assert_same_updates(init.discriminator_params, one.discriminator_params, eight.discriminator_params)
  np.testing.assert_allclose(np.asarray(eight.history.images), np.asarray(one.history.images), atol=1e-5)


def test_launch_on_sharded_npz_pools_prints_memory_and_resumes_bitwise(tmp_path, npz_pools):
  # 8 fake devices; each holds 8 of the 64 pool images. A run stopped at step 6 and
  # resumed must end bitwise equal to a straight run (the sample images of steps 5
  # and 9 also read the sharded pools, through plain jit).
  shard = [*npz_flags(npz_pools), "--config.synthetic_data.shard_pool=true", "--config.real_data.shard_pool=true"]
  code, out, err = launch(tmp_path / "straight", *shard)
  assert code == 0, err
  row = 35 * 55  # uint8 pixels per image
  assert (f"simgan_jax: pools per device: synthetic {8 * row / 1024:.3g} KiB of {64 * row / 1024:.3g} KiB "
          f"(sharded 1/8), real {8 * row / 1024:.3g} KiB of {64 * row / 1024:.3g} KiB (sharded 1/8)") in out, out
  code, _, err = launch(tmp_path / "resumed", *shard, "--config.num_iterations=1")
  assert code == 0, err
  code, out, err = launch(tmp_path / "resumed", *shard)
  assert code == 0, err
  assert "resuming at step 6 of 9" in out
  straight, resumed = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
  assert int(resumed.step) == int(straight.step) == 9
  jax.tree.map(np.testing.assert_array_equal, resumed, straight)


def test_realism_probe_picks_the_same_images_from_a_sharded_pool(tiny_config):
  # The probe used to read each pool's first device copy: with a sharded pool that
  # is 1/8 of the rows, and its sample() would take the collective path outside shard_map.
  from simgan_jax import train

  tiny_config.realism.num_images, tiny_config.realism.subset_size, tiny_config.realism.num_subsets = 16, 8, 2
  tiny_config.two_sample.enabled = False  # KID alone: it sees every picked image
  scores = []
  for shard_pool, num_devices in (("false", 1), ("true", 8)):
    pools = [sources.ArraySource(random_pool(seed, N), shard_pool=shard_pool) for seed in (0, 1)]
    mesh = parallel.make_mesh(num_devices)
    setup = training.make_setup(tiny_config, *pools, num_devices)
    data = {"synthetic": sources.place(pools[0], mesh)[0], "real": sources.place(pools[1], mesh)[0]}
    probe = train.make_realism_probe(tiny_config, setup, data, mesh)
    out = probe(jax.device_get(training.init_state(setup).refiner_params))
    scores.append({k: v for k, v in out.items() if k.startswith("realism_kid")})
  assert len(scores[0]) == 3 and scores[0] == scores[1]
