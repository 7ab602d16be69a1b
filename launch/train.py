r"""Trains SimGAN. All logic lives in simgan_jax.train.train_and_evaluate.

  python launch/train.py --workdir=runs/eyesim
  python launch/train.py --config=simgan_jax/configs/default.py:cpu --workdir=runs/cpu \
      --config.batch_size=32
  python launch/train.py --config=simgan_jax/configs/default.py:cpu --synthetic=~/renders \
      --real=~/photos --workdir=runs/mine     # your own folders, size read from the images

SIGTERM or Ctrl-C: the current step finishes, a checkpoint is saved, one line
says where, and the exit status is 128 + the signal; the same command resumes.

At the end a closing block says what was trained (steps, wall time, checkpoints),
the selected checkpoint with its scores, the runner-up and the rule that ranked
them (simgan_jax.probe.selection.best_checkpoint), where the sample grid,
metrics and checkpoints are, and the refine command to run next; the same facts go
as one JSON line to WORKDIR/summary.jsonl.

Multi-host: pass --multihost on every host (jax.distributed.initialize reads the
cluster from the environment on TPU pods and SLURM), or give --coordinator_address,
--num_processes and --process_id explicitly.
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_CONFIG = common.define_config_file(
    "config", os.path.join(common.REPO, "simgan_jax/configs/default.py"),
    "Config file, optionally with a variant: path/to/config.py:variant.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
_SYNTHETIC = flags.DEFINE_string(
    "synthetic", None, "A folder of synthetic images (labels.csv optional) to train on instead of "
    "config.synthetic_data; with --real. Prepared once under WORKDIR/data; the image size and "
    "channels are read from the images.")
_REAL = flags.DEFINE_string("real", None, "A folder of unlabelled real images, instead of config.real_data; "
                            "with --synthetic.")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  if (_SYNTHETIC.value is None) != (_REAL.value is None):
    raise app.UsageError("--synthetic and --real go together (two image folders)")
  if _SYNTHETIC.value is not None:
    if flags.FLAGS.multihost or flags.FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
      raise app.UsageError("--synthetic/--real prepare the folders on this host; with --multihost prepare "
                           "them first (launch/prepare_data.py) and name them in the config")
    from simgan_jax.experiments import image_folder  # pylint: disable=g-import-not-at-top

    shape = image_folder.use_folders(config, _SYNTHETIC.value, _REAL.value,
                                     os.path.join(_WORKDIR.value, "data"), common.say)
    common.say(f"train: the folders are prepared at {shape[0]}x{shape[1]}x{shape[2]} (H x W x C, read from "
               "the images)")
  steps = config.refiner_pretrain_steps + config.discriminator_pretrain_steps + config.num_iterations
  # Library imports stay inside main (as below), so a bad flag is reported before jax loads.
  from simgan_jax import summary  # pylint: disable=g-import-not-at-top

  common.say(f"train: {os.path.relpath(common.config_name('config'))} -> {_WORKDIR.value}: {steps} steps at "
             f"batch {config.batch_size}. Loading data ({summary.data_line(config)}) and compiling each "
             f"phase's step (minutes on a CPU the first time, seconds with the compilation cache "
             f"{common.compilation_cache_dir() if common.cache_on() else 'off'})")
  common.maybe_initialize_distributed()
  # Imported after maybe_initialize_distributed: jax must not start before it.
  import jax  # pylint: disable=g-import-not-at-top
  from simgan_jax import checkpoints, train  # pylint: disable=g-import-not-at-top

  start = time.time()
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
  if jax.process_index() == 0:
    facts = summary.train_summary(config, _WORKDIR.value, seconds=time.time() - start)
    facts["outputs"]["summary"] = summary.append_json(_WORKDIR.value, facts)
    print(summary.format_block(facts), flush=True)


if __name__ == "__main__":
  common.run(main)
