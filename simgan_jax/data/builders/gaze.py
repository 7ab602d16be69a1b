"""Gaze direction conventions shared by the UnityEyes and MPIIGaze builders.

We store gaze in MPIIGaze's normalised camera coordinates: x to the right of the
image, y down, z from the camera into the scene, so an eye looking straight at
the camera has gaze (0, 0, -1). Angles follow MPIIGaze (Zhang et al.):
pitch = asin(-y) (positive when looking up), yaw = atan2(-x, -z) (positive when
looking towards the image's left, i.e. the subject's right).
"""

from __future__ import annotations

import numpy as np


def normalize(vectors_N3: np.ndarray) -> np.ndarray:
  vectors_N3 = np.asarray(vectors_N3, np.float64)
  return vectors_N3 / np.linalg.norm(vectors_N3, axis=-1, keepdims=True)


def pitchyaw(gaze_N3: np.ndarray) -> np.ndarray:
  """[..., 3] camera-coordinate gaze vectors -> [..., 2] (pitch, yaw) in radians."""
  g = normalize(gaze_N3)
  pitch = np.arcsin(np.clip(-g[..., 1], -1.0, 1.0))
  yaw = np.arctan2(-g[..., 0], -g[..., 2])
  return np.stack([pitch, yaw], axis=-1).astype(np.float32)


def unity_to_camera(look_vec_3: np.ndarray) -> np.ndarray:
  """UnityEyes ``eye_details.look_vec`` -> MPIIGaze camera coordinates.

  UnityEyes reports the vector in its camera frame with y *up* (Unity is
  y-up, and its 2D landmarks need ``image_y = height - y``), x to the image
  right and z away from the camera (an eye looking at the camera has z < 0).
  Only y flips. This agrees with GazeML's UnityEyes loader, which negates x,
  takes asin(y), atan2(x, z) and folds yaw by pi: the same angles as ours.
  """
  x, y, z = np.asarray(look_vec_3, np.float64)[:3]
  return normalize(np.array([x, -y, z]))


def mirror_gaze(gaze_N3: np.ndarray) -> np.ndarray:
  """Gaze of the horizontally mirrored image: x negates."""
  return np.asarray(gaze_N3) * np.array([-1.0, 1.0, 1.0], np.asarray(gaze_N3).dtype)


def mirror_rotation_vector(rvec_N3: np.ndarray) -> np.ndarray:
  """Head-pose rotation vector of the mirrored image.

  Mirroring is M = diag(-1, 1, 1); the mirrored rotation is M R M, whose
  rotation vector is (r_x, -r_y, -r_z) (a reflection flips the rotation's
  sense, and M maps the axis to (-r_x, r_y, r_z)).
  """
  return np.asarray(rvec_N3) * np.array([1.0, -1.0, -1.0], np.asarray(rvec_N3).dtype)
