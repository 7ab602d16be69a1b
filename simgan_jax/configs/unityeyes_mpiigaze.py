r"""The paper's eye experiment: refine UnityEyes renders towards MPIIGaze eyes.

Prepare the data once (docs/datasets.md says where to get it):

  python launch/prepare_data.py --dataset=unityeyes --manual_dir=~/data/UnityEyes/imgs
  python launch/prepare_data.py --dataset=mpiigaze --manual_dir=~/data/MPIIGaze

Train (add ``--config.synthetic_data.data_dir=... --config.real_data.data_dir=...``
if you prepared with ``--data_dir``):

  python launch/train.py --config=simgan_jax/configs/unityeyes_mpiigaze.py \
      --workdir=runs/unityeyes_mpiigaze
  python launch/train.py --config=simgan_jax/configs/unityeyes_mpiigaze.py:smoke --workdir=/tmp/s

Synthetic: UnityEyes ``35x55`` (grey crop, 1.5 x eye width). Real: MPIIGaze
``crop`` (rows [1:], columns [3:-2], right eyes mirrored), ``train`` split, which
excludes the official evaluation subset so refined-data gaze estimators can be
tested on ``test`` without the refiner having seen those eyes. Networks and
schedule are the default eye setup (SIMGAN.md "Networks" / "Training"); variants
are the default config's (``cpu``, ``smoke``, ``paper``, ``article``), and
``smoke`` reads only 256 examples of each dataset. Expected result: refined eyes
that take on MPIIGaze's camera noise, contrast and blur while the pupil stays
where UnityEyes put it (check the sample grids in the workdir).
"""

import ml_collections

from simgan_jax.configs import default


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """The default config (with ``variant``) on UnityEyes -> MPIIGaze."""
  c = default.get_config(variant)
  c.image_height, c.image_width, c.channels = 35, 55, 1
  c.discriminator.preset = "eye"
  max_examples = 256 if variant and "smoke" in variant.split(",") else 0
  c.synthetic_data = default.data_config("unityeyes", builder_config="35x55", split="train",
                                         max_examples=max_examples)
  c.real_data = default.data_config("mpiigaze", builder_config="crop", split="train",
                                    max_examples=max_examples)
  return c
