r"""Classifier (or regressor) of an image folder's labels: ``tasks/labels.py``.

  python launch/prepare_data.py --dataset=image_folder --manual_dir=runs/folder_data/synthetic \
      --height=32 --width=32 --data_dir=runs/folder_prepared
  python launch/prepare_data.py --dataset=image_folder --manual_dir=runs/folder_data/real_test \
      --height=32 --width=32 --data_dir=runs/folder_prepared
  python launch/train_estimator.py --task=classification \
      --config=simgan_jax/configs/classification.py:cpu --config.data_dir=runs/folder_prepared \
      --train_data=image_folder/32x32x1 --eval_data=image_folder/32x32x1_srcXXXXXXXX --workdir=runs/cls

(the second folder's builder config is printed by its prepare_data.py summary).
``configs/regression.py`` is this config with ``kind = "regression"``.

Variants: (none) 2,000 steps at batch 128; ``cpu``: 400 steps at batch 64 (a
32x32 grey set trains at several hundred images/s on 2 CPU cores); ``smoke``:
a few steps of a tiny network (tests).
"""

import ml_collections

from simgan_jax.configs import default


def get_config(variant: str | None = None, kind: str = "classification") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.kind = kind  # classification | regression (tasks/labels.py)
  c.seed = 0
  c.image_height = 32
  c.image_width = 32
  c.channels = 1
  c.model = ml_collections.ConfigDict()
  c.model.conv_features = (16, 32, 32)
  c.model.hidden_features = 64
  c.num_classes = 0  # classification; 0 = the largest training label + 1
  c.num_outputs = 0  # regression; 0 = the training labels' columns
  c.label_mean = ()  # regression: standardisation; () = the training labels' mean and std
  c.label_scale = ()
  c.optimizer = default.optimizer_config(learning_rate=1e-3, b1=0.9)
  c.batch_size = 128
  c.num_steps = 2000
  c.log_every = 100
  c.checkpoint_every = 1000
  c.max_checkpoints_to_keep = 2
  c.eval_every = 0
  c.checkpoint_every_minutes = 10.0
  c.sync_every_steps = 10
  c.eval_batch_size = 512
  # Data (tasks/data.py specs): where named sets are read from.
  c.data_dir = ""
  c.cache_dir = ""
  c.max_examples = 0
  if variant:
    for name in variant.split(","):
      if name not in _VARIANTS:
        raise ValueError(f"--config variant {name!r} unknown; known: {', '.join(sorted(_VARIANTS))}")
      _VARIANTS[name](c)
  return c


def _cpu(c):
  c.batch_size = 64
  c.num_steps = 400
  c.log_every = 100
  c.checkpoint_every = 400
  c.eval_batch_size = 256


def _smoke(c):
  c.model.conv_features = (4, 8)
  c.model.hidden_features = 16
  c.batch_size = 16
  c.num_steps = 4
  c.log_every = 2
  c.checkpoint_every = 4
  c.eval_batch_size = 64


_VARIANTS = {"cpu": _cpu, "smoke": _smoke}
