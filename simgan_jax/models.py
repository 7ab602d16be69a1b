"""Refiner and local discriminator (SIMGAN.md "Networks").

Both are flax.linen modules used through pure ``init``/``apply``. Presets give the
paper's eye (35x55) and hand (224x224) architectures; every width, kernel and
block count is a field so other image sizes and channel counts work too.
Convolutions are ``layers.Conv`` (``flax.linen.Conv``'s parameters, an
implementation chosen by ``config.conv_impl`` and a compute dtype from
``config.compute_dtype``); outputs are float32 whatever the compute dtype.

Refiner padding: zero ("SAME") or mirror ("REFLECT"). Zero padding lets the
refiner tell where the image border is, which a local discriminator then sees
as frame artefacts.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from simgan_jax import layers


class ResnetBlock(nn.Module):
  """conv k x k, ReLU, conv k x k, + skip, ReLU (the paper's ResNet block)."""

  features: int
  kernel_size: int
  padding: str = "SAME"
  conv_impl: str = "matmul"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda name: layers.Conv(self.features, self.kernel_size, padding=self.padding,  # noqa: E731
                                    impl=self.conv_impl, dtype=self.dtype, relu=True, name=name)
    # relu(conv2(relu(conv1(x))) + x), the ReLUs and the skip inside the convolutions.
    return conv("conv2")(conv("conv1")(x), residual=x)


# "tanh" (our default), "linear" (the paper's text) or "residual": input + a zero-initialised
# change, clipped to [-1, 1] (R is the identity before any training step); "identity": the
# input unchanged, no ResNet trunk (only with a drop-out head: R then only drops pixels).
OUTPUT_ACTIVATIONS = ("tanh", "linear", "residual", "identity")


class Refiner(nn.Module):
  """R: synthetic image -> refined image of the same shape; no normalisation."""

  channels: int = 1
  features: int = 64
  num_blocks: int = 4
  kernel_size: int = 3
  output_activation: str = "tanh"
  padding: str = "SAME"
  conv_impl: str = "matmul"
  dtype: Any = jnp.float32
  # Extra input channels of standard normal noise (0: the paper's deterministic R).
  noise_channels: int = 0
  # Drop-out head (not in the paper; None = off): R also outputs a per-pixel probability
  # p of "no measurement" and sets each pixel to this value where a uniform draw u < p
  # (a depth sensor's missing pixels, 1.0 in the hand images). The drop is binary in
  # the forward pass, so D sees only states a sensor makes; p learns by the
  # straight-through gradient (drop_value - value) * dp. p starts at sigmoid(-5) = 0.7%.
  dropout_value: float | None = None
  # Grid-phase input (not in the paper; 0 = off): sin and cos of 2 pi y / P and 2 pi x / P
  # as 4 more input channels, so a translation-equivariant R can draw artefacts locked
  # to a P-pixel grid, e.g. the 8x8 blocks of JPEG-compressed real images (with the
  # eye target's blocks switched off, the final two-sample test scores the perfect
  # refiner 97% instead of 63%: docs/diagnosis_eye_realism.md).
  grid_phase_period: int = 0
  # The drop-out head's view (0: the trunk's features, as above). K > 0: the head reads
  # only a K x K neighbourhood of the input image (DROP_HEAD_FEATURES ReLU features, then
  # a 1x1 logit), so p can depend on local depth and slope, where a sensor drops pixels,
  # and cannot draw structure from the rest of the scene.
  dropout_head_kernel: int = 0
  # The drop-out head as a function of the input's local slope alone (not in the paper;
  # False = off): logit = w . (|dy|, |dx|, gradient magnitude, value) + b (SlopeDropHead,
  # 5 parameters), so p can rise on steep surfaces and along silhouettes, where a
  # structured-light sensor loses depth, and can follow nothing else.
  dropout_slope_head: bool = False
  # How the drop-out head's probabilities learn (not in the paper): "straight_through"
  # (above) or "score_function": the same binary drop in the forward pass, no
  # straight-through gradient, and training.py adds a local score-function (REINFORCE)
  # estimate instead: each pixel's drop decision is credited with how much the drops
  # changed the adversarial loss of D's patches around it and the self-regularisation of
  # its patch-sized cell (each with drops minus the same image without them, which no
  # decision depends on; training._drop_head_surrogate). The
  # straight-through gradient asks whether a slightly larger depth would look more real,
  # not whether a missing pixel would: on hands it learnt dense speckle over the whole
  # hand (docs/ablations.md), where the target drops silhouettes and steep surfaces.
  dropout_gradient: str = "straight_through"
  # Block quantiser (not in the paper; 0 = off): the trunk's output passes through a
  # learned JPEG-like stage on the absolute B x B grid (BlockQuantizer): the DCT of each
  # block, each of the B*B coefficients rounded to a learned step, the inverse DCT. Real
  # cameras compress so (with the eye target's blocking off, the final two-sample test
  # scores the perfect refiner 97% instead of 63%); a convolutional R cannot place blocks.
  block_quantizer: int = 0
  # Smooth noise inputs (not in the paper; () = off): one more input channel per entry c,
  # standard normal values on a grid of c cells along the height (and as many as keep
  # the cells square along the width), smoothly upsampled to the image (smooth_noise);
  # c = 1 is one value per image. The target's light, contrast and brightness vary from
  # image to image and over tens of pixels, independently of the scene: a refiner whose
  # only randomness is per-pixel noise, seen through a receptive field of ~19 px, has
  # nothing to draw them from.
  smooth_noise_cells: tuple[int, ...] = ()
  # JPEG stage (not in the paper; False = off): the trunk's output through JpegQuantizer,
  # the standard luminance table times a quality scale drawn per image (learned mean and
  # spread over images; one more noise channel carries each image's draw).
  jpeg_quantizer: bool = False
  # Light stage (not in the paper; False = off): before any JPEG stage, R's output gets a
  # random light and tone per image (LightStage: a smooth gain field, gamma, contrast and
  # brightness, each a fixed random draw times a learned magnitude; 5 more noise channels).
  light_stage: bool = False
  # Sensor stage (not in the paper; False = off): after any light stage and before any JPEG
  # stage, a Gaussian blur of random width and signal-dependent sensor noise per image,
  # with learned magnitudes (SensorStage; SENSOR_NOISE_CHANNELS more noise channels).
  sensor_stage: bool = False
  # The light stage also learns a mean tone (LightStage.tone); needs light_stage.
  light_stage_tone: bool = False
  # The light stage's learned mean exposure (LightStage.exposure).
  light_stage_exposure: bool = False
  # Skip the trunk (residual output only): R is the camera stages on the input, the trunk's
  # parameters unused (zero gradients). train.py runs such a clone of R until
  # config.refiner.trunk_start_step; with the change's last layer zero-initialised it
  # refines exactly as the full R does while the trunk is untrained.
  trunk_frozen: bool = False

  @nn.compact
  def __call__(self, images_BHWC, noise_BHWN=None):
    if self.output_activation not in OUTPUT_ACTIVATIONS:
      raise ValueError(f"config.refiner.output_activation: {self.output_activation!r} is not one of "
                       f"{', '.join(map(repr, OUTPUT_ACTIVATIONS))}")
    inputs_BHWC = images_BHWC
    if self.dropout_gradient not in DROPOUT_GRADIENTS:
      raise ValueError(f"config.refiner.dropout_gradient: {self.dropout_gradient!r} is not one of "
                       f"{', '.join(map(repr, DROPOUT_GRADIENTS))}")
    if self.padding not in ("SAME", "REFLECT"):
      raise ValueError(f"config.refiner.padding: {self.padding!r} is not 'SAME' or 'REFLECT'")
    num_noise = noise_input_channels(self)
    if num_noise:
      if noise_BHWN is None or noise_BHWN.shape != (*images_BHWC.shape[:3], num_noise):
        drop = "" if self.dropout_value is None else f" with dropout_value={self.dropout_value} (+1 uniform channel)"
        more = f" and smooth_noise_cells={self.smooth_noise_cells}" if self.smooth_noise_cells else ""
        more += " and jpeg_quantizer=True (+1 channel)" if self.jpeg_quantizer else ""
        more += f" and light_stage=True (+{LIGHT_NOISE_CHANNELS} channels)" if self.light_stage else ""
        more += f" and sensor_stage=True (+{SENSOR_NOISE_CHANNELS} channels)" if self.sensor_stage else ""
        raise ValueError(f"Refiner: noise_channels={self.noise_channels}{more}{drop} needs noise of shape "
                         f"{(*images_BHWC.shape[:3], num_noise)} (see refiner_noise), "
                         f"got {None if noise_BHWN is None else noise_BHWN.shape}")
    slices = noise_slices(self)
    if self.trunk_frozen:  # the trunk's zero-initialised change, untrained: the input itself
      check_frozen_trunk(self.output_activation, self.dropout_value, self.block_quantizer)
      out, features = inputs_BHWC.astype(jnp.float32), None
    elif self.output_activation == "identity":  # no trunk: R only drops pixels and/or runs camera stages
      check_identity_output(self.output_activation, self.dropout_value,
                            self.dropout_head_kernel or self.dropout_slope_head, has_camera_stages(self))
      out, features = inputs_BHWC.astype(jnp.float32), None
    else:
      if slices["trunk"].stop:  # normal, then smooth channels (refiner_noise's layout)
        normal = noise_BHWN[..., slices["trunk"]]
        images_BHWC = jnp.concatenate([images_BHWC, normal.astype(images_BHWC.dtype)], axis=-1)
      if self.grid_phase_period:
        phase = grid_phase(images_BHWC.shape[1:3], self.grid_phase_period)
        phase = jnp.broadcast_to(phase, (images_BHWC.shape[0], *phase.shape)).astype(images_BHWC.dtype)
        images_BHWC = jnp.concatenate([images_BHWC, phase], axis=-1)
      x = layers.Conv(self.features, self.kernel_size, padding=self.padding, impl=self.conv_impl,
                      dtype=self.dtype, relu=True, name="conv_in")(images_BHWC)
      for i in range(self.num_blocks):
        x = ResnetBlock(self.features, self.kernel_size, self.padding, self.conv_impl, self.dtype,
                        name=f"block{i}")(x)
      residual = self.output_activation == "residual"
      features = x
      x = layers.Conv(self.channels, 1, impl=self.conv_impl, dtype=self.dtype, zero_init=residual,
                      name="conv_out")(features).astype(jnp.float32)
      if residual:  # not in the paper: R starts as the identity and learns a change, clipped to [-1, 1]
        out = jnp.clip(inputs_BHWC.astype(jnp.float32) + x, -1.0, 1.0)
      elif self.output_activation == "tanh":  # our choice (SIMGAN.md): the input's [-1, 1] range
        out = jnp.tanh(x)
      else:
        out = x
      if self.block_quantizer:
        out = BlockQuantizer(self.block_quantizer, name="block_quantizer")(out)
    # The camera stages follow the trunk, or the input itself with the identity output (a
    # camera-only refiner: a few learned magnitudes, no trunk).
    if has_camera_stages(self):  # the self-regularisation reads this (training._refine_both)
      self.sow("intermediates", "before_camera", out)
    if self.light_stage:
      out = LightStage(tone=self.light_stage_tone, exposure=self.light_stage_exposure,
                       name="light_stage")(out, noise_BHWN[..., slices["light"]])
    if self.sensor_stage:
      out = SensorStage(name="sensor_stage")(out, noise_BHWN[..., slices["sensor"]])
    if self.jpeg_quantizer:
      out = JpegQuantizer(name="jpeg_quantizer")(out, noise_BHWN[:, 0, 0, slices["jpeg"].start])
    if self.dropout_value is None:
      return out
    if self.dropout_slope_head:
      logit = SlopeDropHead(name="drop_head")(inputs_BHWC)
    elif self.dropout_head_kernel:
      logit = LocalDropHead(self.dropout_head_kernel, self.padding, self.conv_impl, self.dtype,
                            name="drop_head")(inputs_BHWC)
    else:
      logit = layers.Conv(1, 1, impl=self.conv_impl, dtype=self.dtype, zero_init=True,
                          name="conv_drop")(features).astype(jnp.float32) + DROP_LOGIT_INIT
    uniform = noise_BHWN[..., -1:]
    if self.dropout_gradient == "score_function":  # training.py reads these (_refine_both)
      hard = uniform < jax.nn.sigmoid(logit)
      self.sow("intermediates", "before_drop", out)
      self.sow("intermediates", "drop_log_density",
               jnp.where(hard, jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit))[..., 0])
      return jnp.where(hard, jnp.asarray(self.dropout_value, out.dtype), out)
    return drop_pixels(out, jax.nn.sigmoid(logit), uniform, self.dropout_value)


