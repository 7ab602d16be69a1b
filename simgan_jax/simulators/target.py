"""The "in the wild" target domain: the project's stand-in for MPIIGaze.

The same eye geometry as ``eyes.py`` (so labels are computed identically), drawn
from a different scene distribution and rendered through an independent
appearance model with what webcam eye crops have and the simulator lacks:
skin and iris texture, eyelashes, extra specular reflections, strong uneven
illumination and cast shadows, defocus and motion blur, contrast / brightness /
gamma changes, signal-dependent sensor noise, and JPEG-like 8x8 blocking.

Every factor has a strength in ``TargetConfig``; 0 switches it off, and with
all of them off ``render`` returns exactly ``eyes.render`` of the same scene
(tested). Per-image random draws for every factor are made whether or not the
factor is on, so switching one factor off leaves the others' draws unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax.simulators import eyes

# Scene distribution of the target, shifted from the simulator's as MPIIGaze's is
# from UnityEyes': people look down at a screen (pitch centred near -10 deg),
# a narrower yaw, more closed lids, darker and more varied skin, duller sclera.
TARGET_SCENE = eyes.EyeSimConfig(
    gaze_pitch_deg=(-25.0, 5.0),
    gaze_yaw_deg=(-22.0, 22.0),
    gaze_sampling="normal",
    center_x=(0.42, 0.58),
    center_y=(0.46, 0.62),
    eyeball_radius=(0.2, 0.25),
    lid_upper=(0.45, 0.85),
    lid_lower=(0.3, 0.6),
    skin_tone=(0.3, 0.75),
    sclera_tone=(0.55, 0.85),
    iris_tone=(0.12, 0.4),
    light_x=(-0.9, 0.9),
    light_y=(-0.9, 0.6),
    light_ambient=(0.25, 0.5),
    light_strength=(0.5, 0.9),
)

# JPEG's standard luminance quantisation table (quality 50).
_JPEG_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56), (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99))
_BLUR_RADIUS = 4  # the blur kernel is 9x9 pixels
_NUM_UPPER_LASHES = 14
_NUM_LOWER_LASHES = 10
_NUM_EXTRA_GLINTS = 2


@dataclasses.dataclass(frozen=True)
class TargetConfig:
  """Target scene distribution and appearance factors (0 switches a factor off).

  Strengths are in linear grey levels ([0, 1]) unless noted.
  """

  scene: eyes.EyeSimConfig = TARGET_SCENE
  # Gain field exp(illumination * f), f a random tilt plus low-frequency blotches
  # with values of about +-1.5: up to ~2.5x brightness differences in a crop.
  illumination: float = 0.35
  # Max darkening of a soft-edged cast shadow (brow, nose, glasses frame).
  shadow: float = 0.5
  # Std of the multiplicative multi-scale skin texture (pores, wrinkles).
  skin_texture: float = 0.08
  # Std of the multiplicative radial iris texture (fibres and crypts).
  iris_texture: float = 0.35
  # Opacity of the eyelashes.
  eyelashes: float = 0.75
  # Peak of the extra corneal reflections (windows, screens) and the skin sheen.
  extra_specular: float = 0.7
  # Max Gaussian defocus sigma and max motion-blur length, in pixels.
  defocus_sigma: float = 1.0
  motion_blur: float = 2.5
  # Contrast factor exp(U(-1, 0.5) * contrast), brightness offset U(-1, 1) *
  # brightness, gamma exp(U(-1, 1) * gamma).
  contrast: float = 0.35
  brightness: float = 0.12
  gamma: float = 0.3
  # Sensor noise std: sqrt((read_noise * n)^2 + shot_noise * n * value), n ~ U(0.3, 1).
  read_noise: float = 0.03
  shot_noise: float = 0.004
  # Scale of the JPEG quality-50 table applied per 8x8 block (1.0 ~ quality 50).
  blocking: float = 1.0


APPEARANCE_FACTORS = tuple(f.name for f in dataclasses.fields(TargetConfig) if f.name != "scene")


def appearance_off(config: TargetConfig = TargetConfig()) -> TargetConfig:
  """``config`` with every appearance factor switched off."""
  return dataclasses.replace(config, **{name: 0.0 for name in APPEARANCE_FACTORS})


_APPEARANCE_DRAWS = ("illum_x", "illum_y", "shadow_angle", "shadow_offset", "shadow_soft",
                     "shadow_amount", "lash_length", "lash_spread", "defocus", "motion_length",
                     "motion_angle", "contrast", "brightness", "gamma", "noise_level",
                     "blocking_scale", "sheen")


def sample_params(key: jax.Array, config: TargetConfig) -> dict:
  """Draws one target scene: {"scene": eye params, "appearance": scalars, "key"}."""
  scene_key, appearance_key, texture_key = jax.random.split(key, 3)
  draws = jax.random.uniform(appearance_key, (len(_APPEARANCE_DRAWS),))
  return {"scene": eyes.sample_params(scene_key, config.scene),
          "appearance": dict(zip(_APPEARANCE_DRAWS, draws)), "key": texture_key}


def simulator_scene_params(key: jax.Array, config: TargetConfig) -> dict:
  """``sample_params`` whose scene is the one ``eyes.render_batch`` draws from ``key``
  (with ``config.scene`` as the simulator's config), and a random target appearance:
  rendered, the simulator image of that key as the target camera would show it,
  i.e. what a perfect refiner would make of it (``launch/reproduce.py``'s ``oracle``)."""
  draws = jax.random.uniform(jax.random.fold_in(key, 1), (len(_APPEARANCE_DRAWS),))
  return {"scene": eyes.sample_params(key, config.scene),
          "appearance": dict(zip(_APPEARANCE_DRAWS, draws)), "key": jax.random.fold_in(key, 2)}


def _interpolation(size: int, cells: int) -> np.ndarray:
  """[size, cells] smooth (Gaussian-weighted) interpolation from a coarse grid."""
  pos = (np.arange(size) + 0.5) / size * cells
  weights = np.exp(-0.5 * ((pos[:, None] - np.arange(cells)[None] - 0.5) / 0.7)**2)
  return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def _value_noise(key, shape_hw, grids) -> jax.Array:
  """Sum of smoothly upsampled Gaussian grids (constant matmuls: cheap to compile)."""
  h, w = shape_hw
  sizes = [gh * gw for gh, gw, _ in grids]
  values = jax.random.normal(key, (sum(sizes),))
  field, start = 0.0, 0
  for (gh, gw, weight), size in zip(grids, sizes):
    grid = values[start:start + size].reshape(gh, gw)
    start += size
    # Renormalise: interpolation averages neighbours and shrinks the std.
    up = _interpolation(h, gh) @ grid @ _interpolation(w, gw).T
    field = field + weight * up / 0.6
  return field


def _skin_modulation(key, layers, strength):
  h, w = layers["x"].shape
  # The finest "grid" is one cell per pixel: pores and sensor-scale grain.
  field = _value_noise(key, (h, w), ((4, 6, 0.6), (9, 14, 0.6), (18, 28, 0.5)))
  fine = jax.random.normal(jax.random.fold_in(key, 1), (h, w))
  # Wrinkles: thin dark lines roughly parallel to the lids.
  phase = 2 * math.pi * jax.random.uniform(jax.random.fold_in(key, 2))
  wrinkles = jnp.minimum(jnp.cos(1.3 * layers["lid_y"] + 0.005 * layers["lid_x"]**2 + phase), 0.0)
  return jnp.maximum(1.0 + strength * (field + 0.6 * fine + 0.8 * wrinkles), 0.0)


def _iris_modulation(key, layers, strength):
  num, samples = 8, 64
  u = jax.random.uniform(key, (2 * num + 2,))
  # Radial fibres: a random periodic profile over the iris angle, tabulated on
  # 64 angles and looked up per pixel (far cheaper than per-pixel sinusoids).
  freq = jnp.floor(5 + 27 * u[:num])
  phase = 2 * math.pi * u[num:2 * num]
  theta = jnp.arange(samples) * (2 * math.pi / samples)
  profile = jnp.sum(jnp.cos(freq * theta[:, None] + phase), -1) / math.sqrt(num / 2)
  twist = 2.0 * (2 * u[-2] - 1)
  position = ((layers["iris_angle"] + twist * layers["iris_rho"]) * (samples / (2 * math.pi))) % samples
  position = jax.lax.optimization_barrier(position)
  lo = jnp.floor(position)
  frac = position - lo
  lo = lo.astype(jnp.int32)
  fibres = (1 - frac) * profile[lo % samples] + frac * profile[(lo + 1) % samples]
  # A bright collarette ring part-way out; the rest slightly darker.
  ring_at = 0.45 + 0.2 * u[-1]
  ring = 1.5 * jnp.exp(-0.5 * ((layers["iris_rho"] - ring_at) / 0.06)**2) - 0.3
  return jnp.maximum(1.0 + strength * (fibres + ring), 0.0)


def _eyelashes(key, params, config, layers):
  """Lash coverage [H, W]: a fan of dark strands above the upper lid margin and
  shorter, fainter ones below the lower lid.

  Lashes are drawn in the lid frame as a periodic stripe pattern whose phase is
  constant along each strand (strands fan out from the margin), so the cost is
  a few operations per pixel whatever the number of lashes.
  """
  scene, a = params["scene"], params["appearance"]
  geo = eyes.geometry(scene, config.scene)
  u = jax.random.uniform(key, (8,))
  half_w = geo["half_w"]
  t = jnp.clip(layers["lid_x"] / half_w, -1.0, 1.0)
  alpha = 0.0
  for upper, num, scale in ((True, _NUM_UPPER_LASHES, 1.0), (False, _NUM_LOWER_LASHES, 0.45)):
    # Height above (below) the lid margin, in pixels.
    d = (layers["lid_upper_y"] - layers["lid_y"]) if upper else (layers["lid_y"] - layers["lid_lower_y"])
    length = scale * (0.25 + 0.25 * a["lash_length"]) * geo["radius"] * (1.0 - 0.6 * t * t)
    spread = 0.8 + 0.8 * a["lash_spread"]
    root = layers["lid_x"] / (1.0 + spread * jnp.maximum(d, 0.0) / half_w)
    # Irregular spacing: the phase wobbles along the lid.
    wobble = 0.35 * jnp.sin(root / half_w * (7 + 5 * u[0]) + 6.3 * u[1]) + 0.2 * jnp.sin(
        root / half_w * (17 + 7 * u[2]) + 6.3 * u[3])
    phase = root / (2 * half_w) * num + wobble
    stripes = (0.5 + 0.5 * jnp.cos(2 * math.pi * phase))**3
    envelope = (jnp.clip(d + 0.5, 0.0, 1.0) * jnp.clip(1.0 - d / length, 0.0, 1.0)
                * jnp.clip(4.0 * (1.0 - jnp.abs(layers["lid_x"]) / half_w), 0.0, 1.0))
    alpha = jnp.maximum(alpha, scale * envelope * (0.35 + 0.65 * stripes))
  return alpha


def _extra_specular(key, params, config, layers):
  scene, a = params["scene"], params["appearance"]
  geo = eyes.geometry(scene, config.scene)
  n = _NUM_EXTRA_GLINTS
  u = jax.random.uniform(key, (5 * n + 2,))
  x, y = layers["x"], layers["y"]
  # Small reflections of windows / screens on the cornea.
  gx = geo["qx"] + 0.8 * geo["iris_r"] * (2 * u[:n] - 1)
  gy = geo["qy"] + 0.8 * geo["iris_r"] * (2 * u[n:2 * n] - 1)
  sx = geo["px"] * (0.5 + 1.1 * u[2 * n:3 * n])
  sy = geo["px"] * (0.5 + 1.1 * u[3 * n:4 * n])
  peak = 0.2 + 0.8 * u[4 * n:5 * n]
  spots = peak * jnp.exp(-0.5 * (((x[..., None] - gx) / sx)**2 + ((y[..., None] - gy) / sy)**2))
  cornea = jnp.clip(1.0 - jnp.maximum(layers["iris_rho"] - 1.0, 0.0) * 4.0, 0.0, 1.0)
  spots = jnp.sum(spots, -1) * cornea * layers["aperture"]
  # Oily-skin sheen: a broad soft highlight somewhere on the skin.
  cx, cy = u[-2] * x.shape[1], u[-1] * x.shape[0]
  sheen = 0.3 * a["sheen"] * jnp.exp(-0.5 * ((x - cx)**2 + (y - cy)**2)
                                     / (0.6 * geo["radius"])**2) * (1.0 - layers["aperture"])
  return spots + sheen


def _illumination_gain(key, params, config, layers):
  a = params["appearance"]
  h, w = layers["x"].shape
  xn, yn = layers["x"] / w * 2 - 1, layers["y"] / h * 2 - 1
  gain = 1.0
  if config.illumination > 0:
    tilt = (2 * a["illum_x"] - 1) * xn + (2 * a["illum_y"] - 1) * yn
    blotches = _value_noise(key, (h, w), ((2, 3, 0.5), (4, 6, 0.3)))
    gain = jnp.exp(config.illumination * (tilt + blotches))
  if config.shadow > 0:
    angle = 2 * math.pi * a["shadow_angle"]
    edge = (xn * jnp.cos(angle) + yn * jnp.sin(angle) - (1.2 * a["shadow_offset"] - 0.6))
    soft = (0.03 + 0.25 * a["shadow_soft"])
    gain = gain * (1.0 - config.shadow * a["shadow_amount"] * jax.nn.sigmoid(edge / soft))
  return gain


def _blur(image_HWC, params, config):
  """Defocus (Gaussian) and linear motion blur as one 9x9 kernel per image."""
  a = params["appearance"]
  sigma2 = (config.defocus_sigma * a["defocus"])**2 + 0.3**2
  length = config.motion_blur * a["motion_length"]
  angle = math.pi * a["motion_angle"]
  r = _BLUR_RADIUS
  dy, dx = jnp.meshgrid(jnp.arange(-r, r + 1.0), jnp.arange(-r, r + 1.0), indexing="ij")
  along = dx * jnp.cos(angle) + dy * jnp.sin(angle)
  perp = -dx * jnp.sin(angle) + dy * jnp.cos(angle)
  excess = jnp.maximum(jnp.abs(along) - 0.5 * length, 0.0)
  kernel = jnp.exp(-0.5 * (perp**2 + excess**2) / sigma2)
  kernel = kernel / jnp.sum(kernel)
  h, w, _ = image_HWC.shape
  # The barrier keeps XLA from fusing the render into each of the 81 shifted
  # reads below (measured: several times faster with it).
  padded = jax.lax.optimization_barrier(
      jnp.pad(image_HWC, ((r, r), (r, r), (0, 0)), mode="edge"))
  out = 0.0
  for i in range(2 * r + 1):
    for j in range(2 * r + 1):
      out = out + kernel[i, j] * padded[i:i + h, j:j + w]
  return out


def _dct_matrix(n=8):
  k = jnp.arange(n, dtype=jnp.float32)
  m = jnp.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / (2 * n)) * math.sqrt(2.0 / n)
  return m.at[0].set(m[0] / math.sqrt(2.0))


def _blocking(colour_HWC, params, config):
  """JPEG-like quantisation of 8x8 DCT blocks (edge-padded to whole blocks)."""
  h, w, c = colour_HWC.shape
  ph, pw = -h % 8, -w % 8
  v = jnp.pad(colour_HWC, ((0, ph), (0, pw), (0, 0)), mode="edge") * 255.0 - 128.0
  v = jax.lax.optimization_barrier(v)  # see _blur
  nh, nw = (h + ph) // 8, (w + pw) // 8
  blocks = v.reshape(nh, 8, nw, 8, c).transpose(0, 2, 4, 1, 3).reshape(-1, 64)
  # The 2D DCT of 8x8 blocks as one [64, 64] matrix (Kronecker product): a GEMM.
  d = _dct_matrix()
  dct2 = jnp.kron(d, d)
  table = jnp.asarray(_JPEG_TABLE, jnp.float32).reshape(64)
  q = table * config.blocking * (0.25 + params["appearance"]["blocking_scale"])
  coef = jnp.round(blocks @ dct2.T / q) * q
  v = (coef @ dct2).reshape(nh, nw, c, 8, 8).transpose(0, 3, 1, 4, 2).reshape(h + ph, w + pw, c)
  return (v[:h, :w] + 128.0) / 255.0


def render_scene(params, config: TargetConfig) -> jax.Array:
  """The scene's linear colour [H, W, C]: textures, lashes, light, reflections."""
  scene, key = params["scene"], params["key"]
  keys = dict(zip(("skin", "iris", "lashes", "specular", "light"), jax.random.split(key, 6)))
  layers = eyes.render_layers(scene, config.scene)
  colour = eyes.composite(
      layers, scene, config.scene,
      skin_modulation=(_skin_modulation(keys["skin"], layers, config.skin_texture)
                       if config.skin_texture > 0 else None),
      iris_modulation=(_iris_modulation(keys["iris"], layers, config.iris_texture)
                       if config.iris_texture > 0 else None))
  if config.eyelashes > 0:
    alpha = config.eyelashes * _eyelashes(keys["lashes"], params, config, layers)[..., None]
    colour = colour + alpha * (0.04 - colour)
  if config.illumination > 0 or config.shadow > 0:
    colour = colour * _illumination_gain(keys["light"], params, config, layers)[..., None]
  if config.extra_specular > 0:
    colour = colour + config.extra_specular * _extra_specular(
        keys["specular"], params, config, layers)[..., None]
  return colour


def camera(colour: jax.Array, params, config: TargetConfig) -> jax.Array:
  """What the webcam does to the scene: blur, tone curve, noise, compression.

  Returns the image [H, W, C] float32 in [-1, 1].
  """
  a = params["appearance"]
  if config.defocus_sigma > 0 or config.motion_blur > 0:
    colour = _blur(colour, params, config)
  if config.gamma > 0:
    colour = jnp.clip(colour, 0.0, 1.0)**jnp.exp(config.gamma * (2 * a["gamma"] - 1))
  if config.contrast > 0:
    colour = (colour - 0.5) * jnp.exp(config.contrast * (1.5 * a["contrast"] - 1)) + 0.5
  if config.brightness > 0:
    colour = colour + config.brightness * (2 * a["brightness"] - 1)
  if config.read_noise > 0 or config.shot_noise > 0:
    level = 0.3 + 0.7 * a["noise_level"]
    std = jnp.sqrt((config.read_noise * level)**2
                   + config.shot_noise * level * jnp.clip(colour, 0.0, 1.0))
    noise_key = jax.random.split(params["key"], 6)[5]
    colour = colour + std * jax.random.normal(noise_key, colour.shape)
  if config.blocking > 0:
    colour = _blocking(jnp.clip(colour, 0.0, 1.0), params, config)
  return eyes.to_image(colour)


def render(params, config: TargetConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One target scene -> (image [H, W, C] float32 in [-1, 1], labels as eyes.labels)."""
  return (camera(render_scene(params, config), params, config),
          eyes.labels(params["scene"], config.scene))


def render_batch(keys_B: jax.Array, config: TargetConfig):
  """Samples and renders one target scene per key: (images [B, H, W, C], labels)."""
  return jax.vmap(lambda k: render(sample_params(k, config), config))(keys_B)


def render_batch_staged(keys_B: jax.Array, config: TargetConfig, simulator_scenes: bool = False):
  """``render_batch`` as two compiled calls (same pixels), for host-side generation;
  with ``simulator_scenes`` the scenes are the simulator's (``simulator_scene_params``).

  XLA:CPU fuses the scene renderer into the blur's and the compression's many
  shifted reads when both are in one program, which makes it several times
  slower; handing over a materialised scene between two calls avoids that.
  """
  params, colour, labels = _staged_scene(keys_B, config, simulator_scenes)
  return _staged_camera(colour, params, config), labels


@functools.partial(jax.jit, static_argnums=(1, 2))
def _staged_scene(keys_B, config, simulator_scenes=False):
  sample = simulator_scene_params if simulator_scenes else sample_params
  params = jax.vmap(lambda k: sample(k, config))(keys_B)
  colour = jax.vmap(lambda p: render_scene(p, config))(params)
  labels = jax.vmap(lambda p: eyes.labels(p["scene"], config.scene))(params)
  return params, colour, labels


@functools.partial(jax.jit, static_argnums=2)
def _staged_camera(colour, params, config):
  return jax.vmap(lambda c, p: camera(c, p, config))(colour, params)
