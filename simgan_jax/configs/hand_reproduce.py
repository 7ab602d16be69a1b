r"""The paper's hand experiment (Table 4) end to end: does refinement help a pose estimator?

``launch/reproduce.py`` reads this through configs/reproduce.py. The stages are
the eye experiment's (SimGAN, refiner selection by the label-free realism score,
refining, estimators, label preservation, report), with the stacked-hourglass
pose estimator (``pose``, as in configs/pose.py) in place of the gaze one.

  # Built-in data, sized for 2 CPU cores (the run behind docs/results_handsim.md):
  python launch/reproduce.py --experiment=handsim_pose:cpu --workdir=runs/hand_cpu \
      --publish=docs/results_handsim.md
  # The paper's 224x224 networks, for an accelerator:
  python launch/reproduce.py --experiment=handsim_pose --workdir=runs/hand
  # NYU (prepare nyu_hand/synthetic and nyu_hand/real first, docs/datasets.md):
  python launch/reproduce.py --experiment=nyu_hand --workdir=runs/hand_nyu
  python launch/reproduce.py --experiment=handsim_pose:smoke --workdir=/tmp/h   # tests

Rows (``training_sets``; the ``_4x`` names hold ``data_multiplier`` = 3 times the
images, Table 4's "3x" rows): synthetic, synthetic 3x, refined, refined 3x,
``oracle`` (handsim_pose only: the simulator's hands measured by the target's own
sensor model, forearm and clutter included, what a perfect refiner would make)
and target labels (``target_train_data``; the paper's "real" row). The paper's 3x
rows use NYU's three camera views; ours use three times as many images of the
one view. Metric: share of ``test_data`` images whose 14 joints are all within
5 px of a 224-pixel crop (pose.py), and the mean joint error.

Variants:

* ``handsim_pose``: configs/handsim.py (the paper's hand networks at 224x224)
  and the paper's hourglass (2 stacks, 256 features, 64x64 heatmaps); not timed.
* ``handsim_pose:cpu``: 64x64 depth. SimGAN: configs/handsim.py:cpu (a refiner that
  only drops pixels, by a learned score-function drop-out head; 1,200 iterations). Pose: configs/pose.py:cpu (2 hourglasses of depth 2, 64 features,
  16x16 heatmaps) for 300 steps at batch 32, 2 seeds per row, 4,000 synthetic
  images (12,000 for the 3x rows). The headline threshold is 20 px
  (``within_px``): a 16x16 heatmap pixel is 14 px of a 224 crop, below which the
  paper's 5 px cannot be resolved; where no synthetic- or refined-trained row reaches
  1% of images within it, the report says so and points to the mean joint error. Three
  SimGAN seeds (``simgan_seeds``; refined rows from 2 estimator seeds each) and the
  ``oracle`` row. Its results, stage times and caveats: docs/results_handsim.md.
* ``handsim_pose:smoke``: 32x32, tiny networks, a few steps (tests).
* ``nyu_hand[:cpu|:smoke]``: the same stages on prepared NYU data: synthetic
  ``nyu_hand/synthetic:train`` refined towards ``nyu_hand/real:train``, tested
  on ``nyu_hand/real:test``; the target row trains on ``nyu_hand/real:train``
  (seen unlabelled by the refiner). Prepare the data at the variant's image size
  (224; cpu 64; smoke 32) with ``--builder_config`` overrides height/width.
"""

import ml_collections

from simgan_jax.configs import default

from simgan_jax.configs import handsim
from simgan_jax.configs import nyu_hand
from simgan_jax.configs import pose

EXPERIMENTS = ("handsim_pose", "nyu_hand")
_SIZES = {None: 224, "cpu": 64, "smoke": 32}


def get_config(name: str, variant: str | None, experiment: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = experiment
  c.estimator = "pose"  # the estimator stages (experiments/hand_reproduce.py)
  size = _SIZES[variant]
  if name == "handsim_pose":
    c.simgan = handsim.get_config(variant)
    c.synthetic_data = "handsim"
    c.target_train_data = "handsim_target:validation"
    c.test_data = "handsim_target:test"
  else:
    c.simgan = nyu_hand.get_config(variant)
    c.simgan.image_height = c.simgan.image_width = size
    c.synthetic_data = "nyu_hand/synthetic:train"
    c.target_train_data = "nyu_hand/real:train"
    c.test_data = "nyu_hand/real:test"
  c.pose = pose.get_config(variant)
  c.pose.image_height = c.pose.image_width = c.simgan.image_height
  c.simgan.checkpoint_every = 1000
  c.simgan.max_checkpoints_to_keep = 1000
  c.num_synthetic = 20_000
  c.data_multiplier = 3
  c.synthetic_seed = 1
  c.seeds = (0, 1, 2)
  c.simgan_seeds = ()  # as in configs/reproduce.py: empty = simgan.seed alone
  c.refined_seeds = ()  # estimator seeds of the refined rows per SimGAN seed (empty: seeds)
  c.training_sets = ("synthetic", "synthetic_4x", "refined", "refined_4x", "target")
  if name == "handsim_pose":  # the simulator's hands through the target's sensor model (a perfect refiner)
    c.training_sets = ("synthetic", "synthetic_4x", "refined", "refined_4x", "oracle", "target")
  # Target factors (hands_target.SENSOR_FACTORS, e.g. "forearm,clutter") the oracle row
  # leaves out: a diagnosis of which part of the perfect refiner's gain comes from what.
  # Empty (default): the perfect refiner. Use a fresh workdir per value (finished rows are read back).
  c.oracle_factors_off = ()
  c.num_label_pairs = 1000
  c.num_sample_images = 8
  c.final_two_sample = default.final_two_sample_config(variant)
  # The report's headline threshold (px of a 224-pixel crop; Table 4: 5).
  c.within_px = 5
  c.refine_chunk = 2048
  c.data_dir = ""
  c.overrides = ()
  if variant == "cpu":
    c.simgan.checkpoint_every = 100
    c.num_synthetic = 4000
    c.seeds = (0, 1)
    c.simgan_seeds = (0, 1, 2)  # three refiners, the refined rows from 2 estimator seeds each
    c.num_label_pairs = 500
    c.pose.num_steps = 300
    c.within_px = 20  # 16x16 heatmaps: one heatmap pixel is 14 px of a 224 crop
    c.final_two_sample.steps = 300  # as in the committed hand reports (the default is 1000 steps)
  elif variant == "smoke":
    c.simgan.checkpoint_every = 3
    c.simgan.realism.num_images = 32
    c.simgan.realism.subset_size = 16
    c.num_synthetic = 32
    c.seeds = (0,)
    c.num_label_pairs = 16
    c.num_sample_images = 4
    c.refine_chunk = 64
    c.pose.eval_batch_size = 32
  c.pose.data_dir = c.data_dir
  return c