class LocalDropHead(nn.Module):
  """The drop-out logit [B, H, W, 1] from a ``kernel_size``-square neighbourhood of the
  input image alone: DROP_HEAD_FEATURES ReLU features, then a zero-initialised 1x1 layer
  (+ DROP_LOGIT_INIT)."""

  kernel_size: int
  padding: str = "SAME"
  conv_impl: str = "matmul"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images_BHWC):
    h = layers.Conv(DROP_HEAD_FEATURES, self.kernel_size, padding=self.padding, impl=self.conv_impl,
                    dtype=self.dtype, relu=True, name="hidden")(images_BHWC)
    return layers.Conv(1, 1, impl=self.conv_impl, dtype=self.dtype, zero_init=True,
                       name="logit")(h).astype(jnp.float32) + DROP_LOGIT_INIT


class BlockQuantizer(nn.Module):
  """A learned JPEG-like stage [B, H, W, C] -> same: the image is edge-padded to whole
  ``block`` x ``block`` blocks on the absolute grid (from the top left, as a camera's
  encoder), each block's orthonormal 2-D DCT coefficient k is rounded to a multiple of
  its step q_k, and the inverse DCT is cropped back and clipped to [-1, 1].

  q_k = exp(BLOCK_LOG_STEP_INIT + BLOCK_LOG_STEP_RATE * p_k), p_k a parameter
  (``log_step``, zero-initialised). Rounding passes gradients straight through (the
  stage is the identity map for the image's gradient, since the DCT is orthonormal) and
  q learns by the learned-step-size rule (Esser et al. 2020): d out / d q = round(c / q)
  - c / q per coefficient. BLOCK_LOG_STEP_RATE scales Adam's step on p so that q can
  move 50x within a :cpu schedule.

  q starts at 0.05 (mild blocking: about half the eye target's DC step, 0.09, and a
  tenth of its high-frequency ones), not near zero: started at 0.002 (a rounding error
  below a grey level) on eyes it only shrank, to 0.001 by step 1200 of a :cpu run, as
  the rounding error of a tiny step is noise and gives q no direction to grow.
  """

  block: int = 8

  @nn.compact
  def __call__(self, images_BHWC):
    n = self.block
    b, h, w, c = images_BHWC.shape
    p = self.param("log_step", nn.initializers.zeros, (n * n,), jnp.float32)
    return quantize_blocks(images_BHWC, jnp.exp(BLOCK_LOG_STEP_INIT + BLOCK_LOG_STEP_RATE * p), n)


