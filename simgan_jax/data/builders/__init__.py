"""TFDS builders for the paper's datasets; they need no TensorFlow.

``BUILDERS`` maps the dataset names used by ``launch/prepare_data.py`` and by
the training sources (``simgan_jax.data.tfds_sources``) to builder classes.
"""

from simgan_jax.data.builders.base import BadFileError, Skip, default_data_dir, derive_config
from simgan_jax.data.builders.image_folder import ImageFolder
from simgan_jax.data.builders.mpiigaze import MPIIGaze
from simgan_jax.data.builders.nyu_hand import NYUHand
from simgan_jax.data.builders.unityeyes import UnityEyes

BUILDERS = {cls.name: cls for cls in (UnityEyes, MPIIGaze, NYUHand, ImageFolder)}

__all__ = ["BUILDERS", "BadFileError", "ImageFolder", "MPIIGaze", "NYUHand", "Skip", "UnityEyes",
           "default_data_dir", "derive_config"]
