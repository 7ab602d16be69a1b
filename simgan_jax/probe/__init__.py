"""Checkpoint probes: the label-free scores a training run logs at its checkpoints.

``checkpoint.make_realism_probe`` builds the probe the training loop calls at each
scored checkpoint (realism KID, the two-sample classifier, the label drift of the
synthetic-trained task network, the output spread and the selection score); the
measures themselves are in ``simgan_jax/evaluation/`` (realism, two_sample, drift,
selection).
"""