def quantize_blocks(images_BHWC, q, n: int = 8, level_shift: float = 0.0):
  """Each n x n block (edge-padded, absolute grid) of each image through the orthonormal
  2-D DCT, coefficient k rounded to a multiple of q[..., k], the inverse DCT, clipped to
  [-1, 1]. q: [n*n] (one table) or [B, 1, 1, 1, n*n] (one per image). ``level_shift`` is
  subtracted before the DCT and added back after (JPEG's: 128 of 0-255 is 1/255 here).
  Rounding is straight-through for the image; a q that carries gradients gets the
  learned-step-size gradient round(c/q) - c/q (BlockQuantizer; JpegQuantizer stops it)."""
  b, h, w, c = images_BHWC.shape
  ph, pw = -h % n, -w % n
  v = jnp.pad(images_BHWC.astype(jnp.float32), ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
  nh, nw = (h + ph) // n, (w + pw) // n
  # [B, nh, nw, C, n*n] blocks, then coefficients through the [n*n, n*n] 2-D DCT.
  blocks = v.reshape(b, nh, n, nw, n, c).transpose(0, 1, 3, 5, 2, 4).reshape(b, nh, nw, c, n * n)
  dct2 = block_dct_matrix(n)
  r = ((blocks - level_shift) @ dct2.T) / q
  r = r + jax.lax.stop_gradient(jnp.round(r) - r)
  v = ((r * q) @ dct2 + level_shift).reshape(b, nh, nw, c, n, n).transpose(0, 1, 4, 2, 5, 3)
  return jnp.clip(v.reshape(b, h + ph, w + pw, c)[:, :h, :w], -1.0, 1.0)


# JPEG's standard luminance quantisation table (ITU-T T.81 Annex K, Table K.1; quality 50),
# in grey levels of 0-255 images.
JPEG_LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56), (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99))


