"""A PyTorch twin of one SimGAN adversarial iteration, the yardstick for our speed.

Written from the paper's layer tables (/work/shared/SIMGAN.md "Networks") and the
config fields simgan_jax reads, not from our code: the refiner (conv k x k, ReLU,
ResNet blocks, conv 1x1, tanh), the local discriminator (a preset of
``simgan_jax.models.DISCRIMINATOR_PRESETS``, ReLU after every hidden conv, 2-way
logits per patch), zero SAME padding placed as XLA places it (asymmetric for
stride 2), losses summed over patches and pixels per image and averaged over the
batch, and the iteration of ``simgan_jax.training.adversarial_step``:

* Kg refiner updates, each on a fresh synthetic batch of b: adversarial loss plus
  lambda times the L1 self-regularisation; D's parameters get no gradient;
* Kd discriminator updates, each on b real + b/2 freshly refined + b/2 drawn from
  a history of refined images (the fresh half itself while it is empty); the
  history has one column per half-batch example, rows fill in order, then each
  column replaces one random row, so b/2 slots change per update (as
  ``simgan_jax.history``).

Images are drawn with replacement from in-memory uint8 pools (random pixels in the
benchmark) and scaled to [-1, 1] on the fly, like ``ArraySource``. Layout is
NCHW, float32, optimiser Adam or SGD from ``config.optimizer``. Not mirrored (a
clear error instead): discriminator batch norm, adaptive Kg, psi other than
identity. torch is a benchmark-only dependency (benchmarks/requirements.txt).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The eye and hand presets, (kind, kernel, stride, features), as in simgan_jax.models.
DISCRIMINATOR_PRESETS = {
    "eye": (("conv", 3, 2, 96), ("conv", 3, 2, 64), ("pool", 3, 1, 0), ("conv", 3, 1, 32), ("conv", 1, 1, 32)),
    "hand": (("conv", 7, 4, 96), ("conv", 5, 2, 64), ("pool", 3, 2, 0), ("conv", 3, 2, 32), ("conv", 1, 1, 32)),
}
REAL, REFINED = 0, 1


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """(before, after) padding of XLA/TensorFlow SAME: output ceil(size / stride)."""
  total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
  """Conv2d with SAME padding: zeros (or mirror, ``reflect``) on the XLA side split."""

  def __init__(self, cin, cout, kernel, stride=1, reflect=False):
    symmetric = stride == 1 and kernel % 2 == 1 and not reflect
    super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if symmetric else 0)
    self.pad_inside = not symmetric
    self.reflect = reflect

  def forward(self, x):
    if self.pad_inside:
      k, s = self.kernel_size[0], self.stride[0]
      (top, bottom), (left, right) = same_pads(x.shape[2], k, s), same_pads(x.shape[3], k, s)
      x = F.pad(x, (left, right, top, bottom), mode="reflect" if self.reflect else "constant")
    return super().forward(x)


class ResnetBlock(nn.Module):
  """conv, ReLU, conv, + skip, ReLU."""

  def __init__(self, features, kernel, reflect=False):
    super().__init__()
    self.conv1 = SameConv2d(features, features, kernel, reflect=reflect)
    self.conv2 = SameConv2d(features, features, kernel, reflect=reflect)

  def forward(self, x):
    return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class Refiner(nn.Module):
  """R: [B, C, H, W] in [-1, 1] -> refined images of the same shape."""

  def __init__(self, channels=1, features=64, num_blocks=4, kernel=3, output_activation="tanh", reflect=False):
    super().__init__()
    if output_activation not in ("tanh", "linear"):
      raise ValueError(f"config.refiner.output_activation: {output_activation!r} is not 'tanh' or 'linear'")
    self.conv_in = SameConv2d(channels, features, kernel, reflect=reflect)
    self.blocks = nn.ModuleList(ResnetBlock(features, kernel, reflect) for _ in range(num_blocks))
    self.conv_out = nn.Conv2d(features, channels, 1)
    self.tanh = output_activation == "tanh"

  def forward(self, images):
    x = F.relu(self.conv_in(images))
    for block in self.blocks:
      x = block(x)
    x = self.conv_out(x)
    return torch.tanh(x) if self.tanh else x

  def flax_paths(self) -> dict[tuple[str, ...], nn.Conv2d]:
    """Each conv under its path in our flax refiner's params."""
    paths = {("conv_in",): self.conv_in, ("conv_out",): self.conv_out}
    for i, block in enumerate(self.blocks):
      paths[(f"block{i}", "conv1")], paths[(f"block{i}", "conv2")] = block.conv1, block.conv2
    return paths


