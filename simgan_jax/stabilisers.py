"""GAN stabilisers beyond the paper (SIMGAN.md "Beyond the paper"), each off by default.

* Refiner weight averaging: an exponential moving average (EMA) of the refiner's
  parameters (Karras et al., ICLR 2018; Yazici et al., ICLR 2019), updated after every
  refiner update and used wherever a trained refiner is used
  (``training.inference_refiner_params``). ``config.refiner_ema.decay``.
* R1 gradient penalty on real images for the discriminator (Mescheder et al., ICML
  2018): ``gamma / 2 * E_y ||grad_y D(y)||^2``. ``config.discriminator.r1_gamma``.

Differentiable augmentation (DiffAugment) lives in ``augment.py``; separate learning
rates (TTUR) in ``training.make_optimizer``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simgan_jax import losses


def ema_decay(decay: float, step) -> jax.Array:
  """The decay used at global ``step``: ``min(decay, (1 + step) / (10 + step))``.

  The warm-up is TensorFlow's ``ExponentialMovingAverage(num_updates=step)`` rule: early
  averages forget the random initialisation within a few updates (0.1 at step 0, 0.5 at
  step 8, 0.9 at step 80) instead of dragging it along for ~1/(1 - decay) updates.
  ``step`` is the global step counter (pretraining steps included), so the Kg refiner
  updates of one iteration share one decay.
  """
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))


def ema_update(ema_params, params, decay: float, step):
  """``ema <- d * ema + (1 - d) * params`` leaf by leaf, ``d = ema_decay(decay, step)``."""
  d = ema_decay(decay, step)
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema_params, params)


def real_logit(logits_BHW2: jax.Array) -> jax.Array:
  """Per image, the sum over patches of ``logit_real - logit_refined`` [B].

  This is the "D(y)" of R1 for a 2-way softmax patch discriminator: per patch, the
  difference of the two logits is the log-odds ``log D_real / D_refined``, the logit
  of a sigmoid discriminator (Mescheder's D before the sigmoid). The paper's losses
  sum over patches, so the penalty does too: it is the gradient of the image's total
  real log-odds.
  """
  diff = logits_BHW2[..., losses.REAL] - logits_BHW2[..., losses.REFINED]
  return jnp.sum(diff.reshape(diff.shape[0], -1), axis=1)


def r1_penalty(apply_fn, real_BHWC: jax.Array, gamma: float) -> jax.Array:
  """``gamma / 2 * mean_i ||grad_{y_i} real_logit(D(y))_i||^2`` over this batch of real
  images; ``apply_fn(images) -> logits_BHW2`` must be twice differentiable (D's
  parameters are closed over, so the penalty's gradient reaches them). Images must be
  independent under ``apply_fn`` (no batch-norm statistics of the batch), so the
  gradient of the batch's sum is each image's own gradient."""
  grads = jax.grad(lambda y: jnp.sum(real_logit(apply_fn(y))))(real_BHWC)
  squared_norms = jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=1)
  return 0.5 * gamma * jnp.mean(squared_norms)


def twice_differentiable(discriminator):
  """``discriminator`` with convolutions that can be differentiated twice (R1 needs the
  gradient of an input gradient): the native kernels and the hybrid path have hand-written
  first-order gradients, so they become ``matmul`` (the same maths and parameters)."""
  if discriminator.conv_impl in ("native", "hybrid"):
    return discriminator.clone(conv_impl="matmul")
  return discriminator


def discriminator_r1_penalty(discriminator, params, batch_stats, real_BHWC, gamma: float):
  """R1 of a ``models.LocalDiscriminator`` on the real images it sees (augmented ones when
  augmentation is on, as in StyleGAN2-ADA), through ``twice_differentiable``; batch norm,
  if any, with its running statistics so that the images stay independent."""
  discriminator = twice_differentiable(discriminator)
  variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
  return r1_penalty(lambda y: discriminator.apply(variables, y, train=False), real_BHWC, gamma)