class JpegQuantizer(nn.Module):
  """A JPEG stage with the standard luminance table [B, H, W, C] -> same: 8x8 blocks on the
  absolute grid, coefficient k rounded to q_k = table_k * 2/255 * s (the table in [-1, 1]
  units) with a quality scale s drawn per image, log s = mu + sigma * z, z the image's
  standard normal draw (``z_B``), mu and sigma learned (``log_scale``, ``log_spread``, each
  used times JPEG_LOG_RATE). One shape of table, as real cameras' encoders use,
  instead of BlockQuantizer's 64 free steps (which learned large mid-frequency steps and
  a tiny DC one). s starts at JPEG_SCALE_INIT (quality ~75), sigma at JPEG_SPREAD_INIT.
  Blocks are level-shifted by JPEG's 128 grey levels before the DCT.

  mu and sigma learn by the score function, not through the rounding: the stage sows each
  image's log density of its log s ("jpeg_log_density"), and the train step adds
  losses.score_function_surrogate of the per-image adversarial losses (training.py). The
  learned-step-size gradient (BlockQuantizer's) keeps pushing q once every AC coefficient
  of a block rounds to zero, where a larger step changes nothing: on eyes :cpu it drove
  s from 0.5 to 1,879 (every block flat) in 1,700 steps. The score function sees only
  what the rounding really does to D's verdict."""

  @nn.compact
  def __call__(self, images_BHWC, z_B):
    mu = math.log(JPEG_SCALE_INIT) + JPEG_LOG_RATE * self.param("log_scale", nn.initializers.zeros, (), jnp.float32)
    sigma = jnp.exp(math.log(JPEG_SPREAD_INIT)
                    + JPEG_LOG_RATE * self.param("log_spread", nn.initializers.zeros, (), jnp.float32))
    log_s = jax.lax.stop_gradient(mu + sigma * z_B)
    self.sow("intermediates", "jpeg_log_density", -0.5 * ((log_s - mu) / sigma)**2 - jnp.log(sigma))
    table = jnp.asarray(JPEG_LUMINANCE_TABLE, jnp.float32).reshape(64) * (2.0 / 255.0)
    return quantize_blocks(images_BHWC, table * jnp.exp(log_s)[:, None, None, None, None], 8,
                           level_shift=1.0 / 255.0)


JPEG_SCALE_INIT = 0.5  # the JPEG stage's quality scale at initialisation (1.0: quality 50)
JPEG_SPREAD_INIT = 0.2  # the std of its log over images at initialisation
# Its log-scale and log-spread move this much per unit of their parameters. At 10 (as
# BlockQuantizer's) the eye :cpu run's D pushed the scale from 0.5 to 3.8 in 200
# adversarial steps and 10.7 by 400 (quality ~5, pupils wiped out) before it could adapt.
JPEG_LOG_RATE = 2.0




BLOCK_LOG_STEP_INIT = math.log(0.05)  # the block quantiser's step at initialisation ([-1, 1] images)
BLOCK_LOG_STEP_RATE = 10.0  # its log-step moves this much per unit of the parameter


def block_dct_matrix(n: int) -> jax.Array:
  """[n*n, n*n]: the orthonormal 2-D DCT-II of a row-major n x n block as one matrix."""
  k = jnp.arange(n, dtype=jnp.float32)
  d = jnp.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / (2 * n)) * math.sqrt(2.0 / n)
  d = d.at[0].set(d[0] / math.sqrt(2.0))
  return jnp.kron(d, d)


def slope_features(images_BHWC):
  """[B, H, W, 4]: |d/dy|, |d/dx| (central differences, edges continued), the gradient
  magnitude, and the value itself, of the first channel."""
  x = images_BHWC[..., :1].astype(jnp.float32)
  p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  dy = (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]) / 2
  dx = (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) / 2
  return jnp.concatenate([jnp.abs(dy), jnp.abs(dx), jnp.sqrt(dy * dy + dx * dx + 1e-12), x], axis=-1)


class SlopeDropHead(nn.Module):
  """The drop-out logit [B, H, W, 1] as one zero-initialised linear function of
  ``slope_features`` (+ DROP_LOGIT_INIT): 5 parameters, each used times
  SLOPE_HEAD_RATE. Depth slopes are ~0.05 per pixel in [-1, 1] images, so a logit that
  follows them needs weights near 100; Adam moves a parameter by about its learning
  rate per update (2e-4), so unscaled they could not get there in a :cpu schedule."""

  @nn.compact
  def __call__(self, images_BHWC):
    f = slope_features(images_BHWC)
    w = self.param("kernel", nn.initializers.zeros, (f.shape[-1], 1), jnp.float32)
    b = self.param("bias", nn.initializers.zeros, (1,), jnp.float32)
    return SLOPE_HEAD_RATE * (f @ w + b) + DROP_LOGIT_INIT


SLOPE_HEAD_RATE = 100.0  # SlopeDropHead's parameters are used times this


DROP_LOGIT_INIT = -5.0  # the drop-out head's logit at initialisation: p = 0.7%
DROP_HEAD_FEATURES = 16  # hidden features of the local drop-out head (dropout_head_kernel > 0)


def check_identity_output(output_activation: str, dropout_value, local_head, camera_stages: bool = False) -> None:
  """The identity output changes nothing without a local drop-out head (``local_head``:
  dropout_head_kernel > 0 or dropout_slope_head) or a camera stage (``camera_stages``:
  light_stage, sensor_stage or jpeg_quantizer): one message for the network and
  train.validate_config."""
  if output_activation != "identity":
    return
  if dropout_value is not None and not local_head:
    raise ValueError("config.refiner.output_activation: 'identity' has no trunk for the 1x1 drop-out head to "
                     "read; set refiner.dropout_head_kernel > 0 or dropout_slope_head")
  if not camera_stages and dropout_value is None:
    raise ValueError("config.refiner.output_activation: 'identity' changes nothing without a local drop-out "
                     "head (refiner.dropout_value, and refiner.dropout_head_kernel > 0 or dropout_slope_head) "
                     "or a camera stage (refiner.light_stage, sensor_stage, jpeg_quantizer)")


def check_frozen_trunk(output_activation: str, dropout_value, block_quantizer) -> None:
  """A trunk skipped before config.refiner.trunk_start_step must be what the untrained trunk
  is, the identity: only the residual output (zero-initialised change) without a drop-out
  head or block quantiser is. One message for the network and train.validate_config."""
  if output_activation != "residual" or dropout_value is not None or block_quantizer:
    raise ValueError("config.refiner.trunk_start_step: a frozen trunk must be the identity, which only the "
                     "residual output (zero-initialised change) without a drop-out head or block quantiser is; "
                     f"got output_activation={output_activation!r}")


def drop_pixels(values, p, uniform, drop_value: float):
  """``values`` [B, H, W, C] with each pixel set to ``drop_value`` where ``uniform`` < ``p``
  ([B, H, W, 1] each; all channels of a pixel drop together). Forward: exactly that
  binary choice. Backward (straight-through): d out / d p = drop_value - value, and
  a dropped pixel passes no gradient to its value."""
  hard = (uniform < p).astype(values.dtype)
  m = hard + (p - jax.lax.stop_gradient(p))  # == hard in the forward pass, exactly
  return values * (1.0 - m) + drop_value * m


