"""TFDS-backed training sources: registry, loading, shape checks, sharding, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from simgan_jax import errors
from simgan_jax.configs import default
from simgan_jax.data import sources, tfds_sources
from simgan_jax.data.builders.prepare import prepare
from tests import fixtures_data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp("prepared")
  fixtures_data.write_mpiigaze(root / "mpii", days={0: [1, 2], 1: [1]}, count=5,
                               eval_lists={0: ["day01/0001.jpg left"], 1: ["day01/0002.jpg right"]})
  prepare("mpiigaze", root / "mpii", root / "data")
  fixtures_data.write_image_folder(root / "folder", {f"{i}.png": np.full((8, 8, 3), i, np.uint8) for i in range(6)})
  (root / "folder" / "labels.csv").write_text("filename,v\n" + "".join(f"{i}.png,{i * 10}\n" for i in range(6)))
  prepare("image_folder", root / "folder", root / "data", overrides={"height": 8, "width": 8, "channels": 3})
  return str(root / "data")


def _all(data_dir, name, config, split):
  path = f"{data_dir}/{name}/{config}/1.0.0"
  source = tfds.builder_from_directory(path).as_data_source(split)
  return [source[i] for i in range(len(source))]


def test_registered_and_sampled_inside_jit(prepared):
  assert {"unityeyes", "mpiigaze", "nyu_hand", "image_folder"} <= set(sources.registered_sources())
  config = default.data_config("mpiigaze", data_dir=prepared, split="train")
  source = sources.make_source(config, (35, 55, 1), field="real_data")
  truth = _all(prepared, "mpiigaze", "crop", "train")
  assert source.image_shape == (35, 55, 1)
  np.testing.assert_array_equal(source.images, np.stack([e["image"] for e in truth]))
  assert set(source.labels) == {"gaze", "pitchyaw", "head_pose", "person", "eye_side"}
  data = source.device_data()
  keys = jax.random.split(jax.random.key(0), 16)
  out = jax.jit(source.sample)(data, keys)
  index = np.asarray(out["index"])
  expected = source.images[index].astype(np.float32) * (2 / 255) - 1
  np.testing.assert_allclose(np.asarray(out["image"]), expected, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["gaze"]), np.stack([truth[i]["gaze"] for i in index]))
  assert out["image"].dtype == jnp.float32


def test_shape_mismatch_names_both_shapes(prepared):
  config = default.data_config("mpiigaze", data_dir=prepared)
  with pytest.raises(errors.ConfigError, match=r"\(35, 55, 1\) \(H, W, C\) but the config's "
                     r"\(image_height, image_width, channels\) is \(36, 60, 1\)"):
    sources.make_source(config, (36, 60, 1))


class _Device:
  def __init__(self, process_index):
    self.process_index = process_index


def test_max_examples_and_host_shards(prepared, monkeypatch):
  full = _all(prepared, "mpiigaze", "crop", "train")
  images, labels = tfds_sources.load_split("mpiigaze", data_dir=prepared, max_examples=7)
  np.testing.assert_array_equal(images, np.stack([e["image"] for e in full[:7]]))
  # Two hosts of 4 devices: each reads only the rows of its devices' shards
  # (ceil(28 / 8) = 4 per device), which sources.place then puts on them.
  assert len(full) == 28
  monkeypatch.setattr(jax, "devices", lambda: [_Device(p) for p in (0, 0, 0, 0, 1, 1, 1, 1)])
  shards = []
  for index in range(2):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    config = default.data_config("mpiigaze", data_dir=prepared, host_shard=True)
    source = sources.make_source(config, (35, 55, 1), field="real_data")
    assert source.total == 28 and source.row_offset == 16 * index and source.sharded
    shards.append(source.images)
  assert [len(s) for s in shards] == [16, 12]
  np.testing.assert_array_equal(np.concatenate(shards), np.stack([e["image"] for e in full]))
  config = default.data_config("mpiigaze", data_dir=prepared, host_shard=True, shard_pool="false")
  with pytest.raises(errors.ConfigError, match=r"^config.real_data.host_shard: each host would hold a "
                     r"different part of the pool while shard_pool=false"):
    sources.make_source(config, (35, 55, 1), field="real_data")


def test_label_selection_and_image_folder(prepared):
  config = default.data_config("image_folder", data_dir=prepared, builder_config="8x8x3")
  source = sources.make_source(config, (8, 8, 3))
  np.testing.assert_allclose(source.labels["label"][:, 0], source.images[:, 0, 0, 0] * 10.0)
  _, labels = tfds_sources.load_split("mpiigaze", data_dir=prepared, split="test", labels="all")
  assert set(labels) == {"gaze", "pitchyaw", "head_pose", "person", "day", "eye_side"}
  assert tfds_sources.load_split("mpiigaze", data_dir=prepared, split="test", labels="none")[1] == {}
  with pytest.raises(errors.ConfigError, match=r"labels: \['file_name'\] not numeric"):
    tfds_sources.load_split("mpiigaze", data_dir=prepared, labels="gaze,file_name")


def test_missing_dataset_and_split(prepared, tmp_path):
  with pytest.raises(errors.DataError, match=r"nyu_hand/real: no prepared dataset; run python "
                     r"launch/prepare_data.py --dataset=nyu_hand"):
    sources.make_source(default.data_config("nyu_hand", data_dir=str(tmp_path)), (224, 224, 1))
  with pytest.raises(errors.DataError, match=r"no split 'validation'; it has test, train"):
    tfds_sources.load_split("mpiigaze", data_dir=prepared, split="validation")


def test_epoch_permutation_is_a_function_of_seed_and_epoch():
  a = tfds_sources.epoch_permutation(10, seed=3, epoch=1)
  np.testing.assert_array_equal(a, tfds_sources.epoch_permutation(10, seed=3, epoch=1))
  assert sorted(a) == list(range(10))
  assert not np.array_equal(a, tfds_sources.epoch_permutation(10, seed=3, epoch=2))


def test_host_shard_on_two_processes_samples_the_one_process_batch(prepared, tmp_path):
  # Two processes of 4 CPU devices: each reads only its rows from disk, and the
  # batch sampled inside shard_map is the batch of one process holding the whole
  # pool. Before, host_shard marked each host's slice as replicated, so hosts
  # sampled different pools under the same indices.
  import os
  import subprocess
  import sys

  from jax.sharding import PartitionSpec as P

  from simgan_jax import parallel
  from tests.conftest import REPO
  from tests.test_multiprocess import free_port

  address = f"127.0.0.1:{free_port()}"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
             JAX_COORDINATOR_BIND_ADDRESS=address)
  out = tmp_path / "batch.npz"
  procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "host_shard_worker.py"), address,
                             str(i), prepared, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  got = dict(np.load(out))
  # 28 rows, 4 per device: process 0 read rows [0, 16), process 1 rows [16, 28).
  np.testing.assert_array_equal(got.pop("rows"), [[0, 16], [16, 12]])
  assert int(got.pop("held")) == 4 * (35 * 55 + 4 * (3 + 2 + 3 + 1 + 1))

  whole = sources.make_source(default.data_config("mpiigaze", data_dir=prepared, shard_pool="false"),
                              (35, 55, 1))
  mesh = parallel.make_mesh(1)
  fn = jax.jit(jax.shard_map(lambda d, k: whole.sample(d, parallel.example_keys(k, 16)), mesh=mesh,
                             in_specs=(P(), P()), out_specs=P(parallel.AXIS)))
  want = jax.device_get(fn(whole.device_data(), jax.random.PRNGKey(7)))
  assert set(got) == set(want)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
