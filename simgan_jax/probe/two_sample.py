"""A two-sample classifier test of realism: can a fresh classifier tell refined from real?

A small classifier, new at every call and not the GAN's discriminator, is
trained on ``n_train`` refined and ``n_train`` real images and tested on
``n_test`` + ``n_test`` images it has not seen. Its held-out accuracy is
reported with a Wilson 95% interval: 50% means it cannot tell the two sets apart
(the statistics of the paper's visual Turing test, 517 of 1,000 answers
correct), 100% means every refined image gives itself away (Lopez-Paz and Oquab,
"Revisiting classifier two-sample tests", ICLR 2017).

The classifier is local like a patch discriminator: 3x3 convolutions of widths
``features`` (the 2nd and 3rd with stride 2, ReLU), a 1x1 convolution to one
logit per position, averaged over positions (SAME zero padding, so positions
near the border and the corners see that they are there: a frame or corner
marks register). Its initialisation and batch order come from ``seed``, the same
at every call, so differences between checkpoints are not differences of luck.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from simgan_jax.data import sources as sources_lib
from simgan_jax.turing.stats import wilson_interval  # pure Python: the Turing test's statistics


class PatchClassifier(nn.Module):
  """Images [B, H, W, C] -> one logit per image ("refined"), the mean of per-patch logits."""

  features: Sequence[int] = (16, 32, 32)

  @nn.compact
  def __call__(self, images_BHWC):
    x = images_BHWC
    for i, f in enumerate(self.features):
      x = nn.relu(nn.Conv(f, (3, 3), strides=(1 if i == 0 else 2,) * 2, padding="SAME")(x))
    return jnp.mean(nn.Conv(1, (1, 1))(x), axis=(1, 2, 3))


def _unit(images) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return np.asarray(sources_lib.to_unit_range(images))
  return images.astype(np.float32)


class TwoSampleTest:
  """Held-out accuracy of a fresh refined-vs-real classifier, against a fixed real set.

  ``real_images`` [N, H, W, C]: the last ``num_test`` are the real test images,
  the others the real training images; ``score(fake)`` splits the fake images the
  same way (it needs as many as ``real_images``).
  """

  def __init__(self, real_images, num_test: int, steps: int = 300, batch_size: int = 64,
               features: Sequence[int] = (16, 32, 32), learning_rate: float = 1e-3, seed: int = 0):
    self.real = _unit(real_images)
    n = len(self.real)
    if not 1 <= num_test < n:
      raise ValueError(f"two_sample: num_test must be in [1, {n - 1}] for {n} real images, got {num_test}")
    self.num_test, self.steps, self.batch_size = num_test, steps, batch_size
    self.model = PatchClassifier(tuple(features))
    self.key = jax.random.PRNGKey(seed)
    self.tx = optax.adam(learning_rate)
    half = batch_size // 2
    model, tx = self.model, self.tx
    num_train = n - num_test

    @jax.jit
    def train_step(params, opt_state, real, fake, i):
      k = jax.random.fold_in(jax.random.fold_in(self.key, 1), i)
      kr, kf = jax.random.split(k)
      x = jnp.concatenate([real[jax.random.randint(kr, (half,), 0, num_train)],
                           fake[jax.random.randint(kf, (half,), 0, num_train)]])
      y = jnp.concatenate([jnp.zeros((half,)), jnp.ones((half,))])

      def loss_fn(p):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(model.apply({"params": p}, x), y))

      grads = jax.grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    self._train_step = train_step
    self._logits = jax.jit(lambda params, x: model.apply({"params": params}, x))

  def score(self, fake_images) -> dict[str, float]:
    """{"two_sample_accuracy", "two_sample_low", "two_sample_high"}: held-out accuracy and its
    Wilson 95% interval (0.5 = indistinguishable)."""
    fake = _unit(fake_images)
    if fake.shape != self.real.shape:
      raise ValueError(f"two_sample: fake images {fake.shape} do not match the real set {self.real.shape}")
    t = self.num_test
    real_train, real_test = jnp.asarray(self.real[:-t]), self.real[-t:]
    fake_train, fake_test = jnp.asarray(fake[:-t]), fake[-t:]
    params = self.model.init(jax.random.fold_in(self.key, 0), jnp.zeros((1, *fake.shape[1:])))["params"]
    opt_state = self.tx.init(params)
    for i in range(self.steps):  # a Python loop: XLA:CPU runs convolutions in loop bodies slowly
      params, opt_state = self._train_step(params, opt_state, real_train, fake_train, i)
    correct = 0
    for images, label in ((real_test, 0), (fake_test, 1)):
      for s in range(0, t, 250):
        logits = np.asarray(self._logits(params, images[s:s + 250]))
        correct += int(np.sum((logits > 0) == bool(label)))
    low, high = wilson_interval(correct, 2 * t)
    return {"two_sample_accuracy": correct / (2 * t), "two_sample_low": low, "two_sample_high": high}
