"""One process of the two-process host_shard test (tests/test_tfds_sources.py).

  python tests/host_shard_worker.py COORDINATOR PROCESS_ID DATA_DIR OUT.npz

Loads the prepared mpiigaze train split with ``host_shard=True`` (this process
reads only its devices' rows), places it sharded over both processes' devices,
samples one batch inside ``shard_map`` and (process 0) saves it with the rows read.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
coordinator, process_id, data_dir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.distributed.initialize(coordinator_address=coordinator, num_processes=2, process_id=process_id)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from simgan_jax import parallel  # noqa: E402
from simgan_jax.configs import default  # noqa: E402
from simgan_jax.data import sources  # noqa: E402

BATCH = 16
source = sources.make_source(default.data_config("mpiigaze", data_dir=data_dir, host_shard=True),
                             (35, 55, 1), field="real_data")
mesh = parallel.make_mesh()
data, specs = sources.place(source, mesh)


def body(data, key):
  return source.sample(data, parallel.example_keys(key, BATCH // mesh.devices.size))


fn = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(specs, P()), out_specs=P(parallel.AXIS)))
batch = multihost_utils.process_allgather(fn(data, jax.random.PRNGKey(7)), tiled=True)
rows = multihost_utils.process_allgather(np.array([source.row_offset, len(source.images)]))
if process_id == 0:
  np.savez(out, rows=np.asarray(rows), held=sources.bytes_per_device(data),
           **{k: np.asarray(v) for k, v in batch.items()})
