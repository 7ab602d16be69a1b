"""A depth-hand simulator in pure jnp: the project's stand-in for NYU's synthetic depth.

An articulated right hand (an ellipsoid palm with four capsules fanning from the
wrist to the knuckles, five fingers of three capsules each) posed by joint
angles inside anatomical limits and a global rotation and position, ray-cast
analytically (ray-capsule and ray-ellipsoid intersections, no marching) into a
depth map in millimetres, then cropped and normalised like the NYU builder
(``data/builders/nyu_hand.py``).

Conventions:

* camera coordinates for rendering: x right, y down, z forward (mm); the camera
  is NYU's Kinect, fx=588.03, fy=587.07, cx=320, cy=240 on a 640x480 frame;
  frame pixel (u, v) has its centre at integer (u, v);
* ``joints_xyz`` are in NYU's ``joint_xyz`` convention, y *up*:
  u = cx + fx * x / z, v = cy - fy * y / z;
* ``joints`` are (x, y) crop pixel coordinates with pixel centres at integers, as
  the NYU builder's ``joints`` label.

The 14 joints follow the NYU evaluation order (indices 0, 3, 6, ... 32 of the 36):
pinky tip, pinky PIP, ring tip, ring PIP, middle tip, middle PIP, index tip,
index PIP, thumb tip, thumb IP, thumb MCP, wrist (thumb side), wrist (little
finger side), palm centre. That reading of NYU's 36-point skeleton is ours.

Crop (the NYU builder's rule, on the simulator's joints): a box 1.4 times the
larger side of the bounding box of the skeleton points (the 14 joints, the four
knuckles and the thumb base), centred on it; output pixel (i, j) shows frame
pixel (x0 + floor((j + 0.5) * box / W), y0 + floor((i + 0.5) * box / H)), so a
ray is cast only through the frame pixels the crop keeps. Values: foreground
within 150 mm of the mean joint depth maps to [-1, 0] (near is dark),
everything else to +1.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

FX, FY, CX, CY = 588.03, 587.07, 320.0, 240.0
NUM_JOINTS = 14
FINGERS = ("pinky", "ring", "middle", "index")  # NYU order; the thumb comes after
BACKGROUND_DEPTH_MM = 1.0e5  # "no surface hit"

Range = tuple[float, float]

# Right hand at rest in hand coordinates (mm): x across the palm (thumb side +x),
# y from the wrist to the fingers, z out of the palm (the palm side). Knuckle
# positions, segment lengths (proximal, middle, distal) and radii of an adult hand.
_KNUCKLES = {"pinky": (-30.0, 80.0, 0.0), "ring": (-11.0, 90.0, 0.0), "middle": (9.0, 94.0, 0.0),
             "index": (29.0, 88.0, 0.0)}
_LENGTHS = {"pinky": (32.0, 20.0, 18.0), "ring": (42.0, 27.0, 21.0), "middle": (45.0, 29.0, 22.0),
            "index": (40.0, 25.0, 21.0), "thumb": (38.0, 30.0, 24.0)}
_RADII = {"pinky": (7.0, 6.3, 5.8), "ring": (8.0, 7.2, 6.5), "middle": (8.4, 7.6, 6.8),
          "index": (8.2, 7.4, 6.7), "thumb": (11.0, 9.2, 8.2)}
_THUMB_BASE = (26.0, 18.0, 6.0)
_WRIST_HALF_WIDTH = 24.0


@dataclasses.dataclass(frozen=True)
class HandSimConfig:
  """Output size and the distribution of hand poses (uniform on each range).

  Angles are in degrees; flexion bends a finger towards the palm.
  """

  height: int = 224
  width: int = 224
  channels: int = 1
  box_scale: float = 1.4  # the NYU builder's crop margin
  depth_range_mm: float = 150.0  # foreground window around the mean joint depth

  # Global pose: the hand starts fingers up, palm facing the camera, and is
  # rotated by roll (in the image plane), yaw (about the vertical) and pitch.
  roll_deg: Range = (-50.0, 50.0)
  yaw_deg: Range = (-70.0, 70.0)
  pitch_deg: Range = (-40.0, 40.0)
  distance_mm: Range = (550.0, 950.0)
  offset_mm: Range = (-120.0, 120.0)  # x and y of the wrist
  scale: Range = (0.9, 1.1)  # hand size

  # Articulation. A hand-wide curl mixed with a per-finger curl sets each finger's
  # MCP and PIP flexion; DIP follows PIP (about 2/3, as in real fingers).
  curl_mix: Range = (0.0, 1.0)  # weight of the hand-wide curl
  mcp_flexion_deg: Range = (-15.0, 85.0)
  pip_flexion_deg: Range = (0.0, 105.0)
  dip_ratio: Range = (0.5, 0.85)
  spread_deg: Range = (-4.0, 16.0)  # abduction: fingers fanning out
  thumb_abduction_deg: Range = (0.0, 60.0)
  thumb_opposition_deg: Range = (0.0, 60.0)
  thumb_mcp_deg: Range = (-5.0, 55.0)
  thumb_ip_deg: Range = (-10.0, 75.0)

  def __post_init__(self):
    if self.channels != 1:
      raise ValueError(f"HandSimConfig.channels: depth has 1 channel, got {self.channels}")
    if self.height < 8 or self.width < 8:
      raise ValueError(f"HandSimConfig: image size {self.height}x{self.width} is below 8x8")
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, tuple) and not value[0] <= value[1]:
        raise ValueError(f"HandSimConfig.{f.name}: range {value} has low > high")


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(HandSimConfig) if isinstance(f.default, tuple))
_PER_FINGER = ("mcp_flexion_deg", "pip_flexion_deg", "dip_ratio")


def sample_params(key: jax.Array, config: HandSimConfig) -> dict[str, jax.Array]:
  """Draws one hand: a dict of float32 arrays (angles in radians; per-finger arrays [4])."""
  keys = jax.random.split(key, len(PARAM_NAMES) + 3)
  params = {}
  for k, field in zip(keys, PARAM_NAMES):
    lo, hi = getattr(config, field)
    shape = (2,) if field == "offset_mm" else (4,) if field in _PER_FINGER else ()
    value = lo + (hi - lo) * jax.random.uniform(k, shape)
    if field.endswith("_deg"):
      value = value * (math.pi / 180.0)
    params[field.removesuffix("_deg").removesuffix("_mm")] = value.astype(jnp.float32)
  # Correlated curls: a hand-wide curl and per-finger ones, in [0, 1].
  curl_hand = jax.random.uniform(keys[-3])
  curl_finger = jax.random.uniform(keys[-2], (4,))
  mix = params.pop("curl_mix")
  curl = mix * curl_hand + (1 - mix) * curl_finger
  # Flexion rises with the curl; the sampled values add a per-finger wobble.
  for name in ("mcp_flexion", "pip_flexion"):
    lo, hi = (math.radians(v) for v in getattr(config, name + "_deg"))
    params[name] = 0.7 * (lo + curl * (hi - lo)) + 0.3 * params[name]
  return params


def rotation(axis: int, angle) -> jax.Array:
  """3x3 right-handed rotation about coordinate axis 0, 1 or 2."""
  c, s = jnp.cos(angle), jnp.sin(angle)
  i, j = [(1, 2), (2, 0), (0, 1)][axis]
  m = jnp.eye(3)
  return m.at[i, i].set(c).at[j, j].set(c).at[i, j].set(-s).at[j, i].set(s)


def _finger_chain(base, frame, lengths, angles):
  """Joint positions [4, 3] (base, two joints, tip) of a chain bending about its x axis."""
  points, r = [base], frame
  for length, angle in zip(lengths, angles):
    r = r @ rotation(0, angle)
    points.append(points[-1] + length * r[:, 1])
  return jnp.stack(points)


def skeleton(params, config: HandSimConfig) -> dict[str, jax.Array]:
  """Hand points in camera coordinates (mm, y down): per-finger chains [5, 4, 3]
  (pinky, ring, middle, index, thumb; base to tip), wrist points [2, 3], palm centre [3]."""
  del config
  p = params
  s = p["scale"]
  chains = []
  for f, name in enumerate(FINGERS):
    # Abduction fans the fingers about the middle finger (index +, pinky -).
    fan = (f - 2.2) / 2.2 * p["spread"]
    frame = rotation(2, -fan)
    angles = (p["mcp_flexion"][f], p["pip_flexion"][f], p["dip_ratio"][f] * p["pip_flexion"][f])
    chains.append(_finger_chain(s * jnp.array(_KNUCKLES[name]), frame, [s * l for l in _LENGTHS[name]],
                                angles))
  # Thumb: points away from the index at rest; abduction swings it out of the palm
  # plane, opposition rolls it to face the fingers, then MCP and IP flexion.
  frame = rotation(2, -math.radians(50.0) - 0.5 * p["thumb_abduction"]) @ rotation(
      0, 0.5 * p["thumb_abduction"]) @ rotation(1, -math.radians(30.0) - p["thumb_opposition"])
  chains.append(_finger_chain(s * jnp.array(_THUMB_BASE), frame, [s * l for l in _LENGTHS["thumb"]],
                              (0.3 * p["thumb_opposition"], p["thumb_mcp"], p["thumb_ip"])))
  local = {"chains": jnp.stack(chains), "wrist": s * jnp.array([[_WRIST_HALF_WIDTH, 0.0, 0.0],
                                                                  [-_WRIST_HALF_WIDTH, 0.0, 0.0]]),
           "palm": s * jnp.array([0.0, 45.0, 0.0])}
  # Base orientation: fingers up (camera -y), palm towards the camera (camera -z).
  r = (rotation(2, p["roll"]) @ rotation(1, p["yaw"]) @ rotation(0, p["pitch"])
       @ jnp.diag(jnp.array([1.0, -1.0, -1.0])))
  # The hand is placed with its palm centre at the sampled position.
  origin = jnp.stack([p["offset"][0], p["offset"][1], p["distance"]]) - r @ local["palm"]
  return jax.tree.map(lambda x: x @ r.T + origin, local) | {"rotation": r}


def joints_camera(skel) -> jax.Array:
  """The 14 NYU joints [14, 3] in camera coordinates (y down)."""
  c = skel["chains"]
  fingers = [c[f, i] for f in range(4) for i in (3, 2)]  # tip, PIP
  thumb = [c[4, 3], c[4, 2], c[4, 1]]  # tip, IP, MCP
  return jnp.stack(fingers + thumb + [skel["wrist"][0], skel["wrist"][1], skel["palm"]])


def project(points_N3) -> jax.Array:
  """Camera points (y down) -> frame (u, v, depth) with the NYU intrinsics."""
  x, y, z = points_N3[..., 0], points_N3[..., 1], points_N3[..., 2]
  return jnp.stack([CX + FX * x / z, CY + FY * y / z, z], -1)


def to_nyu_xyz(points_N3) -> jax.Array:
  """Camera points (y down) -> NYU ``joint_xyz`` (y up)."""
  return points_N3 * jnp.array([1.0, -1.0, 1.0])


def crop_box(skel, config: HandSimConfig) -> jax.Array:
  """(x0, y0, box_w, box_h) in frame pixels, as the NYU builder computes it."""
  points = jnp.concatenate([joints_camera(skel), skel["chains"][:, 0]], 0)
  uv = project(points)[:, :2]
  lo, hi = uv.min(0), uv.max(0)
  h, w = config.height, config.width
  extent = jnp.maximum(hi[0] - lo[0], (hi[1] - lo[1]) * w / h)
  box_w = jnp.maximum(1.0, jnp.floor(config.box_scale * extent + 0.5))
  box_h = jnp.maximum(1.0, jnp.floor(box_w * h / w + 0.5))
  centre = (lo + hi) / 2
  x0 = jnp.floor(centre[0] - (box_w - 1) / 2 + 0.5)
  y0 = jnp.floor(centre[1] - (box_h - 1) / 2 + 0.5)
  return jnp.stack([x0, y0, box_w, box_h])


def crop_rays(box, config: HandSimConfig) -> jax.Array:
  """Unit ray directions [H, W, 3] through the frame pixels the crop samples."""
  x0, y0, box_w, box_h = box[0], box[1], box[2], box[3]
  u = x0 + jnp.floor((jnp.arange(config.width) + 0.5) * box_w / config.width)
  v = y0 + jnp.floor((jnp.arange(config.height) + 0.5) * box_h / config.height)
  uu, vv = jnp.meshgrid(u, v)
  d = jnp.stack([(uu - CX) / FX, (vv - CY) / FY, jnp.ones_like(uu)], -1)
  return d / jnp.linalg.norm(d, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- ray casting


def capsule_hit(rd, pa, pb, radius) -> jax.Array:
  """Distance along unit rays ``rd`` [..., 3] from the origin to a capsule (inf: miss)."""
  ba, oa = pb - pa, -pa
  baba, bard, baoa = jnp.dot(ba, ba), rd @ ba, jnp.dot(ba, oa)
  rdoa, oaoa = rd @ oa, jnp.dot(oa, oa)
  a = baba - bard * bard
  b = baba * rdoa - baoa * bard
  c = baba * oaoa - baoa * baoa - radius * radius * baba
  h = b * b - a * c
  t_body = (-b - jnp.sqrt(jnp.maximum(h, 0.0))) / jnp.maximum(a, 1e-9)
  y = baoa + t_body * bard
  body = (h >= 0) & (y > 0) & (y < baba) & (t_body > 0)
  # Caps: the sphere at the end the body test missed towards.
  t_caps = []
  for centre in (pa, pb):
    oc = -centre
    bc = rd @ oc
    hc = bc * bc - (jnp.dot(oc, oc) - radius * radius)
    t = -bc - jnp.sqrt(jnp.maximum(hc, 0.0))
    t_caps.append(jnp.where((hc >= 0) & (t > 0), t, jnp.inf))
  return jnp.where(body, t_body, jnp.minimum(*t_caps))


def ellipsoid_hit(rd, centre, axes_33, radii) -> jax.Array:
  """Distance along unit rays to an ellipsoid (columns of ``axes_33``: its axes)."""
  o = (-centre @ axes_33) / radii  # the origin in the unit-sphere frame
  d = (rd @ axes_33) / radii
  a, b, c = jnp.sum(d * d, -1), d @ o, jnp.dot(o, o) - 1.0
  h = b * b - a * c
  t = (-b - jnp.sqrt(jnp.maximum(h, 0.0))) / a
  return jnp.where((h >= 0) & (t > 0), t, jnp.inf)


def primitives(skel, params) -> dict[str, jax.Array]:
  """The hand's capsules: ends [N, 2, 3] and radii [N]; and the palm ellipsoid."""
  s = params["scale"]
  ends, radii = [], []
  for f, name in enumerate(FINGERS + ("thumb",)):
    for i in range(3):
      ends.append(skel["chains"][f, i:i + 2])
      radii.append(s * _RADII[name][i])
  # Palm: the thumb's metacarpal pad and capsules from the wrist to the knuckles.
  wrist_mid = skel["wrist"].mean(0)
  for f in range(4):
    start = wrist_mid + (f - 1.5) / 1.5 * 0.6 * (skel["wrist"][1] - wrist_mid)
    ends.append(jnp.stack([start, skel["chains"][f, 0]]))
    radii.append(s * (11.0 if f in (1, 2) else 10.0))
  ends.append(jnp.stack([skel["wrist"][0], skel["chains"][4, 0]]))
  radii.append(s * 13.0)
  return {"ends": jnp.stack(ends), "radii": jnp.stack(radii),
          "palm_centre": skel["palm"] - 8.0 * s * skel["rotation"][:, 1],
          "palm_axes": skel["rotation"], "palm_radii": s * jnp.array([40.0, 48.0, 14.0])}


