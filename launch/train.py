r"""Trains SimGAN. All logic lives in simgan_jax.train.train_and_evaluate.

  python launch/train.py --workdir=runs/eyesim
  python launch/train.py --config=simgan_jax/configs/default.py:cpu --workdir=runs/cpu \
      --config.batch_size=32

SIGTERM or Ctrl-C: the current step finishes, a checkpoint is saved, one line
says where, and the exit status is 128 + the signal; the same command resumes.

Multi-host: pass --multihost on every host (jax.distributed.initialize reads the
cluster from the environment on TPU pods and SLURM), or give --coordinator_address,
--num_processes and --process_id explicitly.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_CONFIG = common.define_config_file(
    "config", os.path.join(common.REPO, "simgan_jax/configs/default.py"),
    "Config file, optionally with a variant: path/to/config.py:variant.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  steps = config.refiner_pretrain_steps + config.discriminator_pretrain_steps + config.num_iterations
  common.say(f"train: {os.path.relpath(common.config_name('config'))} -> {_WORKDIR.value}: {steps} steps at "
             f"batch {config.batch_size}. Loading data (the built-in target cache is rendered on first use, "
             f"minutes on a CPU) and compiling each phase's step (minutes on a CPU the first time, "
             f"seconds with the compilation cache {common.compilation_cache_dir() if common.cache_on() else 'off'})")
  common.maybe_initialize_distributed()
  from simgan_jax import checkpoints, train  # pylint: disable=g-import-not-at-top

  try:
    train.train_and_evaluate(config, _WORKDIR.value)
  except train.Stopped as e:
    # Saved; 128 + the signal, as if killed by it, so schedulers see a preemption.
    print(e, file=sys.stderr, flush=True)
    sys.exit(128 + e.signum)
  except checkpoints.CheckpointWriteError as e:
    if getattr(flags.FLAGS, "debug", False) or getattr(flags.FLAGS, "verbose", False):
      raise
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  common.run(main)