class LocalDiscriminator(nn.Module):
  """D: [B, C, H, W] -> per-patch logits [B, 2, h, w] (channel 0 real, 1 refined)."""

  def __init__(self, layers=DISCRIMINATOR_PRESETS["eye"], channels=1, width_multiplier=1.0):
    super().__init__()
    self.layers = tuple(layers)
    self.convs = nn.ModuleDict()
    cin = channels
    for i, (kind, kernel, stride, features) in enumerate(self.layers):
      if kind == "conv":
        width = max(1, int(round(features * width_multiplier)))
        self.convs[f"conv{i}"] = SameConv2d(cin, width, kernel, stride)
        cin = width
    self.logits = nn.Conv2d(cin, 2, 1)

  def forward(self, images):
    x = images
    for i, (kind, kernel, stride, _) in enumerate(self.layers):
      if kind == "pool":
        (top, bottom), (left, right) = same_pads(x.shape[2], kernel, stride), same_pads(x.shape[3], kernel, stride)
        x = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-math.inf), kernel, stride)
      else:
        x = F.relu(self.convs[f"conv{i}"](x))
    return self.logits(x)

  def flax_paths(self) -> dict[tuple[str, ...], nn.Conv2d]:
    return {**{(name,): conv for name, conv in self.convs.items()}, ("logits",): self.logits}


def make_refiner(config) -> Refiner:
  padding = config.refiner.get("padding", "SAME")
  if padding not in ("SAME", "REFLECT"):
    raise ValueError(f"config.refiner.padding: {padding!r} is not 'SAME' or 'REFLECT'")
  if config.refiner.get("grid_phase_period", 0):
    raise ValueError("config.refiner.grid_phase_period: the torch twin has no grid-phase input; set it to 0")
  if config.refiner.get("dropout_value") is not None:
    raise ValueError("config.refiner.dropout_value: the torch twin has no drop-out head; set it to None")
  return Refiner(config.channels, config.refiner.features, config.refiner.num_blocks, config.refiner.kernel_size,
                 config.refiner.output_activation, reflect=padding == "REFLECT")


def make_discriminator(config) -> LocalDiscriminator:
  if config.discriminator.batch_norm:
    raise ValueError("config.discriminator.batch_norm: the torch twin has no batch norm")
  preset = config.discriminator.preset
  if preset not in DISCRIMINATOR_PRESETS:
    raise ValueError(f"config.discriminator.preset: unknown {preset!r}; known: {', '.join(DISCRIMINATOR_PRESETS)}")
  return LocalDiscriminator(DISCRIMINATOR_PRESETS[preset], config.channels, config.discriminator.width_multiplier)


