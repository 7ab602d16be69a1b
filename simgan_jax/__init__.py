"""simgan_jax: SimGAN (Shrivastava et al., CVPR 2017) in JAX/Flax.

Modules follow the paper: ``models`` (refiner, local discriminator), ``losses``
(local adversarial, self-regularisation), ``history`` (buffer of refined images),
``training`` (train state and compiled steps), ``train`` (the loop), ``data``
(sources and dataset builders), ``simulators`` (built-in eye simulator and target
domain), ``evaluation`` (downstream gaze estimation).
"""

__version__ = "0.1.0"
