"""Pose estimator: heatmaps round trip, the within-d metric, the hourglass, one training run."""

import jax
import jax.numpy as jnp
import numpy as np

from simgan_jax.tasks import pose_net as pose


def test_heatmap_targets_decode_back_within_a_pixel():
  rng = np.random.default_rng(0)
  joints = rng.uniform(1, 62, (3, 14, 2)).astype(np.float32)  # 224-pixel image coordinates / 3.5
  hm = pose.to_heatmap_coords(jnp.asarray(joints) * 3.5, 224, 64)
  decoded = pose.to_image_coords(pose.decode_heatmaps(pose.heatmap_targets(hm, 64)), 224, 64)
  # Within one heatmap pixel (3.5 image pixels); catches swapped x/y or a half-pixel offset error.
  err = np.abs(np.asarray(decoded) - joints * 3.5)
  assert err.max() <= 3.5 * 0.5 + 1e-4, err.max()
  # In heatmap pixels the quarter-pixel refinement lands within half a pixel.
  assert np.abs(np.asarray(pose.decode_heatmaps(pose.heatmap_targets(hm, 64))) - np.asarray(hm)).max() <= 0.5


def test_within_d_needs_every_joint():
  true = np.zeros((4, 14, 2))
  pred = np.zeros((4, 14, 2))
  pred[1, 3] = [3.0, 4.0]  # one joint 5 px off
  pred[2, :] = [6.0, 0.0]  # all joints 6 px off
  pred[3, 0] = [0.0, 30.0]
  errors = pose.joint_errors_px(pred, true, 224)
  curve = pose.within_curve(errors, thresholds=(0, 4, 5, 6, 30))
  assert curve == {0: 0.25, 4: 0.25, 5: 0.5, 6: 0.75, 30: 1.0}  # a mean-error rule would count image 3
  np.testing.assert_allclose(errors.mean(), (5 + 14 * 6 + 30) / 56)
  # At 64 px images errors are reported in 224-crop pixels.
  np.testing.assert_allclose(pose.joint_errors_px(pred[1:2], true[1:2], 64).max(), 5 * 3.5)


def test_hourglass_shape_and_parameter_count():
  model = pose.StackedHourglass(num_stacks=2, features=16, depth=2, heatmap_size=8)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
  out = jax.eval_shape(model.apply, variables, jnp.zeros((3, 32, 32, 1)))
  assert out.shape == (2, 3, 8, 8, 14)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables))
  # Counted by hand: Residual(cin, F) = 1x1 cin->F/2, 3x3 F/2->F/2, 1x1 F/2->F (+ biases),
  # three GroupNorms over cin, F/2, F/2, and a 1x1 skip when cin != F.
  def residual(cin, f):
    h = f // 2
    n = cin * h + h + 9 * h * h + h + h * f + f + 2 * (cin + h + h)
    return n + (cin * f + f if cin != f else 0)
  f = 16
  hourglass2 = 7 * residual(f, f)  # depth 2: upper, down, up and the inner upper, down, bottom, up
  stem = 49 * 4 + 4 + 2 * 4 + residual(4, 8) + residual(8, 8) + residual(8, 16)
  heads = 2 * (residual(f, f) + f * f + f + f * 14 + 14)
  remap = f * f + f + 14 * f + f
  assert count == stem + 2 * hourglass2 + heads + remap
  # The paper size: 2 stacks of 256 features, depth 4.
  paper = pose.StackedHourglass()
  v = jax.eval_shape(paper.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 1)))
  assert 6e6 < sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v)) < 7.5e6  # Newell's 2-stack ~6.7M
  assert jax.eval_shape(paper.apply, v, jnp.zeros((1, 224, 224, 1))).shape == (2, 1, 64, 64, 14)


def test_hourglass_implementations_agree_and_bfloat16_tracks_float32():
  x = jax.random.uniform(jax.random.PRNGKey(3), (2, 16, 16, 1), minval=-1, maxval=1)
  make = lambda impl, dtype=jnp.float32: pose.StackedHourglass(  # noqa: E731
      num_stacks=1, features=32, depth=1, heatmap_size=4, conv_impl=impl, dtype=dtype)
  params = jax.jit(make("xla").init)(jax.random.PRNGKey(0), x)
  # The same parameters (flax.linen.Conv's) whatever the implementation.
  jax.tree.map(np.testing.assert_array_equal, params, jax.jit(make("native").init)(jax.random.PRNGKey(0), x))

  def out_and_grad(impl, dtype=jnp.float32):
    model = make(impl, dtype)
    return jax.jit(lambda p: (model.apply(p, x), jax.grad(lambda q: jnp.sum(model.apply(q, x)**2))(p)))(params)

  ref, ref_grad = out_and_grad("xla")
  scale = float(jnp.max(jnp.abs(ref)))
  # Biases just before a group norm have a zero gradient in exact arithmetic (rounding
  # noise here), so the tolerance is relative to the largest gradient of all.
  gscale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ref_grad))
  # native takes the 16 -> 16 3x3 layers at 32 features, the 1x1 layers go through hybrid's path.
  for impl in ("native",):
    out, grad = out_and_grad(impl)
    np.testing.assert_allclose(out, ref, atol=2e-4 * scale)  # float32 rounding amplified by the group norms
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4 * gscale), ref_grad, grad)
  out16, _ = out_and_grad("native", jnp.bfloat16)  # bfloat16 layers all take hybrid's path
  assert out16.dtype == jnp.float32
  err = float(jnp.max(jnp.abs(out16 - ref))) / scale
  # bfloat16 ran (not bit-equal) and, through ~20 convolutions and group norms, stays
  # within 10% of the heatmaps' range.
  assert 0 < err < 0.1, err


