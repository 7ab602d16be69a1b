"""Test setup: 8 fake CPU devices, set before JAX is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# 8 fake devices x 2 test workers share 2 cores: XLA:CPU's default (40 s) for one device
# to wait on the others at a collective is there to catch deadlocks, not slow machines.
if "collective_call_terminate_timeout" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_cpu_collective_call_terminate_timeout_seconds=900"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for this test session, shared with the launch
# scripts the tests start as subprocesses: identical programs compile once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile  # noqa: E402

  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="simgan_jax_test_xla_cache_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny_config():
  """The smoke config on in-memory data: every phase in a few steps."""
  from simgan_jax.configs import default

  return default.get_config("smoke")


def random_pool(seed: int, n: int = 64, shape=(35, 55, 1)) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.fixture
def array_sources():
  from simgan_jax.data.sources import ArraySource

  return ArraySource(random_pool(0)), ArraySource(random_pool(1))


@pytest.fixture
def npz_pools(tmp_path):
  """Synthetic and real pools written as .npz files for the npz source."""
  paths = {}
  for name, seed in (("synthetic", 0), ("real", 1)):
    paths[name] = str(tmp_path / f"{name}.npz")
    np.savez(paths[name], images=random_pool(seed))
  return paths


def npz_flags(paths) -> list[str]:
  return [
      "--config.synthetic_data.name=npz", f"--config.synthetic_data.path={paths['synthetic']}",
      "--config.real_data.name=npz", f"--config.real_data.path={paths['real']}",
  ]
