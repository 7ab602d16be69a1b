r"""Hand pose estimator (SIMGAN.md "Downstream evaluation"): train on one set, test on another.

Commands (from the repository root):

  # Trained on the simulator, tested on the Kinect-like target's labelled test split:
  python launch/train_pose.py --config=simgan_jax/configs/pose.py:cpu \
      --train_data=handsim --eval_data=handsim_target:test --workdir=runs/pose_sim
  # Trained on labelled target hands (the validation split):
  python launch/train_pose.py --config=simgan_jax/configs/pose.py:cpu \
      --train_data=handsim_target:validation --eval_data=handsim_target:test --workdir=runs/pose_target
  python launch/train_pose.py --config=simgan_jax/configs/pose.py:smoke --workdir=/tmp/p

Variants (``--config=...pose.py:VARIANT``):

* (none) the paper's size: 224x224 depth, 2 hourglasses of depth 4 with 256
  features, 64x64 heatmaps, batch 32, RMSprop-like Adam lr 2.5e-4 (Newell et al.
  used RMSprop 2.5e-4), 20k steps; for an accelerator.
* ``cpu``: 64x64 depth, 16x16 heatmaps, 2 hourglasses of depth 2 with 64
  features, batch 32, lr 1e-3, 400 steps (see configs/reproduce.py for measured
  step times).
* ``smoke``: tiny network, a few steps; for tests (seconds).

Results (``results.json``): mean joint error and the share of test images whose 14
joints are all within d pixels (d in pixels of a 224-pixel crop), d = 0..20.
"""

import ml_collections

from simgan_jax.configs import default


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``variant`` is the text after ':' in ``--config``."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.image_height = 224
  c.image_width = 224
  c.channels = 1

  c.model = ml_collections.ConfigDict()
  c.model.num_stacks = 2
  c.model.features = 256
  c.model.depth = 4
  c.model.heatmap_size = 64
  c.model.num_joints = 14
  # Convolution implementation and compute dtype, as in configs/default.py (auto:
  # layers.py's native kernels on CPU, XLA's convolution elsewhere).
  c.conv_impl = "auto"
  c.compute_dtype = "float32"
  c.heatmap_sigma = 1.0  # Gaussian target width, heatmap pixels
  # "softmax" (cross-entropy over each heatmap's pixels) or "mse" (Newell et al.); with
  # mse the :cpu estimator did not learn in 300 steps (tasks/pose_net.py docstring).
  c.heatmap_loss = "softmax"

  # +-20 degree rotation and crop augmentation (SIMGAN.md), applied on device.
  c.augment = ml_collections.ConfigDict()
  c.augment.max_rotation_deg = 20.0
  c.augment.scale = (0.9, 1.1)
  c.augment.max_shift = 0.05  # fraction of the image size

  c.optimizer = default.optimizer_config(learning_rate=2.5e-4, b1=0.9)
  c.batch_size = 32
  c.num_steps = 20_000
  c.log_every = 100
  c.checkpoint_every = 2000
  c.max_checkpoints_to_keep = 2
  c.eval_every = 0  # 0: evaluate once, at the end
  # Also saved every this many minutes (0: off) and on SIGTERM/SIGINT, as in configs/default.py.
  c.checkpoint_every_minutes = 10.0
  c.sync_every_steps = 10  # several processes: how often they agree on stopping / saving
  c.eval_batch_size = 256

  c.data_dir = ""  # prepared TFDS datasets (nyu_hand)
  c.cache_dir = ""  # built-in target cache ('' = ~/.cache/simgan_jax)
  c.max_examples = 0  # TFDS sets: keep the first N examples (0 = all)
  # The built-in target's validation/test splits: only their first N examples (0 = all).
  c.target_eval_examples = 0
  c.num_simulator_eval = 2000  # images in a `handsim` evaluation set

  if variant:
    for name in variant.split(","):
      if name not in _VARIANTS:
        raise ValueError(f"--config variant {name!r} unknown; known: {', '.join(sorted(_VARIANTS))}")
      _VARIANTS[name](c)
  return c


def _cpu(c):
  c.image_height = c.image_width = 64
  c.model.features = 64
  c.model.depth = 2
  c.model.heatmap_size = 16
  c.batch_size = 32
  c.num_steps = 400
  c.optimizer.learning_rate = 1e-3
  c.log_every = 50
  c.checkpoint_every = 400
  c.eval_batch_size = 200
  c.num_simulator_eval = 1000


def _smoke(c):
  c.image_height = c.image_width = 32
  c.model.num_stacks = 1  # fewer layers to compile in every pose test
  c.model.features = 16
  c.model.depth = 1
  c.model.heatmap_size = 8
  c.batch_size = 16
  c.num_steps = 3
  c.log_every = 1
  c.checkpoint_every = 3
  c.eval_batch_size = 64
  c.num_simulator_eval = 64
  # The built-in target's validation/test splits cut to their first 256 images (tests).
  c.target_eval_examples = 256


_VARIANTS = {"cpu": _cpu, "smoke": _smoke}