def test_augmentation_moves_joints_with_the_pixels():
  image = jnp.ones((32, 32, 1)).at[10, 20, 0].set(-1.0)  # one foreground pixel at (x=20, y=10)
  joints = jnp.array([[20.0, 10.0]] * 14)
  out, moved = pose.augment(jax.random.PRNGKey(3), image, joints)
  y, x = np.argwhere(np.asarray(out[..., 0]) < 0)[0]
  # Nearest-neighbour resampling: the pixel lands within a pixel of where its joint went.
  assert np.hypot(x - moved[0, 0], y - moved[0, 1]) <= 1.0
  assert not np.allclose(moved, joints)


def test_smoke_training_on_the_simulator(tmp_path):
  from simgan_jax.configs import pose as pose_config
  from simgan_jax.tasks import pose_data
  from simgan_jax.tasks import loop, pose as pose_task

  c = pose_config.get_config("smoke")
  c.cache_dir = str(tmp_path / "cache")
  eval_sets = {"sim": pose_data.eval_set("handsim", c)}
  results = loop.train_estimator(pose_task.TASK, c, pose_data.train_source("handsim", c), eval_sets,
                                               str(tmp_path / "run"))
  assert results["steps"] == 3
  r = results["eval"]["sim"]
  assert r["num_images"] == 64 and np.isfinite(r["mean_joint_error_px"])
  assert 0.0 <= r["within_px"]["5"] <= r["within_px"]["20"] <= 1.0


def _fit_few_images(tmp_path, loss: str) -> tuple[float, float]:
  """(mean joint error after fitting 16 simulator hands without augmentation, the error
  of always predicting their mean pose), px of a 224 crop."""
  from simgan_jax.configs import pose as pose_config
  from simgan_jax.data import sources as sources_lib
  from simgan_jax.tasks import pose_data
  from simgan_jax.tasks import loop, pose as pose_task

  c = pose_config.get_config("smoke")
  c.cache_dir = str(tmp_path / "cache")
  c.num_simulator_eval = 16
  c.num_steps, c.log_every, c.checkpoint_every = 200, 200, 200
  c.augment.max_rotation_deg, c.augment.scale, c.augment.max_shift = 0.0, (1.0, 1.0), 0.0
  c.optimizer.learning_rate = 1e-3
  c.heatmap_loss = loss
  images, joints = pose_data.eval_set("handsim", c)
  source = sources_lib.ArraySource(images, {"joints": joints})
  results = loop.train_estimator(pose_task.TASK, c, source, {"train": (images, joints)}, str(tmp_path / loss))
  mean_pose = pose.joint_errors_px(np.broadcast_to(joints.mean(0), joints.shape), joints, c.image_width)
  return results["eval"]["train"]["mean_joint_error_px"], float(mean_pose.mean())


def test_estimator_fits_a_few_images(tmp_path):
  # With the mean squared error the :cpu estimator sat at an all-zero output and ~100 px
  # (worse than the mean pose) after 300 steps; the softmax loss must localise joints.
  error, mean_pose = _fit_few_images(tmp_path, "softmax")
  assert error < 0.6 * mean_pose, (error, mean_pose)  # 200 steps: softmax 19.7 px, mse 75.8, mean pose 43.3


def test_heatmap_losses_prefer_the_target():
  rng = np.random.default_rng(0)
  joints = jnp.asarray(rng.uniform(1, 6, (2, 14, 2)), jnp.float32)
  target = pose.heatmap_targets(joints, 8)
  good = jnp.log(target + 1e-6)[None]
  shifted = jnp.roll(good, 2, axis=2)
  for kind in ("softmax",):
    assert float(pose.heatmap_loss(good, target, kind)) < float(pose.heatmap_loss(shifted, target, kind))
  assert float(pose.heatmap_loss(target[None], target, "mse")) == 0.0
  with np.testing.assert_raises(ValueError):
    pose.heatmap_loss(good, target, "l1")
