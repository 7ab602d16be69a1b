"""Writes small datasets in the original on-disk formats (UnityEyes, MPIIGaze, NYU, folders).

Each writer returns the ground truth it wrote, so tests can compute expected
pixels and labels themselves instead of calling the code under test.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
import scipy.io

# ---------------------------------------------------------------- UnityEyes


def _unity_point(x_img, y_img, z, height):
  # UnityEyes stores y up: image y = height - y.
  return f"({x_img:.4f}, {height - y_img:.4f}, {z:.4f})"


def unityeyes_sample(rng, look_vec=None, height=480, width=640):
  """Landmarks (image coordinates) and JSON fields of one plausible render."""
  cx, cy = width / 2 + rng.uniform(-20, 20), height / 2 + rng.uniform(-15, 15)
  half_w, half_h = rng.uniform(55, 75), rng.uniform(20, 30)
  t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
  margin = np.stack([cx + half_w * np.cos(t), cy + half_h * np.sin(t)], -1)
  if look_vec is None:
    look_vec = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), -1.0])
    look_vec /= np.linalg.norm(look_vec)
  # The iris moves with the gaze: image x with look_vec x, image y against Unity's y-up.
  iris_c = np.array([cx + 40 * look_vec[0], cy - 40 * look_vec[1]])
  s = np.linspace(0, 2 * np.pi, 32, endpoint=False)
  iris = np.stack([iris_c[0] + 18 * np.cos(s), iris_c[1] + 18 * np.sin(s)], -1)
  caruncle = margin[[0, 1, 15, 0, 1, 15, 0]] + np.array([4.0, 0.0])
  head_pose = (rng.uniform(-15, 15) % 360, 180 + rng.uniform(-15, 15), 0.0)
  data = {
      "interior_margin_2d": [_unity_point(x, y, 9.87, height) for x, y in margin],
      "caruncle_2d": [_unity_point(x, y, 9.5, height) for x, y in caruncle],
      "iris_2d": [_unity_point(x, y, 10.1, height) for x, y in iris],
      "eye_details": {"look_vec": "({:.4f}, {:.4f}, {:.4f}, 0.0000)".format(*look_vec),
                      "pupil_size": "0.0451", "iris_size": "0.9402", "iris_texture": "eyeball_brown_1"},
      "lighting_details": {"skybox_texture": "cape_hill_4k", "skybox_exposure": "1.0412"},
      "eye_region_details": {"pca_shape_coeffs": ["0.1", "-0.2"], "primary_skin_texture": "f01"},
      "head_pose": "({:.4f}, {:.4f}, {:.4f})".format(*head_pose),
  }
  return {"data": data, "margin": margin, "iris": iris, "iris_centre": iris.mean(0),
          "look_vec": np.asarray(look_vec, np.float64), "head_pose": np.array(head_pose)}


def unityeyes_image(sample, rng, height=480, width=640):
  """An RGB render: textured skin, a white sclera ellipse, a dark iris disc."""
  yy, xx = np.mgrid[0:height, 0:width]
  image = np.stack([120 + 60 * np.sin(xx / 37.0), 100 + 50 * np.cos(yy / 23.0),
                    90 + 0 * xx], -1) + rng.integers(0, 20, (height, width, 3))
  (cx, cy), (hw, hh) = sample["margin"].mean(0), np.ptp(sample["margin"], 0) / 2
  sclera = ((xx - cx) / hw) ** 2 + ((yy - cy) / hh) ** 2 <= 1
  image[sclera] = (235, 230, 225)
  ic = sample["iris_centre"]
  image[(xx - ic[0]) ** 2 + (yy - ic[1]) ** 2 <= 18**2] = (60, 40, 30)
  image[(xx - ic[0]) ** 2 + (yy - ic[1]) ** 2 <= 6**2] = (5, 5, 5)
  return np.clip(image, 0, 255).astype(np.uint8)


def write_unityeyes(folder, count=3, seed=0, look_vecs=None, height=480, width=640):
  """Writes ``count`` pairs 1.jpg/1.json ...; returns {stem: sample}."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  samples = {}
  for i in range(1, count + 1):
    look = None if look_vecs is None else look_vecs[i - 1]
    sample = unityeyes_sample(rng, look, height, width)
    Image.fromarray(unityeyes_image(sample, rng, height, width)).save(
        os.path.join(folder, f"{i}.jpg"), quality=95)
    with open(os.path.join(folder, f"{i}.json"), "w") as f:
      json.dump(sample["data"], f, indent=1)
    samples[str(i)] = sample
  return samples


# ---------------------------------------------------------------- MPIIGaze