def ray_depth(rays_HW3, prims) -> jax.Array:
  """z-depth [H, W] (mm) of the nearest surface along each ray, BACKGROUND_DEPTH_MM if none."""
  t_caps = jax.vmap(lambda e, r: capsule_hit(rays_HW3, e[0], e[1], r))(prims["ends"], prims["radii"])
  t = jnp.minimum(jnp.min(t_caps, 0),
                  ellipsoid_hit(rays_HW3, prims["palm_centre"], prims["palm_axes"], prims["palm_radii"]))
  return jnp.where(jnp.isfinite(t), t * rays_HW3[..., 2], BACKGROUND_DEPTH_MM)


def normalise(depth_HW, centre_depth, config: HandSimConfig) -> jax.Array:
  """Depth (mm; 0 or far = no measurement) -> image [H, W, 1] in [-1, 1] as the NYU builder."""
  offset = (depth_HW - centre_depth) / config.depth_range_mm
  foreground = (depth_HW > 0) & (jnp.abs(offset) <= 1.0)
  # The builder's uint8 level (offset + 1) * 63.5 mapped to [-1, 1], unrounded.
  return jnp.where(foreground, (offset + 1.0) * (127.0 / 255.0) - 1.0, 1.0)[..., None].astype(jnp.float32)


def labels(skel, box, config: HandSimConfig) -> dict[str, jax.Array]:
  """The NYU builder's labels: joints (crop px), joints_uvd, joints_xyz, centre_depth, crop_box."""
  cam = joints_camera(skel)
  uvd = project(cam)
  scale = jnp.stack([config.width / box[2], config.height / box[3]])
  crop = (uvd[:, :2] - box[:2] + 0.5) * scale - 0.5
  return {"joints": crop.astype(jnp.float32), "joints_uvd": uvd.astype(jnp.float32),
          "joints_xyz": to_nyu_xyz(cam).astype(jnp.float32),
          "centre_depth": jnp.mean(uvd[:, 2]).astype(jnp.float32), "crop_box": box.astype(jnp.float32)}


def render_depth(params, config: HandSimConfig):
  """One hand -> (depth [H, W] mm, labels, skeleton, crop rays)."""
  skel = skeleton(params, config)
  box = crop_box(skel, config)
  rays = crop_rays(box, config)
  return ray_depth(rays, primitives(skel, params)), labels(skel, box, config), skel, rays


def render(params, config: HandSimConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One hand -> (image [H, W, 1] float32 in [-1, 1], labels)."""
  depth, lab, _, _ = render_depth(params, config)
  return normalise(depth, lab["centre_depth"], config), lab


def render_batch(keys_B: jax.Array, config: HandSimConfig):
  """Samples and renders one hand per key: (images [B, H, W, 1], labels [B, ...])."""
  return jax.vmap(lambda k: render(sample_params(k, config), config))(keys_B)