def copy_flax_params(module: Refiner | LocalDiscriminator, params) -> None:
  """Loads our flax params (kernels HWIO) into ``module`` (weights OIHW), in place."""
  with torch.no_grad():
    for path, conv in module.flax_paths().items():
      leaf = params
      for name in path:
        leaf = leaf[name]
      conv.weight.copy_(torch.from_numpy(np.asarray(leaf["kernel"]).transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(np.asarray(leaf["bias"]).copy()))


def _per_image(values, reduction: str):
  flat = values.flatten(1)
  if reduction == "sum":
    return flat.sum(1)
  if reduction == "mean":
    return flat.mean(1)
  raise ValueError(f"config.loss.reduction: {reduction!r} is not 'sum' or 'mean'")


def patch_cross_entropy(logits_B2hw, label: int, reduction: str = "sum"):
  """Mean over images of the per-image reduced 2-way cross-entropy of every patch."""
  labels = torch.full((logits_B2hw.shape[0], *logits_B2hw.shape[2:]), label, dtype=torch.long,
                      device=logits_B2hw.device)
  return _per_image(F.cross_entropy(logits_B2hw, labels, reduction="none"), reduction).mean()


def refiner_loss(refiner, discriminator, synthetic, weight: float, reduction: str = "sum"):
  """L_R = -sum log D_real(R(x)) + lambda * |R(x) - x|_1, averaged over the batch."""
  refined = refiner(synthetic)
  adversarial = patch_cross_entropy(discriminator(refined), REAL, reduction)
  return adversarial + weight * _per_image((refined - synthetic).abs(), reduction).mean()


def discriminator_loss(discriminator, real, fake, reduction: str = "sum"):
  """L_D on one pass over real and refined images together."""
  logits = discriminator(torch.cat([real, fake]))
  return (patch_cross_entropy(logits[len(real):], REFINED, reduction)
          + patch_cross_entropy(logits[:len(real)], REAL, reduction))


class History:
  """``rows x columns`` refined images; column c is only read and written by example c."""

  def __init__(self, history_size: int, half_batch: int, image_shape_CHW, device="cpu"):
    if half_batch <= 0 or history_size <= 0 or history_size % half_batch:
      raise ValueError(
          f"config.history_size: {history_size} must be a positive multiple of batch_size // 2 = {half_batch}")
    self.images = torch.zeros((history_size // half_batch, half_batch, *image_shape_CHW), device=device)
    self.filled_rows = 0
    self.columns = torch.arange(half_batch, device=device)

  def sample(self, fallback):
    if self.filled_rows == 0:
      return fallback
    rows = torch.randint(self.filled_rows, (len(self.columns),), device=self.images.device)
    return self.images[rows, self.columns]

  def push(self, new):
    num_rows = self.images.shape[0]
    if self.filled_rows < num_rows:
      self.images[self.filled_rows] = new
      self.filled_rows += 1
    else:
      rows = torch.randint(num_rows, (len(self.columns),), device=self.images.device)
      self.images[rows, self.columns] = new


def _optimizer(config, params):
  o = config.optimizer
  if tuple(o.lr_decay_steps):
    raise ValueError("config.optimizer.lr_decay_steps: the torch twin has no lr schedule")
  if o.name == "adam":
    return torch.optim.Adam(params, lr=o.learning_rate, betas=(o.b1, o.b2), eps=1e-8)  # optax's eps
  if o.name == "sgd":
    return torch.optim.SGD(params, lr=o.learning_rate, momentum=o.momentum or 0.0)
  raise ValueError(f"config.optimizer.name: unknown optimiser {o.name!r}; known: adam, sgd")


class TwinIteration:
  """The refiner, discriminator, optimisers, pools and history of one benchmark run.

  ``compile=True`` wraps the two loss functions (forward, loss and, through
  AOTAutograd, their backward) and the refiner's no-grad forward in
  ``torch.compile``; the optimiser steps stay eager.
  """

  def __init__(self, config, batch_size: int, synthetic_NHWC: np.ndarray, real_NHWC: np.ndarray,
               history_size: int | None = None, compile: bool = False, device: str = "cpu", seed: int = 0):
    if config.adaptive_kg:
      raise ValueError("config.adaptive_kg: the torch twin runs a fixed Kg")
    if config.loss.psi != "identity":
      raise ValueError(f"config.loss.psi: the torch twin has only 'identity', not {config.loss.psi!r}")
    if batch_size < 2 or batch_size % 2:
      raise ValueError(f"batch size {batch_size}: the twin needs an even batch of at least 2")
    torch.manual_seed(seed)
    self.device = torch.device(device)
    self.batch, self.half = batch_size, batch_size // 2
    self.kg, self.kd = config.kg, config.kd
    self.use_history = config.use_history
    self.weight, self.reduction = config.loss.self_regularization_weight, config.loss.reduction
    self.refiner = make_refiner(config).to(self.device)
    self.discriminator = make_discriminator(config).to(self.device)
    self.refiner_opt = _optimizer(config, self.refiner.parameters())
    self.discriminator_opt = _optimizer(config, self.discriminator.parameters())
    to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(self.device)  # noqa: E731
    self.synthetic, self.real = to_nchw(synthetic_NHWC), to_nchw(real_NHWC)
    self.history = History(config.history_size if history_size is None else history_size, self.half,
                           tuple(self.synthetic.shape[1:]), self.device)
    self._refiner_loss, self._discriminator_loss, self._refine = refiner_loss, discriminator_loss, self.refiner
    if compile:
      self._refiner_loss, self._discriminator_loss = torch.compile(refiner_loss), torch.compile(discriminator_loss)
      self._refine = torch.compile(self.refiner)

  def _draw(self, pool, n):
    images = pool[torch.randint(len(pool), (n,), device=self.device)]
    return images.float() * (2.0 / 255.0) - 1.0 if images.dtype == torch.uint8 else images.float()

  def refiner_update(self):
    self.discriminator.requires_grad_(False)  # gradients flow to R's parameters only
    loss = self._refiner_loss(self.refiner, self.discriminator, self._draw(self.synthetic, self.batch),
                              self.weight, self.reduction)
    self.refiner_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.refiner_opt.step()
    self.discriminator.requires_grad_(True)
    return loss

  def discriminator_update(self):
    real = self._draw(self.real, self.batch)
    with torch.no_grad():
      current = self._refine(self._draw(self.synthetic, self.half))
      if self.use_history:
        past = self.history.sample(current)
        self.history.push(current)
      else:
        past = self._refine(self._draw(self.synthetic, self.half))
    loss = self._discriminator_loss(self.discriminator, real, torch.cat([current, past]), self.reduction)
    self.discriminator_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.discriminator_opt.step()
    return loss

  def iteration(self):
    """Kg refiner updates, then Kd discriminator updates; returns the last two losses."""
    for _ in range(self.kg):
      r = self.refiner_update()
    for _ in range(self.kd):
      d = self.discriminator_update()
    return r, d

  def sync(self):
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  def time_window(self, seconds: float) -> float:
    """Seconds per iteration over at least 2 iterations and ``seconds``."""
    self.sync()
    iterations, start = 0, time.perf_counter()
    while iterations < 2 or time.perf_counter() - start < seconds:
      self.iteration()
      iterations += 1
    self.sync()
    return (time.perf_counter() - start) / iterations