def grid_phase(image_hw, period: int) -> jax.Array:
  """[H, W, 4]: sin, cos of 2 pi y / period and of 2 pi x / period (pixel (0, 0) at phase 0)."""
  y = 2 * jnp.pi * jnp.arange(image_hw[0], dtype=jnp.float32) / period
  x = 2 * jnp.pi * jnp.arange(image_hw[1], dtype=jnp.float32) / period
  yy, xx = jnp.meshgrid(y, x, indexing="ij")
  return jnp.stack([jnp.sin(yy), jnp.cos(yy), jnp.sin(xx), jnp.cos(xx)], axis=-1)


def noise_input_channels(refiner: "Refiner") -> int:
  """Channels of the refiner's noise input: its normal ones, its smooth ones, + 1 per-image
  normal for the JPEG stage, + LIGHT_NOISE_CHANNELS for the light stage, +
  SENSOR_NOISE_CHANNELS for the sensor stage, + 1 uniform for the drop-out head."""
  return noise_slices(refiner)["drop"].stop


DROPOUT_GRADIENTS = ("straight_through", "score_function")


def sows_intermediates(refiner: "Refiner") -> bool:
  """Whether R's training apply must collect what it sows: camera stages
  (has_camera_stages) or a drop-out head that learns by the score function."""
  return has_camera_stages(refiner) or (refiner.dropout_value is not None
                                        and refiner.dropout_gradient == "score_function")


def has_camera_stages(refiner: "Refiner") -> bool:
  """Whether R ends in label-free camera stages (light_stage, sensor_stage, jpeg_quantizer): then the
  self-regularisation compares the trunk's output, before them, with the input (the
  stages' random light and compression carry no label, and an L1 on them would only
  teach their magnitudes to shrink: a JPEG stage's quality scale fell from 0.5 to 0.07
  in 800 steps of an eye :cpu run with self-regularisation after it)."""
  return any(getattr(refiner, field) for field in CAMERA_STAGE_FIELDS)


# The refiner fields (config.refiner and Refiner alike) that switch on a camera stage.
CAMERA_STAGE_FIELDS = ("light_stage", "sensor_stage", "jpeg_quantizer")


def noise_slices(refiner: "Refiner") -> dict[str, slice]:
  """Where each part of the refiner's noise input lies along its channel axis: "trunk"
  (normal, then smooth channels: the trunk's extra inputs), "jpeg", "light", "sensor",
  "drop" (each empty when off), in refiner_noise's order."""
  sizes = (("trunk", refiner.noise_channels + len(refiner.smooth_noise_cells)),
           ("jpeg", int(refiner.jpeg_quantizer)), ("light", LIGHT_NOISE_CHANNELS * refiner.light_stage),
           ("sensor", SENSOR_NOISE_CHANNELS * refiner.sensor_stage),
           ("drop", int(refiner.dropout_value is not None)))
  out, start = {}, 0
  for name, size in sizes:
    out[name] = slice(start, start + size)
    start += size
  return out


# (kind, kernel, stride, features); "pool" rows are max pooling with no features.
DISCRIMINATOR_PRESETS = {
    "eye": (
        ("conv", 3, 2, 96),
        ("conv", 3, 2, 64),
        ("pool", 3, 1, 0),
        ("conv", 3, 1, 32),
        ("conv", 1, 1, 32),
    ),
    "hand": (
        ("conv", 7, 4, 96),
        ("conv", 5, 2, 64),
        ("pool", 3, 2, 0),
        ("conv", 3, 2, 32),
        ("conv", 1, 1, 32),
    ),
    # Not in the paper: 9x9-pixel patches every 2 pixels (the eye preset's are 23 px every
    # 4). D can judge local texture (edges, drop-outs, noise) but not scene structure
    # (a forearm or clutter behind the hand), which a refiner cannot add without
    # drawing phantom surfaces.
    "patch9": (
        ("conv", 3, 1, 32),
        ("conv", 3, 2, 64),
        ("conv", 3, 1, 64),
        ("conv", 1, 1, 32),
    ),
}


def receptive_field(rows) -> tuple[int, int]:
  """(receptive field in pixels, total stride) of a discriminator preset's rows."""
  field, stride = 1, 1
  for _, kernel, step, _ in rows:
    field += (kernel - 1) * stride
    stride *= step
  return field, stride


def patch_radius(discriminator) -> int:
  """How many output cells a pixel's influence reaches from its own cell: half D's
  receptive field in strides (eye preset: 23 px every 4 -> 2); 0 for a D without
  preset rows."""
  rows = getattr(discriminator, "layers", None)
  if not rows:
    return 0
  field, stride = receptive_field(rows)
  return int((field / 2) // stride)


class LocalDiscriminator(nn.Module):
  """D: image -> per-patch 2-way logits [B, h, w, 2] (index 0 real, 1 refined).

  ReLU follows every hidden convolution; the final 1x1 conv gives raw logits
  (SIMGAN.md notes peers that dropped the ReLUs or put one on the logits).
  """

  layers: Sequence[tuple[str, int, int, int]] = DISCRIMINATOR_PRESETS["eye"]
  width_multiplier: float = 1.0
  batch_norm: bool = False
  conv_impl: str = "matmul"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images_BHWC, train: bool = True):
    x = images_BHWC
    for i, (kind, kernel, stride, features) in enumerate(self.layers):
      if kind == "pool":
        x = layers.max_pool(x, kernel, stride, "SAME", impl=self.conv_impl)
        continue
      width = max(1, int(round(features * self.width_multiplier)))
      x = layers.Conv(width, kernel, strides=stride, padding="SAME", use_bias=not self.batch_norm,
                      impl=self.conv_impl, dtype=self.dtype, relu=not self.batch_norm, name=f"conv{i}")(x)
      if self.batch_norm:
        # Statistics are averaged over the whole data-parallel batch.
        x = nn.relu(nn.BatchNorm(use_running_average=not train, axis_name="batch" if train else None,
                                 momentum=0.9, dtype=self.dtype, name=f"bn{i}")(x))
    logits = layers.Conv(2, 1, impl=self.conv_impl, dtype=self.dtype, name="logits")(x)
    return logits.astype(jnp.float32)


