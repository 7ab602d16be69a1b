"""simgan_jax: SimGAN (Shrivastava et al., CVPR 2017) in JAX/Flax.

Modules follow the paper: ``models`` (refiner, local discriminator), ``losses``
(local adversarial, self-regularisation), ``history`` (buffer of refined images),
``training`` (train state and compiled steps), ``train`` (the loop), ``data``
(sources and dataset builders), ``simulators`` (the built-in eye and hand simulators
and target domains), ``probe`` (label-free measures of a refiner and checkpoint
selection), ``tasks`` (downstream estimators on one loop), ``experiments`` (the
paper's experiments and your own folders, end to end, with reports), ``refining``
(using a trained refiner: refine datasets, export, shipped refiners), ``turing``
(the visual Turing test).
"""

__version__ = "0.1.0"