def mpiigaze_day(rng, count):
  """Arrays of one day file: {side: {image, gaze, pose}}, file names."""
  day = {}
  for side in ("left", "right"):
    gaze = np.stack([rng.uniform(-0.3, 0.3, count), rng.uniform(-0.3, 0.3, count), -np.ones(count)], -1)
    day[side] = {
        "image": rng.integers(0, 256, (count, 36, 60), dtype=np.uint8),
        "gaze": gaze / np.linalg.norm(gaze, axis=1, keepdims=True),
        "pose": rng.uniform(-0.3, 0.3, (count, 3)),
    }
  names = [f"{i:04d}.jpg" for i in range(1, count + 1)]
  return day, names


def write_mpiigaze_day(path, day, names):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # A dict becomes a MATLAB struct; an object array of str a cell array (N x 1 like MATLAB's).
  scipy.io.savemat(path, {"data": day, "filenames": np.array(names, dtype=object).reshape(-1, 1)})


def write_mpiigaze(root, days=None, count=4, seed=0, eval_lists=None):
  """Writes Data/Normalized/pXX/dayYY.mat (and evaluation lists); returns the truth.

  ``days``: {person: [day numbers]}; ``eval_lists``: {person: ["dayYY/NNNN.jpg side"]}.
  """
  rng = np.random.default_rng(seed)
  days = days or {0: [1, 2], 1: [1]}
  truth = {}
  for person, day_numbers in days.items():
    for d in day_numbers:
      day, names = mpiigaze_day(rng, count)
      write_mpiigaze_day(os.path.join(root, "Data", "Normalized", f"p{person:02d}", f"day{d:02d}.mat"), day, names)
      truth[(person, d)] = (day, names)
  for person, lines in (eval_lists or {}).items():
    folder = os.path.join(root, "Evaluation Subset", "sample list for eye image")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"p{person:02d}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
  return truth


# ---------------------------------------------------------------- NYU hand


def nyu_frame(rng):
  """Depth (mm, uint16 480x640) and 36 joints (u, v, d) of a hand in front of a body and wall."""
  depth = np.full((480, 640), 2600, np.uint16)  # wall
  yy, xx = np.mgrid[0:480, 0:640]
  depth[(np.abs(xx - 330) < 150) & (yy > 200)] = 1200  # body
  cu, cv, cd = rng.uniform(250, 390), rng.uniform(170, 290), rng.uniform(700, 900)
  hand = ((xx - cu) / 60.0) ** 2 + ((yy - cv) / 80.0) ** 2 <= 1
  depth[hand] = (cd + 0.5 * (xx - cu) + 0.3 * (yy - cv))[hand].astype(np.uint16)
  depth[rng.random((480, 640)) < 0.01] = 0  # Kinect holes
  angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
  radius = rng.uniform(20, 55, 36)
  u, v = cu + radius * np.cos(angles), cv + 1.3 * radius * np.sin(angles)
  d = cd + 0.5 * (u - cu) + 0.3 * (v - cv) + rng.uniform(-5, 5, 36)
  return depth, np.stack([u, v, d], -1)


def encode_depth_png(path, depth):
  """NYU's encoding: G = high byte, B = low byte, R unused."""
  rgb = np.zeros(depth.shape + (3,), np.uint8)
  rgb[..., 1], rgb[..., 2] = depth >> 8, depth & 0xFF
  Image.fromarray(rgb).save(path)


def write_nyu(root, split="train", frames=(1, 2), num_frames=4, cameras=3, seed=0, synthetic=True):
  """Writes {split}/depth_1_NNNNNNN.png (+ synthdepth) and joint_data.mat; returns the truth."""
  rng = np.random.default_rng(seed)
  folder = os.path.join(root, split)
  os.makedirs(folder, exist_ok=True)
  uvd = np.zeros((cameras, num_frames, 36, 3), np.float32)
  xyz = rng.uniform(-200, 800, (cameras, num_frames, 36, 3)).astype(np.float32)
  depths = {}
  for camera in range(1, cameras + 1):
    for frame in range(1, num_frames + 1):
      depth, joints = nyu_frame(rng)
      uvd[camera - 1, frame - 1] = joints
      if frame in frames:
        encode_depth_png(os.path.join(folder, f"depth_{camera}_{frame:07d}.png"), depth)
        depths[("real", camera, frame)] = depth
        if synthetic:
          synth = np.where((depth > 0) & (depth < 1000), depth, 0).astype(np.uint16)
          encode_depth_png(os.path.join(folder, f"synthdepth_{camera}_{frame:07d}.png"), synth)
          depths[("synthetic", camera, frame)] = synth
        Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(
            os.path.join(folder, f"rgb_{camera}_{frame:07d}.png"))
  scipy.io.savemat(os.path.join(folder, "joint_data.mat"), {"joint_uvd": uvd, "joint_xyz": xyz})
  return {"depths": depths, "uvd": uvd, "xyz": xyz}


# ---------------------------------------------------------------- image folders


def write_image_folder(folder, images: dict[str, np.ndarray]):
  """Writes {relative name: uint8 array [H, W] or [H, W, 3]} as PNG/JPEG by extension."""
  for name, array in images.items():
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)