def trunk_text(refiner_config) -> str:
  """The refiner's ResNet trunk in words (reports, model cards): ``"4 ResNet blocks x 16
  features, 3x3 kernels"``, or ``"no ResNet trunk"`` with the identity output, which
  passes the input through (only a drop-out head then changes it)."""
  if refiner_config.output_activation == "identity":
    return "no ResNet trunk"
  k = refiner_config.kernel_size
  return f"{refiner_config.num_blocks} ResNet blocks x {refiner_config.features} features, {k}x{k} kernels"


def refiner_extras(refiner_config) -> list[str]:
  """The refiner fields beyond the paper's network that are on, in words (the reports'
  settings line and exported model cards)."""
  extras = []
  if refiner_config.get("grid_phase_period", 0):
    extras.append(f"grid-phase input (period {refiner_config.grid_phase_period})")
  if refiner_config.get("smooth_noise_cells", ()):
    cells = ", ".join(map(str, refiner_config.smooth_noise_cells))
    extras.append(f"smooth noise input ({cells} cells)")
  if refiner_config.get("light_stage", False):
    tone = ", learned mean tone" if refiner_config.get("light_stage_tone", False) else ""
    tone += ", learned mean exposure" if refiner_config.get("light_stage_exposure", False) else ""
    extras.append(f"light stage (random light and tone, learned magnitudes{tone})")
  if refiner_config.get("sensor_stage", False):
    extras.append("sensor stage (random blur and sensor noise, learned magnitudes)")
  if refiner_config.get("jpeg_quantizer", False):
    extras.append("JPEG stage (standard table, learned quality per image)")
  if refiner_config.get("trunk_start_step", 0):
    extras.append(f"trunk frozen until step {refiner_config.trunk_start_step} (camera stages alone before)")
  if refiner_config.get("block_quantizer", 0):
    n = refiner_config.block_quantizer
    extras.append(f"learned {n}x{n} block quantiser")
  if refiner_config.get("dropout_value") is not None:
    kernel = refiner_config.get("dropout_head_kernel", 0)
    view = f" from a {kernel}x{kernel} input neighbourhood" if kernel else ""
    if refiner_config.get("dropout_slope_head", False):
      view = " from the input's local slope"
    if refiner_config.get("dropout_gradient", "straight_through") == "score_function":
      view += ", learnt by the score function"
    extras.append(f"drop-out head to {refiner_config.dropout_value}{view}")
  return extras


def make_refiner(config) -> Refiner:
  return Refiner(
      channels=config.channels,
      features=config.refiner.features,
      num_blocks=config.refiner.num_blocks,
      kernel_size=config.refiner.kernel_size,
      output_activation=config.refiner.output_activation,
      padding=config.refiner.get("padding", "SAME"),
      conv_impl=layers.resolve_impl(config.get("conv_impl", "auto")),
      dtype=layers.resolve_dtype(config.get("compute_dtype", "float32")),
      noise_channels=config.refiner.get("noise_channels", 0),
      dropout_value=config.refiner.get("dropout_value"),
      grid_phase_period=config.refiner.get("grid_phase_period", 0),
      dropout_head_kernel=config.refiner.get("dropout_head_kernel", 0),
      block_quantizer=config.refiner.get("block_quantizer", 0),
      dropout_slope_head=config.refiner.get("dropout_slope_head", False),
      smooth_noise_cells=tuple(config.refiner.get("smooth_noise_cells", ())),
      jpeg_quantizer=bool(config.refiner.get("jpeg_quantizer", False)),
      light_stage=bool(config.refiner.get("light_stage", False)),
      light_stage_tone=bool(config.refiner.get("light_stage_tone", False)),
      light_stage_exposure=bool(config.refiner.get("light_stage_exposure", False)),
      sensor_stage=bool(config.refiner.get("sensor_stage", False)),
      dropout_gradient=config.refiner.get("dropout_gradient", "straight_through"),
  )  # trunk_frozen: train.py's clone until config.refiner.trunk_start_step (training.with_frozen_trunk)


def refiner_noise(refiner: Refiner, keys, image_hw):
  """The refiner's noise input for one key per example [B], or None without noise:
  ``noise_channels`` standard normal channels, one ``smooth_noise`` channel per
  ``smooth_noise_cells`` entry, one standard normal value per image for the JPEG stage
  (``jpeg_quantizer``, repeated over the image), the light stage's draws
  (``light_noise``), the sensor stage's (``sensor_noise``), then one uniform [0, 1) channel for the drop-out head
  (``dropout_value``); ``noise_slices`` says where each lies.

  Noise is a pure function of the example's key, so a batch refines the same on 1
  or N devices and a refined dataset is reproducible (refine.py keys it by index).
  """
  if not noise_input_channels(refiner):
    return None

  def one(k):
    normal = jax.random.normal(k, (*image_hw, refiner.noise_channels), jnp.float32)
    if refiner.smooth_noise_cells:  # their own stream: the normal channels stay as they were
      smooth = smooth_noise(jax.random.fold_in(k, _SMOOTH_STREAM), image_hw, refiner.smooth_noise_cells)
      normal = jnp.concatenate([normal, smooth], axis=-1)
    if refiner.jpeg_quantizer:
      z = jax.random.normal(jax.random.fold_in(k, _JPEG_STREAM), (), jnp.float32)
      normal = jnp.concatenate([normal, jnp.full((*image_hw, 1), z)], axis=-1)
    if refiner.light_stage:
      normal = jnp.concatenate([normal, light_noise(jax.random.fold_in(k, _LIGHT_STREAM), image_hw)], axis=-1)
    if refiner.sensor_stage:
      normal = jnp.concatenate([normal, sensor_noise(jax.random.fold_in(k, _SENSOR_STREAM), image_hw)], axis=-1)
    if refiner.dropout_value is None:
      return normal
    # The drop-out head's uniform draws, from their own stream of the example's key.
    uniform = jax.random.uniform(jax.random.fold_in(k, _DROP_STREAM), (*image_hw, 1), jnp.float32)
    return jnp.concatenate([normal, uniform], axis=-1)

  return jax.vmap(one)(keys)


