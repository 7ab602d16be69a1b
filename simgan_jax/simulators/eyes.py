"""A parametric eye simulator in pure jnp: the project's stand-in for UnityEyes.

An eyeball (a sphere) with a planar iris and pupil behind the cornea, seen through
an eyelid aperture cut into a shaded skin surface, rendered with analytic soft
edges (first-order signed distances, a 1-pixel box filter) so every edge is
anti-aliased without supersampling.

Conventions (MPIIGaze's, SIMGAN.md "Data"):

* camera coordinates: x right, y down, z forward (the camera looks along +z);
* gaze is a unit vector g with pitch = asin(-g_y), yaw = atan2(-g_x, -g_z), so a
  gaze at the camera is (0, 0, -1); positive pitch looks up (the pupil moves to
  smaller image y), positive yaw moves the pupil to smaller image x (left);
* pixel (row i, column j) covers [j, j+1) x [i, i+1); its centre is (j+0.5, i+0.5).
  All 2D labels are (x, y) in these continuous pixel coordinates.

The projection is orthographic: MPIIGaze's normalised crops come from a virtual
camera aimed at the eye, whose field of view over a 35x55 crop is a few degrees,
so perspective effects are far below a pixel.

Everything is a pure function of (params, config) with a static, hashable config:
``jax.vmap(lambda k: render(sample_params(k, c), c))(keys_B)`` renders a batch
inside any compiled step.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

# Geometry is sized for the paper's 35x55 crop and scales with the image width.
REFERENCE_WIDTH = 55.0
NUM_IRIS_LANDMARKS = 8
NUM_EYELID_LANDMARKS = 8

Range = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class EyeSimConfig:
  """Image size and the distribution of scene parameters (uniform on each range).

  Angles are in degrees, lengths are fractions as noted, tones are linear grey
  levels in [0, 1] (the image is 2 * tone - 1).
  """

  height: int = 35
  width: int = 55
  channels: int = 1  # 1 (grey) or 3 (RGB, with per-material tints)

  # Gaze in camera coordinates. MPIIGaze spans roughly pitch [-25, 10] and yaw
  # [-30, 30] degrees (with most mass at moderate angles); UnityEyes is wider.
  gaze_pitch_deg: Range = (-25.0, 10.0)
  gaze_yaw_deg: Range = (-30.0, 30.0)
  # "uniform" on the ranges, or "normal": a normal centred on the range with
  # std = width / 4, truncated to the range (used by the target domain).
  gaze_sampling: str = "uniform"
  # Small head pose; it moves and rolls the eyelids relative to the eyeball.
  head_pitch_deg: Range = (-8.0, 8.0)
  head_yaw_deg: Range = (-10.0, 10.0)
  head_roll_deg: Range = (-6.0, 6.0)

  # Eyeball centre as fractions of the image width / height, radius as a fraction
  # of the width (0.21 * 55 = 11.5 px; a real eyeball is 12 mm, an iris 6 mm).
  center_x: Range = (0.44, 0.56)
  center_y: Range = (0.44, 0.58)
  eyeball_radius: Range = (0.19, 0.24)
  iris_radius: Range = (0.47, 0.57)  # fraction of the eyeball radius
  pupil_radius: Range = (0.28, 0.48)  # fraction of the iris radius

  # Eyelids, in units of the eyeball radius: half the corner-to-corner width, the
  # heights of the upper and lower lid above / below the corner line (the upper
  # one also follows the gaze pitch, as real lids do), the corner-line tilt,
  # the lid-curve exponent (1 = parabola, larger = flatter top) and its skew.
  lid_half_width: Range = (1.05, 1.3)
  lid_upper: Range = (0.55, 0.95)
  lid_lower: Range = (0.3, 0.55)
  lid_tilt_deg: Range = (-6.0, 6.0)
  lid_exponent: Range = (1.0, 1.6)
  lid_skew: Range = (-0.25, 0.25)

  # Materials.
  skin_tone: Range = (0.45, 0.8)
  sclera_tone: Range = (0.72, 0.92)
  iris_tone: Range = (0.2, 0.55)
  pupil_tone: Range = (0.02, 0.07)
  limbus_strength: Range = (0.3, 0.7)  # darkening of the iris rim
  iris_hue: Range = (0.0, 1.0)  # RGB only: 0 brown .. 1 blue-grey
  lid_shadow: Range = (0.15, 0.45)  # darkening of the ball just below the upper lid
  lid_margin: Range = (0.2, 0.5)  # darkening of the upper lid margin (lash line)

  # Light: direction (x, y, -1) normalised, i.e. from the camera side, tilted by
  # (light_x, light_y); ambient and directional strengths; corneal glint peak.
  light_x: Range = (-0.6, 0.6)
  light_y: Range = (-0.6, 0.4)
  light_ambient: Range = (0.35, 0.55)
  light_strength: Range = (0.45, 0.75)
  glint_strength: Range = (0.5, 1.0)

  def __post_init__(self):
    if self.channels not in (1, 3):
      raise ValueError(f"EyeSimConfig.channels: expected 1 or 3, got {self.channels}")
    if self.height < 8 or self.width < 8:
      raise ValueError(f"EyeSimConfig: image size {self.height}x{self.width} is below 8x8")
    if self.gaze_sampling not in ("uniform", "normal"):
      raise ValueError(f"EyeSimConfig.gaze_sampling: expected 'uniform' or 'normal', "
                       f"got {self.gaze_sampling!r}")
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, tuple) and not value[0] <= value[1]:
        raise ValueError(f"EyeSimConfig.{f.name}: range {value} has low > high")


_DEGREE_FIELDS = ("gaze_pitch_deg", "gaze_yaw_deg", "head_pitch_deg", "head_yaw_deg",
                  "head_roll_deg", "lid_tilt_deg")
PARAM_NAMES = tuple(f.name for f in dataclasses.fields(EyeSimConfig)
                    if f.type == "Range" or isinstance(f.default, tuple))


def _param_name(field: str) -> str:
  return field[:-4] if field.endswith("_deg") else field


def sample_params(key: jax.Array, config: EyeSimConfig) -> dict[str, jax.Array]:
  """Draws one scene: a dict of float32 scalars (angles in radians)."""
  keys = jax.random.split(key, len(PARAM_NAMES))
  params = {}
  for k, field in zip(keys, PARAM_NAMES):
    lo, hi = getattr(config, field)
    if config.gaze_sampling == "normal" and field in ("gaze_pitch_deg", "gaze_yaw_deg"):
      unit = 0.5 + jax.random.truncated_normal(k, -2.0, 2.0) / 4.0
    else:
      unit = jax.random.uniform(k)
    value = lo + (hi - lo) * unit
    if field in _DEGREE_FIELDS:
      value = value * (math.pi / 180.0)
    params[_param_name(field)] = value.astype(jnp.float32)
  return params


def gaze_vector(pitch: jax.Array, yaw: jax.Array) -> jax.Array:
  """Unit gaze vector from MPIIGaze pitch / yaw (radians)."""
  return jnp.stack([-jnp.cos(pitch) * jnp.sin(yaw), -jnp.sin(pitch),
                    -jnp.cos(pitch) * jnp.cos(yaw)], axis=-1)


def pitch_yaw(gaze: jax.Array) -> jax.Array:
  """MPIIGaze (pitch, yaw) in radians of unit gaze vectors [..., 3]."""
  return jnp.stack([jnp.arcsin(-gaze[..., 1]), jnp.arctan2(-gaze[..., 0], -gaze[..., 2])], -1)


def coverage(signed_distance_px: jax.Array) -> jax.Array:
  """Area of a pixel inside a shape, from the signed distance (px, > 0 outside)."""
  return jnp.clip(0.5 - signed_distance_px, 0.0, 1.0)


def _lid_curve(t, exponent, skew):
  """Lid profile on t in [-1, 1] (0 at the corners) and its derivative dg/dt."""
  tc = jnp.clip(t, -1.0, 1.0)
  base = jnp.maximum(1.0 - tc * tc, 0.0)
  g = base**exponent * (1.0 + skew * tc)
  inside = jnp.abs(t) < 1.0
  dg = jnp.where(inside, exponent * base**(exponent - 1.0) * (-2.0 * tc) * (1.0 + skew * tc)
                 + skew * base**exponent, 0.0)
  return g, dg


def geometry(params, config: EyeSimConfig) -> dict[str, jax.Array]:
  """Scalars shared by the renderer and the labels, in pixels."""
  p = params
  w = float(config.width)
  radius = p["eyeball_radius"] * w
  gaze = gaze_vector(p["gaze_pitch"], p["gaze_yaw"])
  head = gaze_vector(p["head_pitch"], p["head_yaw"])
  cx, cy = p["center_x"] * w, p["center_y"] * config.height
  iris_r = p["iris_radius"] * radius
  # The iris is the planar disk whose rim lies on the sphere.
  iris_depth = jnp.sqrt(radius**2 - iris_r**2)
  # The lid aperture sits in front of the ball along the head's forward direction.
  ax, ay = cx + 0.9 * radius * head[0], cy + 0.9 * radius * head[1]
  relative_pitch = p["gaze_pitch"] - p["head_pitch"]
  return dict(
      radius=radius, gaze=gaze, cx=cx, cy=cy, iris_r=iris_r,
      pupil_r=p["pupil_radius"] * iris_r,
      qx=cx + iris_depth * gaze[0], qy=cy + iris_depth * gaze[1],
      ax=ax, ay=ay, tilt=p["head_roll"] + p["lid_tilt"],
      half_w=p["lid_half_width"] * radius,
      h_up=p["lid_upper"] * radius * jnp.clip(1.0 + 1.2 * relative_pitch, 0.3, 1.8),
      h_lo=p["lid_lower"] * radius,
      px=w / REFERENCE_WIDTH)


def _iris_basis(gaze):
  """Orthonormal (a, b) spanning the iris plane; a ~ image +x, b ~ image +y."""
  a = jnp.stack([-gaze[2], 0.0, gaze[0]])
  a = a / jnp.linalg.norm(a)
  return a, jnp.cross(a, gaze)


def lid_points(geo, params, t, upper: bool):
  """Image (x, y) of points on the upper or lower lid margin at parameters t."""
  if upper:
    g, _ = _lid_curve(t, params["lid_exponent"], params["lid_skew"])
    yl = -geo["h_up"] * g
  else:
    g, _ = _lid_curve(t, params["lid_exponent"], -0.5 * params["lid_skew"])
    yl = geo["h_lo"] * g
  xl = t * geo["half_w"]
  c, s = jnp.cos(geo["tilt"]), jnp.sin(geo["tilt"])
  return jnp.stack([geo["ax"] + c * xl - s * yl, geo["ay"] + s * xl + c * yl], -1)


def labels(params, config: EyeSimConfig) -> dict[str, jax.Array]:
  """Gaze, head pose and 2D landmarks of one scene (see the module conventions).

  ``iris_landmarks`` start at the iris point nearest image +x and go clockwise on
  screen; ``eyelid_landmarks`` are the left corner, three upper-lid points, the
  right corner and three lower-lid points, also clockwise.
  """
  geo = geometry(params, config)
  gaze = geo["gaze"]
  a, b = _iris_basis(gaze)
  angles = jnp.arange(NUM_IRIS_LANDMARKS) * (2 * math.pi / NUM_IRIS_LANDMARKS)
  iris = (jnp.stack([geo["qx"], geo["qy"]])[None]
          + geo["iris_r"] * (jnp.cos(angles)[:, None] * a[None, :2]
                             + jnp.sin(angles)[:, None] * b[None, :2]))
  upper = lid_points(geo, params, jnp.array([-1.0, -0.5, 0.0, 0.5, 1.0]), upper=True)
  lower = lid_points(geo, params, jnp.array([0.5, 0.0, -0.5]), upper=False)
  return {
      "gaze": gaze.astype(jnp.float32),
      "pitchyaw": jnp.stack([params["gaze_pitch"], params["gaze_yaw"]]),
      "head_pose": jnp.stack([params["head_pitch"], params["head_yaw"], params["head_roll"]]),
      "pupil_center": jnp.stack([geo["qx"], geo["qy"]]),
      "iris_landmarks": iris.astype(jnp.float32),
      "eyelid_landmarks": jnp.concatenate([upper, lower], 0).astype(jnp.float32),
  }


def render_layers(params, config: EyeSimConfig) -> dict[str, jax.Array]:
  """Per-pixel geometry [H, W]: coverages, shading, iris coordinates, lid frame.

  ``pupil`` is the pupil's coverage before eyelid occlusion; multiply by
  ``aperture`` for the visible pupil.
  """
  p = params
  geo = geometry(p, config)
  x, y = jnp.meshgrid(jnp.arange(config.width, dtype=jnp.float32) + 0.5,
                      jnp.arange(config.height, dtype=jnp.float32) + 0.5)
  radius, gaze = geo["radius"], geo["gaze"]
  light = jnp.stack([p["light_x"], p["light_y"], -1.0])
  light = light / jnp.linalg.norm(light)

  # Sclera: the front of the sphere, Lambert-shaded.
  dx, dy = x - geo["cx"], y - geo["cy"]
  r2 = dx * dx + dy * dy
  nz = -jnp.sqrt(jnp.maximum(radius**2 - r2, 0.0)) / radius
  lambert = jnp.maximum(dx / radius * light[0] + dy / radius * light[1] + nz * light[2], 0.0)
  sphere = coverage(jnp.sqrt(r2) - radius)

  # Iris and pupil: a planar disk with normal g. Rays along +z hit the plane at
  # in-plane offset w; distances are divided by |grad rho| to get pixels.
  ux, uy = x - geo["qx"], y - geo["qy"]
  uz = -(ux * gaze[0] + uy * gaze[1]) / gaze[2]
  rho = jnp.sqrt(ux * ux + uy * uy + uz * uz + 1e-8)
  grad_x = (ux - uz * gaze[0] / gaze[2]) / rho
  grad_y = (uy - uz * gaze[1] / gaze[2]) / rho
  grad = jnp.maximum(jnp.sqrt(grad_x**2 + grad_y**2), 1.0)
  a, b = _iris_basis(gaze)
  iris_angle = jnp.arctan2(ux * b[0] + uy * b[1] + uz * b[2], ux * a[0] + uy * a[1] + uz * a[2])

  # Corneal glint: the point of a 0.6 R corneal sphere whose normal halves the
  # angle between the light and the camera (0, 0, -1).
  half = light + jnp.array([0.0, 0.0, -1.0])
  half = half / jnp.linalg.norm(half)
  gx = geo["cx"] + 0.45 * radius * gaze[0] + 0.6 * radius * half[0]
  gy = geo["cy"] + 0.45 * radius * gaze[1] + 0.6 * radius * half[1]
  sigma = 0.55 * geo["px"]
  glint = jnp.exp(-((x - gx)**2 + (y - gy)**2) / (2 * sigma**2))
  glint = glint * coverage((rho - 1.1 * geo["iris_r"]) / grad)

  # Eyelids, in a frame centred on the aperture and rolled with the head.
  c, s = jnp.cos(geo["tilt"]), jnp.sin(geo["tilt"])
  xl = c * (x - geo["ax"]) + s * (y - geo["ay"])
  yl = -s * (x - geo["ax"]) + c * (y - geo["ay"])
  t = xl / geo["half_w"]
  g_up, dg_up = _lid_curve(t, p["lid_exponent"], p["lid_skew"])
  g_lo, dg_lo = _lid_curve(t, p["lid_exponent"], -0.5 * p["lid_skew"])
  y_up, y_lo = -geo["h_up"] * g_up, geo["h_lo"] * g_lo
  slope_up = -geo["h_up"] * dg_up / geo["half_w"]
  slope_lo = geo["h_lo"] * dg_lo / geo["half_w"]
  aperture = (coverage((y_up - yl) / jnp.sqrt(1 + slope_up**2))
              * coverage((yl - y_lo) / jnp.sqrt(1 + slope_lo**2))
              * coverage(jnp.abs(xl) - geo["half_w"]))
  within = jnp.exp(-0.5 * (xl / (1.05 * geo["half_w"]))**8)

  # Skin as a height field (a socket bowl, the upper and lower lid bulges),
  # shaded by its normals so the lids look three-dimensional.
  height = (-0.5 * radius * jnp.exp(-0.5 * ((xl / (1.4 * geo["half_w"]))**2
                                           + ((yl + 0.1 * radius) / (1.2 * radius))**2))
            + 0.35 * radius * jnp.exp(-0.5 * ((yl - y_up + 0.4 * radius) / (0.35 * radius))**2) * within
            + 0.15 * radius * jnp.exp(-0.5 * ((yl - y_lo - 0.25 * radius) / (0.25 * radius))**2)
            * within)
  hy, hx = jnp.gradient(height)
  norm = jnp.sqrt(hx * hx + hy * hy + 1.0)
  skin_lambert = jnp.maximum((-hx * light[0] - hy * light[1] - light[2]) / norm, 0.0)
  crease_y = y_up - radius * (0.3 + 0.15 * g_up)
  margin = jnp.exp(-0.5 * ((yl - y_up + 0.6 * geo["px"]) / (0.8 * geo["px"]))**2) * within
  crease = 0.15 * jnp.exp(-0.5 * ((yl - crease_y) / (1.0 * geo["px"]))**2) * within
  lid_shadow = jnp.exp(-jnp.maximum(yl - y_up, 0.0) / (0.3 * radius))

  return dict(
      x=x, y=y, sphere=sphere, sclera_shade=p["light_ambient"] + p["light_strength"] * lambert,
      iris=coverage((rho - geo["iris_r"]) / grad), pupil=coverage((rho - geo["pupil_r"]) / grad),
      iris_rho=rho / geo["iris_r"], iris_angle=iris_angle,
      iris_shade=p["light_ambient"] + p["light_strength"] * jnp.maximum(-jnp.dot(gaze, light), 0.0)
      * jnp.ones_like(x),
      glint=glint, aperture=aperture, lid_x=xl, lid_y=yl, lid_upper_y=y_up, lid_lower_y=y_lo,
      skin_shade=p["light_ambient"] + p["light_strength"] * skin_lambert,
      lid_margin=margin, crease=crease, lid_shadow=lid_shadow)


def _tint(config: EyeSimConfig, rgb) -> jax.Array:
  """A colour [C] with unit mean (grey images ignore tints)."""
  if config.channels == 1:
    return jnp.ones((1,), jnp.float32)
  rgb = jnp.asarray(rgb, jnp.float32)
  return rgb / jnp.mean(rgb)


def composite(layers, params, config: EyeSimConfig, skin_modulation=None,
              iris_modulation=None) -> jax.Array:
  """Linear colour [H, W, C] (before clipping) from the layers and material tones.

  ``skin_modulation`` / ``iris_modulation`` ([H, W] multipliers) are hooks for the
  target domain's textures; None leaves the simulator's flat materials.
  """
  p, l = params, layers
  e = lambda a: a[..., None]  # [H, W] -> [H, W, 1]
  skin = p["skin_tone"] * _tint(config, (1.0, 0.78, 0.66))
  iris_rgb = ((1 - p["iris_hue"]) * jnp.array([0.55, 0.36, 0.22])
              + p["iris_hue"] * jnp.array([0.35, 0.45, 0.55]))
  iris = p["iris_tone"] * _tint(config, iris_rgb)
  sclera = p["sclera_tone"] * _tint(config, (1.0, 0.96, 0.94))
  corner = 0.6 * p["skin_tone"] * _tint(config, (1.0, 0.6, 0.6))
  pupil = p["pupil_tone"] * _tint(config, (1.0, 1.0, 1.0))

  limbus = 1.0 - p["limbus_strength"] * jnp.clip((l["iris_rho"] - 0.72) / 0.28, 0.0, 1.0)**2
  iris_colour = e(limbus * l["iris_shade"]) * iris
  if iris_modulation is not None:
    iris_colour = iris_colour * e(iris_modulation)
  ball = e(l["sphere"]) * e(l["sclera_shade"]) * sclera + e(1 - l["sphere"]) * corner
  ball = ball + e(l["iris"]) * (iris_colour - ball)
  ball = ball + e(l["pupil"]) * (pupil - ball)
  ball = ball * e(1.0 - p["lid_shadow"] * l["lid_shadow"])
  ball = ball + e(p["glint_strength"] * l["glint"])

  skin_colour = e(l["skin_shade"] * (1.0 - p["lid_margin"] * l["lid_margin"]) * (1.0 - l["crease"]))
  skin_colour = skin_colour * skin
  if skin_modulation is not None:
    skin_colour = skin_colour * e(skin_modulation)
  return skin_colour + e(l["aperture"]) * (ball - skin_colour)


def to_image(colour: jax.Array) -> jax.Array:
  """Linear colour in [0, 1] (clipped) -> float32 image in [-1, 1]."""
  return (jnp.clip(colour, 0.0, 1.0) * 2.0 - 1.0).astype(jnp.float32)


def render(params, config: EyeSimConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One scene -> (image [H, W, C] float32 in [-1, 1], labels)."""
  layers = render_layers(params, config)
  return to_image(composite(layers, params, config)), labels(params, config)


def render_batch(keys_B: jax.Array, config: EyeSimConfig):
  """Samples and renders one scene per key: (images [B, H, W, C], labels [B, ...])."""
  return jax.vmap(lambda k: render(sample_params(k, config), config))(keys_B)
