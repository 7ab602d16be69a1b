r"""Does refinement help my task? SimGAN on your own image folders, end to end.

``launch/reproduce.py`` reads this through configs/reproduce.py; the stages are in
simgan_jax/experiments/image_folder.py (its docstring has the commands):

  python launch/make_folder_dataset.py --out=runs/folder_data
  python launch/reproduce.py --experiment=image_folder:cpu --synthetic=runs/folder_data/synthetic \
      --real=runs/folder_data/real --real_test=runs/folder_data/real_test --workdir=runs/folder_cpu

The image size and channel count are read from the first synthetic image (and
whether any of the first real images is in colour); ``image_height``,
``image_width`` and ``channels`` set them instead. ``task`` is ``auto`` (one
column of integer labels: classification, else regression), ``classification``
or ``regression``.

Variants:

* (none): SimGAN's full-size schedule (configs/default.py) and 2,000 estimator
  steps at batch 128, three seeds; for an accelerator.
* ``cpu``: sized for 2 CPU cores on the generated 32x32 dataset
  (launch/make_folder_dataset.py: 3,000 + 3,000 + 1,000 images): SimGAN's
  ``cpu`` variant (200 + 100 pretraining steps) with 500 adversarial iterations, a
  checkpoint (and probe) every 100 steps, three SimGAN seeds (the refined row: 2
  task-network seeds on each refiner's images, 6 runs), 3 task-network seeds x 600
  steps for the synthetic row, a 300-step final two-sample test per refiner. On the
  generated shapes dataset: docs/results_folder.md (16 min on 2 CPU cores).
* ``smoke``: tiny networks and a few steps of everything (tests).
"""

import ml_collections

from simgan_jax.configs import classification
from simgan_jax.configs import default

EXPERIMENTS = ("image_folder",)


def get_config(variant: str | None, experiment: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = experiment
  c.estimator = "image_folder"  # the estimator stages: experiments/reproduce.py ESTIMATOR_MODULES
  # The folders (launch/reproduce.py --synthetic, --real, --real_test): images, and
  # labels.csv / labels.json in the labelled ones.
  c.synthetic_dir = ""
  c.real_dir = ""
  c.real_test_dir = ""  # '' = no labelled real images: train, select and refine only
  c.task = "auto"  # auto | classification | regression
  c.image_height = 0  # 0 = read from the data
  c.image_width = 0
  c.channels = 0
  c.simgan = default.get_config(variant)
  c.simgan.synthetic_data = default.data_config("image_folder")
  c.simgan.real_data = default.data_config("image_folder")
  c.simgan.max_checkpoints_to_keep = 1000  # every checkpoint is a selection candidate
  # The label-drift bound (flip rate for classes, label stds for regression). The drift
  # network is trained on the clean synthetic images only, so it is itself fragile to the
  # appearance change a refiner should make: on the generated shapes, a synthetic-trained
  # classifier scores 100% on synthetic and about 50% on real test images (4 classes), so
  # a refiner that makes images look real flips many of its answers. drift.py's default
  # (0.1) would exclude exactly those; 0.5 excludes only label-destroying refiners.
  c.simgan.drift.max_drift = 0.5
  c.task_net = classification.get_config(variant)  # the task network (tasks/labels.py)
  # Filled in by the run (experiments/image_folder.py prepare): the prepared sets as
  # tasks/data.py specs.
  c.synthetic_data = ""
  c.target_train_data = ""  # no labelled-real training row
  c.test_data = ""
  c.training_sets = ("synthetic", "refined")
  c.num_synthetic = 1_000_000  # at most; all of the synthetic folder when it holds fewer
  c.data_multiplier = 1
  c.synthetic_seed = 0
  c.seeds = (0, 1, 2)
  # Several SimGAN runs (experiments/seeds.py): a refined row is then the mean ± std over
  # every (SimGAN seed x estimator seed) run; empty = simgan.seed alone.
  c.simgan_seeds = ()
  c.refined_seeds = ()  # task-network seeds of the refined row per SimGAN seed (empty = seeds)
  c.num_label_pairs = 1000  # at most
  c.num_sample_images = 8
  c.final_two_sample = default.final_two_sample_config(variant)
  c.refine_chunk = 4096
  c.data_dir = ""  # prepared sets ('' = WORKDIR/data)
  c.overrides = ()
  if variant == "cpu":
    c.simgan_seeds = (0, 1, 2)  # three refiners, the refined row from 2 task-network seeds each
    c.refined_seeds = (0, 1)
    c.simgan.num_iterations = 500
    # The self-regularisation docs/results_folder.md was measured with (default.py's cpu
    # variant before the eyes moved to normalized_low_pass_4 at 1.0): untried here.
    c.simgan.loss.psi = "low_pass_4"
    c.simgan.loss.self_regularization_weight = 0.5
    c.simgan.refiner.output_activation = "tanh"  # likewise (the eyes moved to residual)
    c.task_net.num_steps = 600
    c.task_net.checkpoint_every = 600
    c.final_two_sample.steps = 300
    c.refine_chunk = 1000
  elif variant == "smoke":
    c.simgan.drift.max_drift = float("inf")  # a 20-step drift network: no bound (as default.py:smoke)
    c.simgan.checkpoint_every = 3
    c.simgan.realism.num_images = 48
    c.simgan.realism.subset_size = 24
    c.simgan.two_sample.num_test = 8
    c.seeds = (0, 1)
    c.num_label_pairs = 32
    c.num_sample_images = 4
    c.refine_chunk = 64
  return c