_DROP_STREAM = 0x0D50  # fold_in tag of the drop-out head's uniform noise
_SMOOTH_STREAM = 0x5300  # fold_in tag of the smooth noise channels
_JPEG_STREAM = 0x1F60  # fold_in tag of the JPEG stage's per-image draw
_LIGHT_STREAM = 0x7160  # fold_in tag of the light stage's draws
_SENSOR_STREAM = 0x5E50  # fold_in tag of the sensor stage's draws
LIGHT_FIELD_CELLS = (2, 4)  # the light stage's gain fields: smooth_noise grids of 2 and 4 rows
LIGHT_NOISE_CHANNELS = len(LIGHT_FIELD_CELLS) + 3  # + gamma, contrast, brightness draws


def light_noise(key, image_hw) -> jax.Array:
  """[H, W, LIGHT_NOISE_CHANNELS]: the light stage's draws for one image: smooth normal
  fields on LIGHT_FIELD_CELLS grids, then three standard normal values repeated over the
  image (gamma, contrast, brightness)."""
  fields = smooth_noise(key, image_hw, LIGHT_FIELD_CELLS)
  z = jax.random.normal(jax.random.fold_in(key, 0x70E), (3,), jnp.float32)
  return jnp.concatenate([fields, jnp.broadcast_to(z, (*image_hw, 3))], axis=-1)


class LightStage(nn.Module):
  """Random light and tone per image with learned magnitudes [B, H, W, C] -> same, in
  linear [0, 1] values c = (x + 1) / 2: c * exp(a1 f1 + a2 f2) (f: smooth normal fields,
  LIGHT_FIELD_CELLS), then c ** exp(b z1), (c - 1/2) exp(d z2) + 1/2, c + e z3 (z:
  per-image normals), clipped back to [-1, 1]. The draws come from the noise input
  (light_noise); the five magnitudes are learned, each LIGHT_AMP_INIT + LIGHT_AMP_RATE
  * parameter, so the GAN only has to learn how much light and tone vary over images,
  which a trunk fed noise_channels or smooth_noise_cells did not learn to draw (eyes
  :cpu: refined images stay evenly lit). A tone change carries no label: the
  self-regularisation reads R's output before this stage (has_camera_stages)."""

  # With ``tone``, three more learned parameters m (zero at initialisation): the mean
  # log-gamma, log-contrast and brightness over images, so the stage can also move every
  # image's tone one way (c ** exp(m1 + b z1), (c - 1/2) exp(m2 + d z2) + 1/2, c + m3 + e
  # z3), which zero-mean draws cannot: with no trunk (a camera-only refiner) nothing else
  # can darken a simulator that renders brighter than the camera.
  tone: bool = False
  # With ``exposure``, one more learned parameter e (zero at initialisation): a mean log-gain
  # over images, c * exp(e + a1 f1 + a2 f2), as a camera's exposure scales every linear value
  # alike. The mean tone can darken only by a gamma or a flatter contrast, which also
  # crush the dark iris into the pupil (eyes: the camera-only refiner learned a mean
  # gamma of 2.0, where the eye target is darker by its materials and light, about x0.7).
  exposure: bool = False

  @nn.compact
  def __call__(self, images_BHWC, draws_BHWN):
    p = self.param("magnitude", nn.initializers.zeros, (5,), jnp.float32)
    m = self.param("tone", nn.initializers.zeros, (3,), jnp.float32) if self.tone else jnp.zeros((3,))
    e = self.param("exposure", nn.initializers.zeros, (), jnp.float32) if self.exposure else 0.0
    a = LIGHT_AMP_INIT + LIGHT_AMP_RATE * p
    nf = len(LIGHT_FIELD_CELLS)
    f, z = draws_BHWN[..., :nf], draws_BHWN[:, :1, :1, nf:]
    c = (images_BHWC.astype(jnp.float32) + 1.0) / 2.0
    c = c * jnp.exp(e + jnp.sum(f * a[:nf], axis=-1, keepdims=True))
    c = jnp.clip(c, 1e-4, 1.0) ** jnp.exp(m[0] + a[nf] * z[..., :1])
    c = (c - 0.5) * jnp.exp(m[1] + a[nf + 1] * z[..., 1:2]) + 0.5
    c = c + m[2] + a[nf + 2] * z[..., 2:3]
    return jnp.clip(2.0 * c - 1.0, -1.0, 1.0)


LIGHT_AMP_INIT = 0.05  # the light stage's magnitudes at initialisation (not 0: a saddle)
# Each magnitude moves this much per unit of its parameter. At 10 the eye :cpu run's gamma
# magnitude went from 0.05 to 1.6 within 700 adversarial steps (exp(1.6 z) gammas).
LIGHT_AMP_RATE = 1.0


SENSOR_NOISE_CHANNELS = 3  # the sensor stage's draws: blur width, noise level (per image), noise (per pixel)
SENSOR_BLUR_RADIUS = 3  # its blur kernel is 7 x 7 (separable)


def sensor_noise(key, image_hw) -> jax.Array:
  """[H, W, SENSOR_NOISE_CHANNELS]: the sensor stage's draws for one image: a blur width
  u ~ U(0, 1) and a noise level l ~ U(0.3, 1) repeated over the image (as the eye
  target's defocus and noise level), then standard normal noise per pixel."""
  u, level = jax.random.uniform(key, (2,), jnp.float32) * jnp.asarray([1.0, 0.7]) + jnp.asarray([0.0, 0.3])
  z = jax.random.normal(jax.random.fold_in(key, 0x5E), (*image_hw, 1), jnp.float32)
  return jnp.concatenate([jnp.broadcast_to(jnp.stack([u, level]), (*image_hw, 2)), z], axis=-1)


