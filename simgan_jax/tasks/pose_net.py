"""The paper's hand pose estimator, a stacked hourglass (Newell et al. 2016), and its metrics.

SIMGAN.md "Downstream evaluation": 2 hourglass blocks, 64x64 heatmaps, 14 joints.
Newell et al.'s network: a stem (conv7x7/2, residual, maxpool/2, residuals) to a
quarter of the input, then hourglasses (recursive down/up-sampling with residual
modules and skip branches, nearest upsampling), each followed by a 1x1 head that
predicts the heatmaps; the heatmaps and features are mapped back and added to the
next hourglass's input (intermediate supervision: every stack's heatmaps are
trained). Our choices, each a field:

* the input is resized bilinearly to 4x the heatmap size (224 -> 256, Newell's
  input size) so the stem's 4x downsampling gives the paper's 64x64 heatmaps;
* group normalisation instead of batch norm (per example: no running
  statistics, and 1 or 8 devices compute the same function);
* targets: Gaussians (sigma 1 heatmap pixel) at each joint; loss (``heatmap_loss``,
  summed over stacks): ``"softmax"`` (the default), a cross-entropy between each
  joint's heatmap as a softmax over pixels and its Gaussian normalised to sum 1;
  or ``"mse"``, Newell's mean squared error against peak-1 Gaussians. With MSE the
  ``:cpu`` estimator did not learn in 300 steps: on 64 training images without
  augmentation its joint error stayed at 100 px of a 224 crop (the loss sat at that
  of an all-zero output), where the softmax loss reached 4.5 px; trained on
  ``handsim`` with augmentation, 14.1 px on ``handsim`` and 34.3 px on
  ``handsim_target:test``, against 37-40 px for always predicting the mean pose
  (2 Dec 2026, ``launch/train_pose.py --config=simgan_jax/configs/pose.py:cpu``).

Joint coordinates are (x, y) image pixels with pixel centres at integers (the NYU
builder's ``joints``). The metric, as in the paper's Table 4: the share of images
whose 14 joints are *all* within d pixels, d in pixels of a 224-pixel crop (errors
at other sizes are scaled by 224 / width so numbers compare across sizes), and
the mean joint error.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax import layers

NUM_JOINTS = 14
PAPER_WIDTH = 224  # errors are reported in pixels of a 224-pixel crop
WITHIN_THRESHOLDS_PX = tuple(range(21))


class Residual(nn.Module):
  """Newell's bottleneck residual module (norm, ReLU, conv1x1 F/2, 3x3 F/2, 1x1 F)."""

  features: int
  groups: int = 8
  conv_impl: str = "xla"  # layers.Conv's implementation
  dtype: Any = jnp.float32  # compute dtype of the convolutions

  @nn.compact
  def __call__(self, x):
    def norm_relu(y, name):
      groups = min(self.groups, y.shape[-1])
      while y.shape[-1] % groups:
        groups -= 1
      return nn.relu(nn.GroupNorm(num_groups=groups, dtype=self.dtype, name=name)(y))

    conv = lambda f, k, name: layers.Conv(f, k, impl=self.conv_impl, dtype=self.dtype, name=name)  # noqa: E731
    half = max(self.features // 2, 1)
    y = conv(half, 1, "conv1")(norm_relu(x, "norm1"))
    y = conv(half, 3, "conv2")(norm_relu(y, "norm2"))
    y = conv(self.features, 1, "conv3")(norm_relu(y, "norm3"))
    skip = x if x.shape[-1] == self.features else conv(self.features, 1, "skip")(x)
    return y + skip


class Hourglass(nn.Module):
  """One hourglass of ``depth`` levels: features [B, H, W, F] -> same shape."""

  features: int
  depth: int
  conv_impl: str = "xla"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    res = lambda name: Residual(self.features, conv_impl=self.conv_impl, dtype=self.dtype, name=name)  # noqa: E731
    upper = res("upper")(x)
    low = layers.max_pool(x, 2, 2, impl=self.conv_impl)
    low = res("down")(low)
    low = (Hourglass(self.features, self.depth - 1, self.conv_impl, self.dtype, name="inner")(low)
           if self.depth > 1 else res("bottom")(low))
    low = res("up")(low)
    b, h, w, f = low.shape
    low = jnp.broadcast_to(low[:, :, None, :, None], (b, h, 2, w, 2, f)).reshape(b, 2 * h, 2 * w, f)
    return upper + low


class StackedHourglass(nn.Module):
  """Depth image [B, H, W, 1] in [-1, 1] -> heatmaps per stack [S, B, Hm, Hm, J]."""

  num_stacks: int = 2
  features: int = 256
  depth: int = 4
  heatmap_size: int = 64
  num_joints: int = NUM_JOINTS
  conv_impl: str = "xla"  # layers.Conv: "xla", "matmul", "hybrid" or "native" (make_pose_estimator: auto)
  dtype: Any = jnp.float32  # compute dtype; the heatmaps are float32

  @nn.compact
  def __call__(self, images_BHWC):
    if self.heatmap_size % (2**self.depth):
      raise ValueError(f"StackedHourglass: heatmap_size {self.heatmap_size} is not divisible by "
                       f"2**depth = {2**self.depth}")
    b, _, _, c = images_BHWC.shape
    size = 4 * self.heatmap_size
    x = jax.image.resize(images_BHWC, (b, size, size, c), "bilinear")
    f = self.features
    impl, dtype = self.conv_impl, self.dtype
    conv = lambda n, k, name, stride=1: layers.Conv(n, k, stride, impl=impl, dtype=dtype, name=name)  # noqa: E731
    res = lambda n, name: Residual(n, conv_impl=impl, dtype=dtype, name=name)  # noqa: E731
    x = nn.relu(nn.GroupNorm(num_groups=min(8, f // 4 or 1), dtype=dtype, name="stem_norm")(
        conv(f // 4, 7, "stem_conv", 2)(x)))
    x = res(f // 2, "stem_res1")(x)
    x = layers.max_pool(x, 2, 2, impl=impl)
    x = res(f // 2, "stem_res2")(x)
    x = res(f, "stem_res3")(x)
    outputs = []
    for s in range(self.num_stacks):
      y = Hourglass(f, self.depth, impl, dtype, name=f"hourglass{s}")(x)
      y = res(f, f"post{s}")(y)
      y = nn.relu(conv(f, 1, f"features{s}")(y))
      heatmaps = conv(self.num_joints, 1, f"heatmaps{s}")(y)
      outputs.append(heatmaps.astype(jnp.float32))
      if s < self.num_stacks - 1:
        x = x + conv(f, 1, f"remap_features{s}")(y) + conv(f, 1, f"remap_heatmaps{s}")(heatmaps)
    return jnp.stack(outputs)


def make_pose_estimator(config) -> StackedHourglass:
  """The estimator a config's ``model`` section describes."""
  m = config.model
  return StackedHourglass(num_stacks=m.num_stacks, features=m.features, depth=m.depth,
                          heatmap_size=m.heatmap_size, num_joints=m.num_joints,
                          conv_impl=layers.resolve_impl(config.get("conv_impl", "auto")),
                          dtype=layers.resolve_dtype(config.get("compute_dtype", "float32")))


# ----------------------------------------------------------------------------- heatmaps


def to_heatmap_coords(joints_BJ2, image_width: int, heatmap_size: int):
  """Image pixel coordinates (centres at integers) -> heatmap pixel coordinates."""
  return (joints_BJ2 + 0.5) * (heatmap_size / image_width) - 0.5


def to_image_coords(points_BJ2, image_width: int, heatmap_size: int):
  return (points_BJ2 + 0.5) * (image_width / heatmap_size) - 0.5


def heatmap_targets(joints_BJ2, heatmap_size: int, sigma: float = 1.0):
  """Gaussians [B, Hm, Hm, J] (peak 1) at heatmap coordinates ``joints_BJ2``."""
  grid = jnp.arange(heatmap_size, dtype=jnp.float32)
  dx = grid[None, None, :] - joints_BJ2[..., 0:1]  # [B, J, W]
  dy = grid[None, None, :] - joints_BJ2[..., 1:2]  # [B, J, H]
  g = jnp.exp(-(dy[..., :, None]**2 + dx[..., None, :]**2) / (2 * sigma**2))  # [B, J, H, W]
  return jnp.transpose(g, (0, 2, 3, 1))


def decode_heatmaps(heatmaps_BHWJ):
  """Argmax of each heatmap, moved a quarter pixel towards the larger neighbour
  (Newell et al.): heatmap coordinates [B, J, 2] as (x, y)."""
  b, h, w, j = heatmaps_BHWJ.shape
  flat = jnp.transpose(heatmaps_BHWJ, (0, 3, 1, 2)).reshape(b, j, h * w)
  index = jnp.argmax(flat, -1)
  y, x = index // w, index % w
  maps = flat.reshape(b, j, h, w)

  def at(yy, xx):
    yy, xx = jnp.clip(yy, 0, h - 1), jnp.clip(xx, 0, w - 1)
    return jnp.take_along_axis(maps.reshape(b, j, h * w), (yy * w + xx)[..., None], -1)[..., 0]

  sx = jnp.sign(at(y, x + 1) - at(y, x - 1))
  sy = jnp.sign(at(y + 1, x) - at(y - 1, x))
  return jnp.stack([x + 0.25 * sx, y + 0.25 * sy], -1).astype(jnp.float32)


HEATMAP_LOSSES = ("softmax", "mse")


def heatmap_loss(pred_SBHWJ, target_BHWJ, kind: str = "softmax"):
  """Per stack, summed over stacks: ``"softmax"``, the cross-entropy of each joint's
  heatmap as a softmax over its pixels against the target Gaussian normalised to
  sum 1 (mean over images and joints); ``"mse"``, the mean squared error against
  the peak-1 targets (Newell et al.). Module docstring: why softmax is the default."""
  if kind == "mse":
    return jnp.sum(jnp.mean(jnp.square(pred_SBHWJ - target_BHWJ[None]), axis=(1, 2, 3, 4)))
  if kind != "softmax":
    raise ValueError(f"config.heatmap_loss: {kind!r} is not one of {', '.join(HEATMAP_LOSSES)}")
  s, b, h, w, j = pred_SBHWJ.shape
  logits = jnp.transpose(pred_SBHWJ, (0, 1, 4, 2, 3)).reshape(s, b, j, h * w).astype(jnp.float32)
  target = jnp.transpose(target_BHWJ, (0, 3, 1, 2)).reshape(1, b, j, h * w)
  target = target / jnp.maximum(jnp.sum(target, -1, keepdims=True), 1e-12)
  return jnp.sum(jnp.mean(-jnp.sum(target * jax.nn.log_softmax(logits, -1), -1), axis=(1, 2)))


# ----------------------------------------------------------------------------- augmentation


def augment(key, image_HWC, joints_J2, max_rotation_deg: float = 20.0, scale=(0.9, 1.1),
            max_shift: float = 0.05):
  """Random rotation within +-max_rotation_deg about the centre, scaling and shift
  (the "crop augmentation"), nearest-neighbour resampling so depth is not blended
  across the silhouette; outside the image is background (+1)."""
  h, w, _ = image_HWC.shape
  k1, k2, k3 = jax.random.split(key, 3)
  angle = jnp.radians(max_rotation_deg) * jax.random.uniform(k1, minval=-1.0, maxval=1.0)
  s = jax.random.uniform(k2, minval=scale[0], maxval=scale[1])
  shift = max_shift * jnp.array([w, h]) * jax.random.uniform(k3, (2,), minval=-1.0, maxval=1.0)
  c, sn = jnp.cos(angle), jnp.sin(angle)
  a = s * jnp.array([[c, -sn], [sn, c]])  # output = a @ (input - centre) + centre + shift
  centre = jnp.array([(w - 1) / 2, (h - 1) / 2])
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  out = jnp.stack([xx, yy], -1) - centre - shift
  src = out @ jnp.linalg.inv(a).T + centre  # [H, W, 2] as (x, y)
  sx, sy = jnp.round(src[..., 0]), jnp.round(src[..., 1])
  inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
  picked = image_HWC[jnp.clip(sy, 0, h - 1).astype(jnp.int32), jnp.clip(sx, 0, w - 1).astype(jnp.int32)]
  image = jnp.where(inside[..., None], picked, 1.0)
  return image, (joints_J2 - centre) @ a.T + centre + shift


# ----------------------------------------------------------------------------- metrics


def joint_errors_px(pred_NJ2, true_NJ2, image_width: int):
  """Euclidean error per joint [N, J] in pixels of a 224-pixel crop."""
  err = np.linalg.norm(np.asarray(pred_NJ2, np.float64) - np.asarray(true_NJ2, np.float64), axis=-1)
  return err * (PAPER_WIDTH / image_width)


def within_curve(errors_NJ, thresholds=WITHIN_THRESHOLDS_PX) -> dict[float, float]:
  """Share of images whose joints are *all* within d pixels, for each threshold d."""
  worst = np.max(np.asarray(errors_NJ), axis=-1)
  return {d: float(np.mean(worst <= d)) for d in thresholds}
