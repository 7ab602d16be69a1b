"""Checkpoint probes: the label-free measures of a refiner, and choosing a checkpoint with them.

``realism`` (KID on fixed random features against real images), ``two_sample`` (can a
fresh classifier tell refined from real?), ``drift`` (how far refinement moves a
synthetic-trained task network's predictions), ``pupil`` (how far the pupil moves, eyes),
``selection`` (the score logged per checkpoint and ``--step=best``), ``checkpoint`` (the
probe the training loop calls at each scored checkpoint), ``rules`` (label-free
selection rules: reverse validation, agreement, entropy) and ``compare`` (which rule
picks the checkpoint that helps most downstream).
"""