class SensorStage(nn.Module):
  """Random blur and sensor noise per image with learned magnitudes [B, H, W, C] -> same,
  in linear [0, 1] values c = (x + 1) / 2: a separable Gaussian blur of sigma = s u pixels
  (a 7 x 7 kernel, edges continued; u the image's U(0, 1) draw), then noise of std
  sqrt((r l)^2 + k l c) times the pixel's standard normal draw (l the image's U(0.3, 1)
  noise level), clipped back to [-1, 1]: the eye target's defocus and signal-dependent
  noise (simulators/target.py), which the perfect refiner's images need to pass the
  final two-sample test (without blur it scores 87.9%, without noise 96.8%, against
  63.2%: docs/diagnosis_eye_realism.md). s, r and k are learned, each exp(init + rate *
  parameter) (SENSOR_*), so they stay positive and start small; the draws come from the
  noise input (sensor_noise), so gradients reach s, r, k through the blur and the noise
  (reparameterised). A blur and noise carry no label: the self-regularisation reads R's
  output before this stage (has_camera_stages)."""

  @nn.compact
  def __call__(self, images_BHWC, draws_BHWN):
    p = self.param("log_magnitude", nn.initializers.zeros, (3,), jnp.float32)
    s, r, k = jnp.exp(jnp.asarray(SENSOR_LOG_INIT, jnp.float32) + SENSOR_LOG_RATE * p)
    u, level, z = draws_BHWN[:, :1, :1, 0:1], draws_BHWN[:, :1, :1, 1:2], draws_BHWN[..., 2:3]
    c = (images_BHWC.astype(jnp.float32) + 1.0) / 2.0
    sigma_B = jnp.maximum(s * u[:, 0, 0, 0], 1e-3)
    t = jnp.arange(-SENSOR_BLUR_RADIUS, SENSOR_BLUR_RADIUS + 1, dtype=jnp.float32)
    g = jnp.exp(-0.5 * (t[None, :] / sigma_B[:, None])**2)
    g = g / g.sum(-1, keepdims=True)  # [B, 7]
    r_ = SENSOR_BLUR_RADIUS
    padded = jnp.pad(c, ((0, 0), (r_, r_), (0, 0), (0, 0)), mode="edge")
    c = sum(g[:, i, None, None, None] * padded[:, i:i + c.shape[1]] for i in range(2 * r_ + 1))
    padded = jnp.pad(c, ((0, 0), (0, 0), (r_, r_), (0, 0)), mode="edge")
    c = sum(g[:, i, None, None, None] * padded[:, :, i:i + c.shape[2]] for i in range(2 * r_ + 1))
    std = jnp.sqrt((r * level)**2 + k * level * jnp.clip(c, 0.0, 1.0) + 1e-12)
    return jnp.clip(2.0 * (c + std * z) - 1.0, -1.0, 1.0)


# The sensor stage's blur width s (pixels), read-noise r and shot-noise k at initialisation
# (log; s below about 0.3 px would leave the 7-tap kernel a delta with no gradient), small against the eye target's (defocus sigma 0.3-1.04 px plus motion blur up to
# 2.5 px, r 0.03, k 0.004; simulators/target.py).
SENSOR_LOG_INIT = (math.log(0.6), math.log(0.005), math.log(0.0005))
SENSOR_LOG_RATE = 1.0  # each log magnitude moves this much per unit of its parameter


def smooth_noise_grid(cells: int, image_hw) -> tuple[int, int]:
  """(rows, columns) of the grid of a ``smooth_noise_cells`` entry: ``cells`` rows and
  as many columns as keep the cells about square; 1 is a single value per image."""
  if cells == 1:
    return 1, 1
  h, w = image_hw
  return cells, max(1, int(round(cells * w / h)))


def smooth_noise(key, image_hw, cells_list) -> jax.Array:
  """[H, W, len(cells_list)]: per entry, standard normal values on its grid
  (``smooth_noise_grid``) upsampled bilinearly with the grid's points at the cells'
  centres (edges continued), so the field varies over about H / cells pixels."""
  h, w = image_hw
  channels = []
  for i, cells in enumerate(cells_list):
    gh, gw = smooth_noise_grid(cells, image_hw)
    grid = jax.random.normal(jax.random.fold_in(key, i), (gh, gw), jnp.float32)
    channels.append(jax.image.resize(grid, (h, w), method="linear", antialias=False))
  return jnp.stack(channels, axis=-1)


def make_discriminator(config) -> LocalDiscriminator:
  preset = config.discriminator.preset
  if preset not in DISCRIMINATOR_PRESETS:
    raise ValueError(f"config.discriminator.preset: unknown {preset!r}; "
                     f"known: {', '.join(DISCRIMINATOR_PRESETS)}")
  return LocalDiscriminator(
      layers=DISCRIMINATOR_PRESETS[preset],
      width_multiplier=config.discriminator.width_multiplier,
      batch_norm=config.discriminator.batch_norm,
      conv_impl=layers.resolve_impl(config.get("conv_impl", "auto")),
      dtype=layers.resolve_dtype(config.get("compute_dtype", "float32")),
  )


def patch_map_shape(discriminator: LocalDiscriminator, image_shape) -> tuple[int, int]:
  """(h, w) of D's patch map for an (H, W, C) image, without running it."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  out = jax.eval_shape(lambda: discriminator.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros(x.shape), train=False)[0])
  return tuple(out.shape[1:3])


class TaskCNN(nn.Module):
  """A small classifier / regressor: stride-2 3x3 convolutions, ReLU, FC hidden, FC out."""

  conv_features: Sequence[int]
  hidden_features: int
  num_outputs: int

  @nn.compact
  def __call__(self, images_BHWC):
    x = images_BHWC
    for i, f in enumerate(self.conv_features):
      x = nn.relu(nn.Conv(f, (3, 3), strides=(1 if i == 0 else 2,) * 2, padding="SAME",
                          name=f"conv{i + 1}")(x))
    x = nn.relu(nn.Dense(self.hidden_features, name="fc1")(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_outputs, name="fc2")(x)
