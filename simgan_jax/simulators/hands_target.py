"""The Kinect-like target domain for hands: the project's stand-in for NYU's real depth.

The same hand geometry as ``hands.py`` (labels are computed identically), from a
shifted pose distribution, with a forearm and background clutter in the scene,
seen through a structured-light sensor model:

* projector shadow: a structured-light camera sees no pattern where the
  projector (75 mm to the side) is occluded, so background just beside a nearer
  surface has no depth, in a band as wide as the disparity difference;
* grazing angles: surfaces seen at steep angles return no depth (a soft
  threshold on the angle between the ray and the depth-map normal);
* edge noise: the silhouette is resampled through a smooth random displacement
  field (ragged edges) and some pixels at depth jumps get a depth between the
  two sides (flying pixels);
* holes: low-frequency blobs of missing depth;
* depth noise and quantisation: disparity in 1/8 pixel steps, so depth steps grow
  with the square of the distance (about 1.4 mm at 0.7 m), plus Gaussian noise;
* forearm (a long capsule from the wrist) and clutter (the body as a tilted
  plane behind the hand, and up to two blobs near it).

Every factor has a strength in ``HandTargetConfig``; 0 switches it off, and with
all of them off ``render`` returns exactly ``hands.render`` of the same hand.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from simgan_jax.simulators import hands
from simgan_jax.simulators import target as eye_target

TARGET_SCENE = hands.HandSimConfig(
    roll_deg=(-35.0, 60.0),
    yaw_deg=(-60.0, 80.0),
    pitch_deg=(-30.0, 45.0),
    distance_mm=(600.0, 1000.0),
    scale=(0.85, 1.15),
    curl_mix=(0.3, 1.0),
    spread_deg=(-2.0, 12.0),
)
BASELINE_MM = 75.0
_MAX_SHADOW_PX = 24  # shifts tested for the projector shadow, in output pixels


@dataclasses.dataclass(frozen=True)
class HandTargetConfig:
  """Target pose distribution, scene extras and sensor factors (0 switches one off)."""

  scene: hands.HandSimConfig = TARGET_SCENE
  forearm: float = 1.0  # probability that the forearm is in the scene
  clutter: float = 1.0  # probability of the body plane; blobs at half of it
  shadow: float = 1.0  # projector-shadow strength (1: physical baseline)
  grazing: float = 1.0  # drop-out at grazing angles (1: from about 72 degrees)
  edge_jitter_px: float = 0.8  # std of the silhouette displacement field
  flying_pixels: float = 0.35  # share of depth-jump pixels given a mixed depth
  holes: float = 0.04  # share of the image in missing-depth blobs (about)
  noise_mm: float = 1.0  # depth noise std at 1 m (grows with distance squared)
  quantisation: float = 1.0  # disparity step in 1/8 px units (1: Kinect's)


SENSOR_FACTORS = tuple(f.name for f in dataclasses.fields(HandTargetConfig) if f.name != "scene")


def sensor_off(config: HandTargetConfig = HandTargetConfig()) -> HandTargetConfig:
  """``config`` with the scene extras and every sensor factor switched off."""
  return dataclasses.replace(config, **{name: 0.0 for name in SENSOR_FACTORS})


_EXTRA_DRAWS = ("forearm_on", "forearm_length", "forearm_bend_x", "forearm_bend_z", "forearm_radius",
                "body_on", "body_depth", "body_angle", "body_offset", "body_tilt",
                "blobs_on", "blob_u", "blob_v", "blob_depth", "blob_radius", "grazing_cos", "hole_level")


def sample_params(key: jax.Array, config: HandTargetConfig) -> dict:
  """{"scene": hand params, "extras": scalars, "key": for noise fields}."""
  scene_key, extra_key, noise_key = jax.random.split(key, 3)
  draws = jax.random.uniform(extra_key, (len(_EXTRA_DRAWS),))
  return {"scene": hands.sample_params(scene_key, config.scene), "extras": dict(zip(_EXTRA_DRAWS, draws)),
          "key": noise_key}


def simulator_scene_params(key: jax.Array, config: HandTargetConfig) -> dict:
  """``sample_params`` whose hand is the one ``hands.render_batch`` draws from ``key``
  (with ``config.scene`` as the simulator's config), with random target extras and
  sensor noise: rendered, the simulator hand of that key as the target sensor would
  measure it, i.e. what a perfect refiner would make of it (the hand ``oracle`` row)."""
  draws = jax.random.uniform(jax.random.fold_in(key, 1), (len(_EXTRA_DRAWS),))
  return {"scene": hands.sample_params(key, config.scene), "extras": dict(zip(_EXTRA_DRAWS, draws)),
          "key": jax.random.fold_in(key, 2)}


def _scene_depth(params, config: HandTargetConfig):
  """Depth of hand, forearm and clutter [H, W] (mm), the labels and the crop rays."""
  c, e = config.scene, params["extras"]
  skel = hands.skeleton(params["scene"], c)
  box = hands.crop_box(skel, c)
  rays = hands.crop_rays(box, c)
  prims = hands.primitives(skel, params["scene"])
  depth = hands.ray_depth(rays, prims)
  lab = hands.labels(skel, box, c)
  if config.forearm > 0:
    # Along the hand's -y axis from the wrist, bent a little off it.
    r = skel["rotation"]
    wrist = skel["wrist"].mean(0)
    direction = -r[:, 1] + 0.35 * (2 * e["forearm_bend_x"] - 1) * r[:, 0] + 0.35 * (
        2 * e["forearm_bend_z"] - 1) * r[:, 2]
    direction = direction / jnp.linalg.norm(direction)
    end = wrist + (180.0 + 120.0 * e["forearm_length"]) * direction
    radius = params["scene"]["scale"] * (24.0 + 8.0 * e["forearm_radius"])
    arm = hands.capsule_hit(rays, wrist - 10.0 * direction, end, radius) * rays[..., 2]
    depth = jnp.where((e["forearm_on"] < config.forearm) & (arm < depth), arm, depth)
  if config.clutter > 0:
    centre = lab["centre_depth"]
    # The body: a plane behind the hand (normal tilted), on one side of a random line.
    h, w = depth.shape
    yy, xx = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
    angle = 2 * math.pi * e["body_angle"]
    side = xx * jnp.cos(angle) + yy * jnp.sin(angle)
    body = centre + 70.0 + 180.0 * e["body_depth"] + 60.0 * (2 * e["body_tilt"] - 1) * side
    body_here = (side > 1.2 * e["body_offset"] - 0.4) & (e["body_on"] < config.clutter)
    depth = jnp.where(body_here & (body < depth), body, depth)
    # A blob (e.g. the other hand or an object) near the hand.
    bu, bv = 2 * e["blob_u"] - 1, 2 * e["blob_v"] - 1
    radius = 0.15 + 0.25 * e["blob_radius"]
    r2 = ((xx - bu)**2 + (yy - bv)**2) / radius**2
    blob = centre - 40.0 + 200.0 * e["blob_depth"] - 60.0 * jnp.sqrt(jnp.maximum(1 - r2, 0.0))
    blob_here = (r2 < 1) & (e["blobs_on"] < 0.5 * config.clutter)
    depth = jnp.where(blob_here & (blob < depth), blob, depth)
  return depth, lab, rays, box


def _shift(x, s: int, axis: int, fill):
  """x shifted by s pixels towards +axis (the first s filled)."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (s, 0)
  return jnp.pad(jax.lax.slice_in_dim(x, 0, x.shape[axis] - s, axis=axis), pad, constant_values=fill)


def sensor(depth, params, config: HandTargetConfig, rays, box) -> jax.Array:
  """What the structured-light sensor returns for a scene depth [H, W]: 0 = no measurement."""
  e, c = params["extras"], config.scene
  keys = jax.random.split(params["key"], 5)
  h, w = depth.shape
  far = hands.BACKGROUND_DEPTH_MM
  valid = depth < far
  px_per_frame_px = w / box[2]
  # Disparity in output pixels (the projector sits to the camera's left).
  disparity = BASELINE_MM * hands.FX / jnp.maximum(depth, 1.0) * px_per_frame_px
  out = depth
  if config.edge_jitter_px > 0:
    field = eye_target._value_noise(keys[0], (h, w), ((h // 6 + 1, w // 6 + 1, 1.0),))  # pylint: disable=protected-access
    field2 = eye_target._value_noise(keys[1], (h, w), ((h // 6 + 1, w // 6 + 1, 1.0),))  # pylint: disable=protected-access
    yy, xx = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    jy = jnp.clip(jnp.round(yy + config.edge_jitter_px * field), 0, h - 1).astype(jnp.int32)
    jx = jnp.clip(jnp.round(xx + config.edge_jitter_px * field2), 0, w - 1).astype(jnp.int32)
    out = out[jy, jx]
    valid = out < far
  if config.flying_pixels > 0:
    # Pixels at a depth jump take a depth between their own and a neighbour's.
    neighbour = jnp.maximum(_shift(out, 1, 1, far), _shift(out, 1, 0, far))
    jump = (jnp.abs(neighbour - out) > 25.0) & (jax.random.uniform(keys[2], (h, w)) < config.flying_pixels)
    mix = jax.random.uniform(jax.random.fold_in(keys[2], 1), (h, w))
    behind = jnp.where(neighbour < far, neighbour, out + 400.0)
    out = jnp.where(jump & valid, out + mix * (behind - out), out)
  missing = ~valid
  if config.shadow > 0:
    # Background at pixel p is shadowed if a nearer surface s pixels to its left
    # has a disparity larger by at least s (scaled by the shadow strength).
    for s in range(1, min(_MAX_SHADOW_PX, w - 1) + 1):
      left = _shift(disparity, s, 1, 0.0)
      left_valid = _shift(valid, s, 1, False)
      missing = missing | (left_valid & (config.shadow * (left - disparity) >= s) & (left - disparity > 0.5))
  if config.grazing > 0:
    # Normal from the depth gradient: slope = |grad d| / (lateral mm per pixel).
    gy, gx = jnp.gradient(jnp.where(valid, depth, jnp.nan))
    pixel_mm = depth / hands.FX / px_per_frame_px
    slope = jnp.sqrt(gx**2 + gy**2) / jnp.maximum(pixel_mm, 1e-3)
    # Next to the silhouette the gradient is undefined: the surface turns away there.
    cos = 1.0 / jnp.sqrt(1.0 + jnp.nan_to_num(slope, nan=4.0)**2)
    threshold = config.grazing * (0.22 + 0.15 * e["grazing_cos"])
    drop = jax.random.uniform(keys[3], (h, w)) * 0.1 + threshold
    missing = missing | (cos < drop)
  if config.holes > 0:
    field = eye_target._value_noise(keys[4], (h, w), ((h // 12 + 1, w // 12 + 1, 1.0),  # pylint: disable=protected-access
                                                      (h // 4 + 1, w // 4 + 1, 0.5)))
    # The field is about standard normal: its upper tail covers about `holes`.
    level = jax.scipy.special.ndtri(1.0 - config.holes) + 0.4 * (2 * e["hole_level"] - 1)
    missing = missing | (field > level)
  if config.noise_mm > 0 or config.quantisation > 0:
    z = out
    if config.noise_mm > 0:
      z = z + config.noise_mm * (z / 1000.0)**2 * jax.random.normal(jax.random.fold_in(keys[3], 7), (h, w))
    if config.quantisation > 0:
      step = config.quantisation / 8.0
      d = BASELINE_MM * hands.FX / jnp.maximum(z, 1.0)
      z = BASELINE_MM * hands.FX / jnp.maximum(jnp.round(d / step) * step, step)
    out = jnp.where(valid, z, out)
  return jnp.where(missing, 0.0, out)


def render(params, config: HandTargetConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One target hand -> (image [H, W, 1] float32 in [-1, 1], labels as hands.labels)."""
  depth, lab, rays, box = _scene_depth(params, config)
  measured = sensor(depth, params, config, rays, box)
  return hands.normalise(measured, lab["centre_depth"], config.scene), lab


def render_batch(keys_B: jax.Array, config: HandTargetConfig, simulator_scenes: bool = False):
  """Samples and renders one target hand per key: (images [B, H, W, 1], labels); with
  ``simulator_scenes`` the hands are the simulator's (``simulator_scene_params``)."""
  sample = simulator_scene_params if simulator_scenes else sample_params
  return jax.vmap(lambda k: render(sample(k, config), config))(keys_B)
