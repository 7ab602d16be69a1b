import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax import models
from simgan_jax.configs import default


def count(params):
  return sum(x.size for x in jax.tree.leaves(params))


def conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def test_eye_refiner_parameter_count():
  r = models.make_refiner(default.get_config())
  params = r.init(jax.random.PRNGKey(0), jnp.zeros((1, 35, 55, 1)))["params"]
  expected = conv(3, 1, 64) + 4 * 2 * conv(3, 64, 64) + conv(1, 64, 1)
  assert expected == 296_129
  assert count(params) == expected


def test_eye_discriminator_parameter_count_and_patch_map():
  d = models.make_discriminator(default.get_config())
  params = d.init(jax.random.PRNGKey(0), jnp.zeros((1, 35, 55, 1)), train=False)["params"]
  expected = conv(3, 1, 96) + conv(3, 96, 64) + conv(3, 64, 32) + conv(1, 32, 32) + conv(1, 32, 2)
  assert expected == 75_906
  assert count(params) == expected
  logits = d.apply({"params": params}, jnp.zeros((2, 35, 55, 1)), train=False)
  assert logits.shape == (2, 9, 14, 2)  # 126 patches, SIMGAN.md


def test_hand_preset_patch_map_and_refiner_shape():
  c = default.get_config()
  c.discriminator.preset = "hand"
  c.refiner.kernel_size, c.refiner.num_blocks = 7, 10
  assert models.patch_map_shape(models.make_discriminator(c), (224, 224, 1)) == (7, 7)
  r = models.make_refiner(c)
  params = jax.eval_shape(r.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 1)))["params"]
  assert count(params) == conv(7, 1, 64) + 10 * 2 * conv(7, 64, 64) + conv(1, 64, 1)


def test_patch9_preset_sees_9x9_pixel_patches():
  """One changed pixel moves exactly the patch logits whose 9x9 window holds it (3x3
  convolutions at strides 1, 2, 1, then 1x1: 9 px every 2 px), and no other."""
  c = default.get_config()
  c.discriminator.preset = "patch9"
  d = models.make_discriminator(c)
  assert models.patch_map_shape(d, (64, 64, 1)) == (32, 32)
  x = jax.random.uniform(jax.random.PRNGKey(0), (1, 64, 64, 1), minval=-1.0, maxval=1.0)
  params = d.init(jax.random.PRNGKey(1), x, train=False)["params"]
  # Patch j covers pixels 2j - 3 .. 2j + 5 (SAME padding at stride 2 pads after): the
  # logits a pixel p moves are those with 2j - 3 <= p <= 2j + 5, i.e. 4 or 5 per axis.
  apply = jax.jit(lambda im: d.apply({"params": params}, im, train=False)[0, ..., 0])
  base = np.asarray(apply(x))
  for r, col in ((30, 41), (31, 40), (10, 10)):
    g = np.asarray(apply(x.at[0, r, col, 0].add(0.5))) - base
    expected = [np.array([j for j in range(32) if 2 * j - 3 <= p <= 2 * j + 5]) for p in (r, col)]
    rows, cols = np.nonzero(np.abs(g) > 0)
    np.testing.assert_array_equal(np.unique(rows), expected[0])
    np.testing.assert_array_equal(np.unique(cols), expected[1])


def test_colour_refiner_keeps_range_and_channels():
  c = default.get_config()
  c.channels = 3
  r = models.make_refiner(c)
  x = jnp.ones((2, 20, 30, 3)) * 3
  params = r.init(jax.random.PRNGKey(0), x)
  y = r.apply(params, x)
  assert y.shape == x.shape and float(jnp.max(jnp.abs(y))) <= 1.0


def test_batch_norm_discriminator_has_statistics():
  c = default.get_config()
  c.discriminator.batch_norm = True
  variables = models.make_discriminator(c).init(jax.random.PRNGKey(0), jnp.zeros((1, 35, 55, 1)), train=False)
  assert set(variables) == {"params", "batch_stats"}
  assert len(variables["batch_stats"]) == 4


def test_unknown_preset_names_the_field():
  c = default.get_config()
  c.discriminator.preset = "face"
  with pytest.raises(ValueError, match="config.discriminator.preset: unknown 'face'"):
    models.make_discriminator(c)


def test_reflect_padding_keeps_shapes_and_parameter_count():
  c = default.get_config()
  c.refiner.padding = "REFLECT"
  r = models.make_refiner(c)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 35, 55, 1))
  params = r.init(jax.random.PRNGKey(0), x)
  assert count(params) == 296_129
  assert r.apply(params, x).shape == x.shape
  # A constant image stays constant under mirror padding, unlike under zero padding.
  flat = jnp.full((1, 35, 55, 1), 0.5)
  out = r.apply(params, flat)
  assert float(jnp.max(out) - jnp.min(out)) < 1e-5


def test_refiner_noise_input_is_used_keyed_per_example_and_required():
  config = default.get_config("smoke")
  config.refiner.noise_channels = 2
  refiner = models.make_refiner(config)
  x = jnp.zeros((3, 35, 55, 1))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(3))
  noise = models.refiner_noise(refiner, keys, (35, 55))
  assert noise.shape == (3, 35, 55, 2)
  params = refiner.init(jax.random.PRNGKey(0), x, noise)["params"]
  assert params["conv_in"]["kernel"].shape[2] == 3  # image + 2 noise channels
  out = refiner.apply({"params": params}, x, noise)
  # A flat input refines to different images under different noise (the noise reaches
  # the output), and the same key gives the same noise (reproducible refined sets).
  assert float(jnp.std(out[0] - out[1])) > 1e-4
  np.testing.assert_array_equal(models.refiner_noise(refiner, keys, (35, 55)), noise)
  with pytest.raises(ValueError, match="noise_channels=2 needs noise"):
    refiner.apply({"params": params}, x)
  config.refiner.noise_channels = 0
  assert models.refiner_noise(models.make_refiner(config), keys, (35, 55)) is None


def _bilinear_reference(grid, h, w):
  """Upsampling with the grid's points at the cells' centres, edges continued (numpy)."""
  gh, gw = grid.shape

  def taps(n, g):
    pos = np.clip((np.arange(n) + 0.5) * g / n - 0.5, 0, g - 1)
    lo = np.minimum(np.floor(pos).astype(int), g - 1)
    hi = np.minimum(lo + 1, g - 1)
    return lo, hi, pos - lo

  ylo, yhi, fy = taps(h, gh)
  xlo, xhi, fx = taps(w, gw)
  top = grid[ylo][:, xlo] * (1 - fx) + grid[ylo][:, xhi] * fx
  bottom = grid[yhi][:, xlo] * (1 - fx) + grid[yhi][:, xhi] * fx
  return top * (1 - fy[:, None]) + bottom * fy[:, None]


def test_smooth_noise_is_a_grid_of_normals_upsampled_per_example():
  """refiner.smooth_noise_cells=(1, 4): a constant per image and a 4x6 grid (35x55) upsampled
  with points at the cells' centres; the normal channels are the same as without it."""
  key = jax.random.PRNGKey(3)
  field = np.asarray(models.smooth_noise(key, (35, 55), (1, 4)))
  assert field.shape == (35, 55, 2)
  assert models.smooth_noise_grid(1, (35, 55)) == (1, 1)
  assert models.smooth_noise_grid(4, (35, 55)) == (4, 6)
  np.testing.assert_allclose(field[..., 0], field[0, 0, 0])  # one value per image
  grid = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (4, 6)))
  np.testing.assert_allclose(field[..., 1], _bilinear_reference(grid, 35, 55), atol=1e-5)

  config = default.get_config("smoke")
  config.refiner.noise_channels, config.refiner.dropout_value = 1, 1.0
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(2))
  plain = models.refiner_noise(models.make_refiner(config), keys, (35, 55))
  config.refiner.smooth_noise_cells = (1, 4)
  refiner = models.make_refiner(config)
  noise = models.refiner_noise(refiner, keys, (35, 55))
  assert noise.shape == (2, 35, 55, 4)  # normal, 2 smooth, the drop-out head's uniform
  np.testing.assert_array_equal(noise[..., :1], plain[..., :1])
  np.testing.assert_array_equal(noise[..., -1:], plain[..., -1:])
  assert float(jnp.abs(noise[0, ..., 1:3] - noise[1, ..., 1:3]).max()) > 0.1  # per example
  # The trunk reads image + normal + smooth channels, not the uniform one.
  x = jnp.zeros((2, 35, 55, 1))
  params = refiner.init(jax.random.PRNGKey(0), x, noise)["params"]
  assert params["conv_in"]["kernel"].shape[2] == 4
  with pytest.raises(ValueError, match=r"smooth_noise_cells=\(1, 4\).*needs noise of shape"):
    refiner.apply({"params": params}, x, plain)


def test_residual_refiner_starts_as_the_identity_and_learns_a_clipped_change():
  import optax

  config = default.get_config("smoke")
  config.refiner.output_activation = "residual"
  config.refiner.noise_channels = 1  # the skip adds the image, not the noise channel
  refiner = models.make_refiner(config)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 35, 55, 1), minval=-1.0, maxval=1.0)
  x = x.at[:, :4].set(1.0)  # saturated pixels (depth background) too
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(2))
  noise = models.refiner_noise(refiner, keys, (35, 55))
  params = refiner.init(jax.random.PRNGKey(0), x, noise)["params"]
  np.testing.assert_array_equal(refiner.apply({"params": params}, x, noise), x)  # exactly, before training

  # Gradients reach the first layer within a few steps, and the change is clipped to [-1, 1].
  def loss(p):
    return jnp.mean((refiner.apply({"params": p}, x, noise) - (x - 0.5)) ** 2)

  opt = optax.sgd(0.5)
  state = opt.init(params)
  for _ in range(3):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state)
    params = optax.apply_updates(params, updates)
  assert float(jnp.abs(grads["conv_in"]["kernel"]).max()) > 0  # reached through conv_out
  out = refiner.apply({"params": params}, x, noise)
  assert float(loss(params)) < 0.25 * float(jnp.mean(0.5 ** 2))
  assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
  params["conv_out"]["bias"] = jnp.full_like(params["conv_out"]["bias"], -5.0)
  assert float(refiner.apply({"params": params}, x, noise).max()) == -1.0  # clipped, not wrapped
  config.refiner.output_activation = "sigmoid"
  with pytest.raises(ValueError, match="output_activation: 'sigmoid' is not one of"):
    models.make_refiner(config).apply({"params": params}, x, noise)


def test_dropout_head_drops_binary_pixels_and_learns_by_the_straight_through_gradient():
  config = default.get_config("smoke")
  config.refiner.output_activation = "residual"
  config.refiner.dropout_value = 1.0
  refiner = models.make_refiner(config)
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 64, 64, 1), minval=-1.0, maxval=0.0)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(4))
  noise = models.refiner_noise(refiner, keys, (64, 64))
  assert noise.shape == (4, 64, 64, 1) and 0.0 <= float(noise.min()) and float(noise.max()) < 1.0
  np.testing.assert_array_equal(models.refiner_noise(refiner, keys, (64, 64)), noise)  # keyed
  params = refiner.init(jax.random.PRNGKey(0), x, noise)["params"]
  out = refiner.apply({"params": params}, x, noise)
  # At initialisation: the identity, except where u < sigmoid(-5) = 0.67%, set to 1.0 exactly.
  dropped = np.asarray(noise < jax.nn.sigmoid(models.DROP_LOGIT_INIT))
  assert 40 < dropped.sum() < 180  # of 16,384 pixels: 110 expected
  np.testing.assert_array_equal(np.asarray(out)[dropped], 1.0)
  np.testing.assert_array_equal(np.asarray(out)[~dropped], np.asarray(x)[~dropped])
  # Straight-through: d sum(out) / d (drop bias) = sum (1.0 - value) p (1 - p), every pixel,
  # dropped or not; a dropped pixel passes no gradient to the image.
  p = jax.nn.sigmoid(models.DROP_LOGIT_INIT)
  grad = jax.grad(lambda q: jnp.sum(refiner.apply({"params": q}, x, noise)))(params)
  np.testing.assert_allclose(float(grad["conv_drop"]["bias"][0]), float(jnp.sum((1.0 - x) * p * (1 - p))),
                             rtol=1e-4)
  dx = jax.grad(lambda im: jnp.sum(refiner.apply({"params": params}, im, noise)))(x)
  np.testing.assert_array_equal(np.asarray(dx), 1.0 - dropped)
  # A certain drop sets every pixel; the uniform channel is not a network input.
  params["conv_drop"]["bias"] = jnp.full_like(params["conv_drop"]["bias"], 50.0)
  np.testing.assert_array_equal(refiner.apply({"params": params}, x, noise), 1.0)
  assert params["conv_in"]["kernel"].shape[2] == 1
  with pytest.raises(ValueError, match=r"noise_channels=0 with dropout_value=1.0 \(\+1 uniform channel\) needs noise"):
    refiner.apply({"params": params}, x)


def test_local_dropout_head_sees_only_its_neighbourhood_and_identity_only_drops():
  """dropout_head_kernel=5: the drop logit at a pixel depends on the input's 5x5 block
  around it and nothing else; with output_activation="identity" R has no trunk and
  returns the input except for dropped pixels."""
  config = default.get_config("smoke")
  config.refiner.output_activation = "identity"
  config.refiner.dropout_value = 1.0
  config.refiner.dropout_head_kernel = 5
  refiner = models.make_refiner(config)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 1), minval=-1.0, maxval=0.0)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(2))
  noise = models.refiner_noise(refiner, keys, (32, 32))
  params = refiner.init(jax.random.PRNGKey(0), x, noise)["params"]
  assert set(params) == {"drop_head"}  # no trunk
  out = np.asarray(refiner.apply({"params": params}, x, noise))
  dropped = np.asarray(noise < jax.nn.sigmoid(models.DROP_LOGIT_INIT))
  assert dropped.any() and not dropped.all()
  np.testing.assert_array_equal(out[dropped], 1.0)
  np.testing.assert_array_equal(out[~dropped], np.asarray(x)[~dropped])
  # Give the zero-initialised logit layer weights, then move one input pixel: exactly the
  # logits within 2 pixels of it move (a wider or a trunk-fed head moves more).
  head = params["drop_head"]
  head["logit"]["kernel"] = jax.random.normal(jax.random.PRNGKey(2), head["logit"]["kernel"].shape)
  logit = lambda im: np.asarray(models.LocalDropHead(5).apply({"params": head}, im))  # noqa: E731
  moved = np.abs(logit(x.at[0, 16, 16, 0].add(0.7)) - logit(x))[0, :, :, 0] > 0
  expected = np.zeros((32, 32), bool)
  expected[14:19, 14:19] = True
  np.testing.assert_array_equal(moved, expected)
  # The head learns: the straight-through gradient reaches the local layer.
  grad = jax.grad(lambda q: jnp.sum(refiner.apply({"params": q}, x, noise)))(params)
  assert float(jnp.abs(grad["drop_head"]["hidden"]["kernel"]).sum()) > 0
  # With the trunk (residual output) the local head is the same sub-network.
  config.refiner.output_activation = "residual"
  assert {"drop_head", "conv_in"} <= set(
      models.make_refiner(config).init(jax.random.PRNGKey(0), x, noise)["params"])
  config.refiner.output_activation = "identity"
  config.refiner.dropout_head_kernel = 0
  with pytest.raises(ValueError, match="'identity' has no trunk for the 1x1 drop-out head"):
    models.make_refiner(config).init(jax.random.PRNGKey(0), x, noise)


def test_grid_phase_input_places_a_change_on_the_grid():
  """With grid_phase_period=8 the refiner's first layer sees 4 phase channels; its output
  then depends on where in the 8-pixel grid an image sits: a flat image gets a change
  that repeats every 8 pixels and not every 1 or 4 (without the input: the same everywhere)."""
  config = default.get_config("smoke")
  config.refiner.output_activation = "linear"
  config.refiner.grid_phase_period = 8
  refiner = models.make_refiner(config)
  x = jnp.zeros((1, 32, 48, 1))
  params = refiner.init(jax.random.PRNGKey(0), x)["params"]
  assert params["conv_in"]["kernel"].shape[2] == 5  # image + sin/cos of y and x
  out = np.asarray(refiner.apply({"params": params}, x))[0, 8:24, 8:40, 0]  # away from the border
  np.testing.assert_allclose(out, np.roll(out, 8, axis=1), atol=1e-5)
  np.testing.assert_allclose(out, np.roll(out, 8, axis=0), atol=1e-5)
  assert np.abs(out - np.roll(out, 1, axis=1)).max() > 1e-3
  assert np.abs(out - np.roll(out, 4, axis=0)).max() > 1e-3
  phase = np.asarray(models.grid_phase((16, 16), 8))
  np.testing.assert_allclose(phase[0, 0], [0, 1, 0, 1], atol=1e-6)
  np.testing.assert_allclose(phase[2, 4], [1, 0, 0, -1], atol=1e-6)
  config.refiner.grid_phase_period = 0
  flat = models.make_refiner(config)
  p0 = flat.init(jax.random.PRNGKey(0), x)["params"]
  out0 = np.asarray(flat.apply({"params": p0}, x))[0, 8:24, 8:40, 0]
  np.testing.assert_allclose(out0, out0[0, 0], atol=1e-5)


def _jpeg_reference(image_HW, step_64, n=8):
  """JPEG-like rounding written independently: scipy's orthonormal DCT-II per edge-padded
  block, coefficients rounded to multiples of their step, inverse DCT, crop, clip."""
  from scipy import fft
  h, w = image_HW.shape
  v = np.pad(image_HW, ((0, -h % n), (0, -w % n)), mode="edge").astype(np.float64)
  out = np.empty_like(v)
  q = step_64.reshape(n, n)
  for y in range(0, v.shape[0], n):
    for x in range(0, v.shape[1], n):
      c = fft.dctn(v[y:y + n, x:x + n], norm="ortho")
      out[y:y + n, x:x + n] = fft.idctn(np.round(c / q) * q, norm="ortho")
  return np.clip(out[:h, :w], -1, 1)


def test_block_quantizer_is_jpeg_rounding_on_the_absolute_grid():
  """The stage equals per-block DCT rounding by an independent implementation (scipy), on
  an image whose size is not a multiple of 8 (edge-padded partial blocks); it starts near
  the identity; the image's gradient passes straight through; the steps learn by the
  learned-step-size rule."""
  rng = np.random.default_rng(0)
  image = rng.uniform(-0.9, 0.9, (1, 19, 27, 1)).astype(np.float32)
  stage = models.BlockQuantizer(8)
  params = stage.init(jax.random.PRNGKey(0), image)["params"]
  assert params["log_step"].shape == (64,)
  start = np.asarray(stage.apply({"params": params}, image))
  np.testing.assert_allclose(start[0, ..., 0], _jpeg_reference(image[0, ..., 0], np.full(64, 0.05)), atol=2e-5)
  # Coarse steps, different per coefficient (a transposed DCT or a shifted grid differs).
  p = jnp.asarray(rng.uniform(0.05, 0.25, 64), jnp.float32)
  coarse = {"log_step": p}
  step = np.exp(models.BLOCK_LOG_STEP_INIT + models.BLOCK_LOG_STEP_RATE * np.asarray(p))
  out = np.asarray(stage.apply({"params": coarse}, image))
  np.testing.assert_allclose(out[0, ..., 0], _jpeg_reference(image[0, ..., 0], step), atol=2e-5)
  assert np.abs(out - image).max() > 0.05  # the steps are coarse enough to show
  # Straight-through: the stage is the identity map for the image's gradient.
  g = rng.normal(size=image.shape).astype(np.float32)
  grad = jax.grad(lambda x: jnp.sum(stage.apply({"params": coarse}, x) * g))(jnp.asarray(image))
  inside = np.abs(out) < 1.0
  np.testing.assert_allclose(np.asarray(grad)[inside], g[inside], atol=1e-5)
  # The step's gradient: sum over that coefficient's instances of (round(c/q) - c/q) * dL/dout_coef.
  image_one = np.zeros((1, 8, 8, 1), np.float32) + 0.3  # one block, a DC coefficient of 2.4
  loss = lambda pp: jnp.sum(stage.apply({"params": pp}, jnp.asarray(image_one)))  # noqa: E731
  dp = np.asarray(jax.grad(loss)(coarse)["log_step"])
  c = 0.3 * 8
  r = c / step[0]
  # d out_pixels / d coef_DC = 1/8 each, 64 pixels: dL/dcoef_DC = 8; dq/dp = rate * q.
  expected = (np.round(r) - r) * 8 * models.BLOCK_LOG_STEP_RATE * step[0]
  np.testing.assert_allclose(dp[0], expected, rtol=1e-4)
  np.testing.assert_allclose(dp[1:], 0.0, atol=1e-6)  # a flat block has no other coefficient


def test_refiner_block_quantizer_follows_the_trunk():
  """refiner.block_quantizer=8 adds the stage's 64 steps after the trunk's output."""
  config = default.get_config("smoke")
  config.refiner.output_activation = "residual"
  config.refiner.block_quantizer = 8
  refiner = models.make_refiner(config)
  x = jnp.asarray(np.random.default_rng(1).uniform(-0.5, 0.5, (2, 16, 24, 1)), jnp.float32)
  params = refiner.init(jax.random.PRNGKey(0), x)["params"]
  assert params["block_quantizer"]["log_step"].shape == (64,)
  params["block_quantizer"]["log_step"] = jnp.full((64,), 0.1)  # q = 0.14
  out = np.asarray(refiner.apply({"params": params}, x))
  q = float(np.exp(models.BLOCK_LOG_STEP_INIT + models.BLOCK_LOG_STEP_RATE * 0.1))
  # The residual trunk is the identity at start, so the output is the quantised input.
  for i in range(2):
    np.testing.assert_allclose(out[i, ..., 0], _jpeg_reference(np.asarray(x[i, ..., 0]), np.full(64, q)), atol=2e-5)
  assert "learned 8x8 block quantiser" in models.refiner_extras(config.refiner)


def test_jpeg_quantizer_is_the_eye_targets_jpeg_at_a_per_image_quality():
  """The stage at quality scale s equals the eye target's own JPEG-like blocking
  (simulators/target.py: 0-255 levels shifted by 128, the standard table times s), an
  independent implementation; s = exp(mu + sigma z) per image; the image gradient passes
  straight through; the scale's parameters learn only through the sown log density."""
  from simgan_jax.simulators import target

  assert np.array_equal(np.asarray(models.JPEG_LUMINANCE_TABLE), np.asarray(target._JPEG_TABLE))
  rng = np.random.default_rng(0)
  colour = rng.uniform(0.2, 0.8, (2, 19, 27, 1)).astype(np.float32)  # [0, 1], as the target's
  image = jnp.asarray(colour * 2 - 1)
  z = jnp.asarray([0.0, 1.5], jnp.float32)
  stage = models.JpegQuantizer()
  params = stage.init(jax.random.PRNGKey(0), image, z)["params"]
  params = {"log_scale": jnp.asarray(0.03), "log_spread": jnp.asarray(0.05)}
  r = models.JPEG_LOG_RATE
  scale = np.exp(np.log(models.JPEG_SCALE_INIT) + r * 0.03
                 + np.exp(np.log(models.JPEG_SPREAD_INIT) + r * 0.05) * np.asarray(z))
  out = np.asarray(stage.apply({"params": params}, image, z))
  cfg = target.TargetConfig()
  for i in range(2):
    # target: q = table * blocking * (0.25 + blocking_scale)
    ref = target._blocking(jnp.asarray(colour[i]), {"appearance": {"blocking_scale": scale[i] - 0.25}}, cfg)
    np.testing.assert_allclose(out[i], np.clip(np.asarray(ref) * 2 - 1, -1, 1), atol=3e-5)
  assert np.abs(out[1] - np.asarray(image[1])).max() > 0.1  # scale 0.74: visible blocks
  # Straight-through for the image.
  g = rng.normal(size=image.shape).astype(np.float32)
  grad = jax.grad(lambda x: jnp.sum(stage.apply({"params": params}, x, z) * g))(image)
  inside = np.abs(out) < 1.0
  np.testing.assert_allclose(np.asarray(grad)[inside], g[inside], atol=1e-5)
  # No gradient reaches mu or sigma through the rounding; the stage sows each image's log
  # density of its log scale for the score function (training.py).
  grads = jax.grad(lambda pp: jnp.sum(stage.apply({"params": pp}, image, z) * g))(params)
  assert float(grads["log_scale"]) == 0.0 and float(grads["log_spread"]) == 0.0
  _, sown = stage.apply({"params": params}, image, z, mutable=["intermediates"])
  density = np.asarray(sown["intermediates"]["jpeg_log_density"][0])
  sigma = np.exp(np.log(models.JPEG_SPREAD_INIT) + r * 0.05)
  np.testing.assert_allclose(density, -0.5 * np.asarray(z)**2 - np.log(sigma), rtol=1e-5)
  # Its gradient: d/dmu = z / sigma, d/dsigma-parameter = (z^2 - 1) * rate.
  dens = lambda pp: stage.apply({"params": pp}, image, z, mutable=["intermediates"])[1]["intermediates"]["jpeg_log_density"][0]  # noqa: E731
  jac = jax.jacobian(dens)(params)
  np.testing.assert_allclose(np.asarray(jac["log_scale"]), np.asarray(z) / sigma * r, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(jac["log_spread"]), (np.asarray(z)**2 - 1) * r, rtol=1e-5, atol=1e-6)


def test_refiner_jpeg_quantizer_reads_its_own_noise_channel():
  """refiner.jpeg_quantizer: one per-image normal channel after the normal and smooth ones;
  the drop-out head's uniform channel stays last; two images with the same input but
  different draws are compressed at different qualities."""
  config = default.get_config("smoke")
  config.refiner.output_activation = "residual"
  config.refiner.noise_channels, config.refiner.smooth_noise_cells = 1, (1,)
  config.refiner.jpeg_quantizer, config.refiner.dropout_value = True, 1.0
  refiner = models.make_refiner(config)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(2))
  noise = models.refiner_noise(refiner, keys, (16, 24))
  assert noise.shape == (2, 16, 24, 4)
  np.testing.assert_allclose(noise[..., 2], noise[:, :1, :1, 2] * jnp.ones((2, 16, 24)))  # per image
  assert abs(float(noise[0, 0, 0, 2] - noise[1, 0, 0, 2])) > 1e-3
  x = jnp.asarray(np.random.default_rng(1).uniform(-0.5, 0.5, (1, 16, 24, 1)).repeat(2, 0), jnp.float32)
  params = refiner.init(jax.random.PRNGKey(0), x, noise)["params"]
  assert params["conv_in"]["kernel"].shape[2] == 3  # image, normal, smooth: not the JPEG draw
  params["jpeg_quantizer"]["log_spread"] = jnp.asarray(0.5)  # sigma = 0.2 e = 0.54
  out = np.asarray(refiner.apply({"params": params}, x, noise))
  z = np.asarray(noise[:, 0, 0, 2])
  for i in range(2):
    expected = models.JpegQuantizer().apply({"params": params["jpeg_quantizer"]}, x[i:i + 1], z[i:i + 1])
    kept = out[i] != 1.0  # pixels the drop-out head left (p = 0.7%)
    np.testing.assert_allclose(out[i][kept], np.asarray(expected[0])[kept], atol=1e-5)
  assert np.abs(out[0] - out[1]).max() > 0.01
  assert "JPEG stage" in " ".join(models.refiner_extras(config.refiner))


def test_light_stage_is_random_light_and_tone_with_learned_magnitudes():
  """LightStage equals the formula (numpy) for given draws and magnitudes; the magnitudes
  get gradients (they start at 0.05, not at the zero saddle); refiner_noise puts its draws
  (smooth fields on 2- and 4-row grids, then three per-image normals) after the JPEG
  draw and before the drop-out head's uniform channel."""
  rng = np.random.default_rng(0)
  x = rng.uniform(-0.8, 0.8, (2, 16, 24, 1)).astype(np.float32)
  key = jax.random.PRNGKey(5)
  draws = jnp.stack([models.light_noise(jax.random.fold_in(key, i), (16, 24)) for i in range(2)])
  assert draws.shape == (2, 16, 24, models.LIGHT_NOISE_CHANNELS)
  np.testing.assert_array_equal(draws[..., :2], jnp.stack(
      [models.smooth_noise(jax.random.fold_in(key, i), (16, 24), (2, 4)) for i in range(2)]))
  np.testing.assert_allclose(draws[..., 2:], jnp.broadcast_to(draws[:, :1, :1, 2:], draws[..., 2:].shape))
  stage = models.LightStage()
  params = stage.init(jax.random.PRNGKey(0), x, draws)["params"]
  np.testing.assert_allclose(np.asarray(params["magnitude"]), 0.0)
  params = {"magnitude": jnp.asarray([0.03, -0.02, 0.01, 0.02, -0.01])}
  a = models.LIGHT_AMP_INIT + models.LIGHT_AMP_RATE * np.asarray(params["magnitude"])
  d = np.asarray(draws)
  c = (x + 1) / 2 * np.exp(a[0] * d[..., :1] + a[1] * d[..., 1:2])
  c = np.clip(c, 1e-4, 1) ** np.exp(a[2] * d[..., 2:3])
  c = (c - 0.5) * np.exp(a[3] * d[..., 3:4]) + 0.5
  c = c + a[4] * d[..., 4:5]
  out = np.asarray(stage.apply({"params": params}, x, draws))
  np.testing.assert_allclose(out, np.clip(2 * c - 1, -1, 1), atol=2e-5)
  assert np.abs(out[0] - out[1]).max() > 0.1  # different draws, different light
  g = jax.grad(lambda pp: jnp.sum(stage.apply({"params": pp}, x, draws) * jnp.asarray(x)))(params)
  assert np.all(np.abs(np.asarray(g["magnitude"])) > 1e-3)

  config = default.get_config("smoke")
  config.refiner.output_activation, config.refiner.noise_channels = "residual", 1
  config.refiner.jpeg_quantizer, config.refiner.light_stage, config.refiner.dropout_value = True, True, 1.0
  refiner = models.make_refiner(config)
  slices = models.noise_slices(refiner)
  assert (slices["trunk"], slices["jpeg"], slices["light"], slices["drop"]) == (
      slice(0, 1), slice(1, 2), slice(2, 7), slice(7, 8))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(2))
  noise = models.refiner_noise(refiner, keys, (16, 24))
  assert noise.shape == (2, 16, 24, 8)
  np.testing.assert_array_equal(noise[0, ..., 2:7], models.light_noise(jax.random.fold_in(keys[0], 0x7160), (16, 24)))
  params = refiner.init(jax.random.PRNGKey(0), jnp.asarray(x), noise)["params"]
  assert params["conv_in"]["kernel"].shape[2] == 2  # image + the normal channel only
  assert params["light_stage"]["magnitude"].shape == (5,)
  assert "light stage" in " ".join(models.refiner_extras(config.refiner))


def test_sensor_stage_is_random_blur_and_noise_with_learned_magnitudes():
  """SensorStage equals the formula (numpy: a separable 7-tap Gaussian of sigma s u with
  edges continued, then noise of std sqrt((r l)^2 + k l c)) for given draws and
  magnitudes; each magnitude gets a gradient; refiner_noise puts its draws (two
  per-image uniforms, then per-pixel normals) after the light stage's and before the
  drop-out head's uniform channel."""
  rng = np.random.default_rng(1)
  x = rng.uniform(-0.8, 0.8, (2, 12, 16, 1)).astype(np.float32)
  key = jax.random.PRNGKey(3)
  draws = jnp.stack([models.sensor_noise(jax.random.fold_in(key, i), (12, 16)) for i in range(2)])
  d = np.asarray(draws)
  assert d.shape == (2, 12, 16, models.SENSOR_NOISE_CHANNELS)
  np.testing.assert_array_equal(d[..., :2], np.broadcast_to(d[:, :1, :1, :2], d[..., :2].shape))
  assert np.all((d[:, 0, 0, 0] >= 0) & (d[:, 0, 0, 0] < 1)) and np.all((d[:, 0, 0, 1] >= 0.3) & (d[:, 0, 0, 1] < 1))
  assert abs(d[..., 2].std() - 1) < 0.15 and d[0, ..., 2].std() > 0.5  # per-pixel normals
  # This key draws blur widths near 0 (a delta kernel, no gradient): widen them for the checks below.
  draws = draws.at[..., 0].set(jnp.asarray([0.6, 0.9])[:, None, None])
  d = np.asarray(draws)
  stage = models.SensorStage()
  params = stage.init(jax.random.PRNGKey(0), x, draws)["params"]
  np.testing.assert_allclose(np.asarray(params["log_magnitude"]), 0.0)
  params = {"log_magnitude": jnp.asarray([0.8, 2.0, 1.0])}  # s ~ 1.34 px, r ~ 0.037, k ~ 0.0014
  s, r, k = np.exp(np.asarray(models.SENSOR_LOG_INIT) + models.SENSOR_LOG_RATE * np.asarray(params["log_magnitude"]))
  c = (x + 1) / 2
  blurred = np.empty_like(c)
  t = np.arange(-3, 4)
  for b in range(2):
    g = np.exp(-0.5 * (t / max(s * d[b, 0, 0, 0], 1e-3))**2)
    g /= g.sum()
    img = np.pad(c[b, ..., 0], 3, mode="edge")
    rows = sum(g[i] * img[i:i + 12, :] for i in range(7))
    blurred[b, ..., 0] = sum(g[i] * rows[:, i:i + 16] for i in range(7))
  level = d[:, :1, :1, 1:2]
  std = np.sqrt((r * level)**2 + k * level * np.clip(blurred, 0, 1))
  expected = np.clip(2 * (blurred + std * d[..., 2:3]) - 1, -1, 1)
  out = np.asarray(stage.apply({"params": params}, x, draws))
  np.testing.assert_allclose(out, expected, atol=2e-5)
  assert np.abs(out - x).max() > 0.05  # it did blur and add noise
  g = jax.grad(lambda pp: jnp.sum(stage.apply({"params": pp}, x, draws) * jnp.asarray(x)))(params)
  assert np.all(np.abs(np.asarray(g["log_magnitude"])) > 1e-4), g

  config = default.get_config("smoke")
  config.refiner.output_activation, config.refiner.noise_channels = "residual", 1
  config.refiner.light_stage, config.refiner.sensor_stage, config.refiner.dropout_value = True, True, 1.0
  refiner = models.make_refiner(config)
  slices = models.noise_slices(refiner)
  assert (slices["light"], slices["sensor"], slices["drop"]) == (slice(1, 6), slice(6, 9), slice(9, 10))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(2))
  noise = models.refiner_noise(refiner, keys, (12, 16))
  assert noise.shape == (2, 12, 16, 10)
  np.testing.assert_array_equal(noise[1, ..., 6:9], models.sensor_noise(jax.random.fold_in(keys[1], 0x5E50), (12, 16)))
  params = refiner.init(jax.random.PRNGKey(0), jnp.asarray(x), noise)["params"]
  assert params["sensor_stage"]["log_magnitude"].shape == (3,)
  assert "sensor stage" in " ".join(models.refiner_extras(config.refiner))
  assert models.has_camera_stages(refiner)


def test_slope_dropout_head_follows_the_slope_only():
  """dropout_slope_head: the drop logit is w . (|dy|, |dx|, |grad|, value) + b + init, 5
  parameters; on a made-up depth image (a flat plate, a ramp, a step to the background)
  a positive weight on the gradient magnitude raises p on the ramp and the step only."""
  config = default.get_config("smoke")
  config.refiner.output_activation = "identity"
  config.refiner.dropout_value = 1.0
  config.refiner.dropout_slope_head = True
  refiner = models.make_refiner(config)
  x = np.full((1, 16, 24, 1), -0.5, np.float32)
  x[0, :, 8:16, 0] = -0.5 + 0.05 * np.arange(8)  # a ramp of slope 0.05 per pixel
  x[0, :, 16:, 0] = 1.0  # background: a step of 1.15
  keys = jax.random.PRNGKey(0)[None]
  noise = models.refiner_noise(refiner, keys, (16, 24))
  params = refiner.init(jax.random.PRNGKey(0), jnp.asarray(x), noise)["params"]
  assert jax.tree.map(jnp.shape, params) == {"drop_head": {"kernel": (4, 1), "bias": (1,)}}
  f = np.asarray(models.slope_features(jnp.asarray(x)))[0]
  np.testing.assert_allclose(f[5, 3], [0, 0, 0, -0.5], atol=1e-5)  # flat
  np.testing.assert_allclose(f[5, 11], [0, 0.05, 0.05, -0.5 + 0.15], atol=1e-5)  # on the ramp
  np.testing.assert_allclose(f[5, 15, :3], [0, (1.0 - (-0.5 + 0.3)) / 2, (1.0 - (-0.5 + 0.3)) / 2], atol=1e-5)
  head = {"kernel": jnp.asarray([[0.0], [0.0], [40.0 / models.SLOPE_HEAD_RATE], [0.0]]), "bias": jnp.zeros(1)}
  logit = np.asarray(models.SlopeDropHead().apply({"params": head}, jnp.asarray(x)))[0, :, :, 0]
  np.testing.assert_allclose(logit[:, 2:7], models.DROP_LOGIT_INIT, atol=1e-4)  # flat: unchanged
  np.testing.assert_allclose(logit[:, 9:15], models.DROP_LOGIT_INIT + 2.0, atol=1e-4)  # ramp: +40 * 0.05
  assert logit[5, 15] > models.DROP_LOGIT_INIT + 10  # the silhouette's step
  # The head learns through the straight-through gradient.
  grad = jax.grad(lambda q: jnp.sum(refiner.apply({"params": q}, jnp.asarray(x), noise)))(params)
  assert float(jnp.abs(grad["drop_head"]["kernel"]).sum()) > 0
  assert "drop-out head to 1.0 from the input's local slope" in models.refiner_extras(config.refiner)


def test_score_function_drop_head_draws_as_straight_through_and_sows_its_log_density():
  """dropout_gradient="score_function": the same binary drops as the straight-through
  head (same parameters and noise); R sows the image before the drops and each pixel's
  log probability of its draw; the output passes no gradient to the head (training.py
  adds the score-function term instead), and the straight-through head's does."""
  config = default.get_config("smoke")
  config.refiner.output_activation = "identity"
  config.refiner.dropout_value = 1.0
  config.refiner.dropout_slope_head = True
  straight = models.make_refiner(config)
  config.refiner.dropout_gradient = "score_function"
  scored = models.make_refiner(config)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 0.5, (2, 16, 24, 1)), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  noise = models.refiner_noise(scored, keys, (16, 24))
  params = straight.init(jax.random.PRNGKey(0), x, noise)["params"]
  # A head that drops about a third of the pixels, more where the input is steep.
  params = {"drop_head": {"kernel": jnp.asarray([[0.0], [0.0], [5.0], [0.0]]) / models.SLOPE_HEAD_RATE,
                          "bias": jnp.asarray([4.5]) / models.SLOPE_HEAD_RATE}}
  out_straight = np.asarray(straight.apply({"params": params}, x, noise))
  out, sown = scored.apply({"params": params}, x, noise, mutable=["intermediates"])
  np.testing.assert_array_equal(np.asarray(out), out_straight)
  sown = sown["intermediates"]
  np.testing.assert_array_equal(np.asarray(sown["before_drop"][0]), np.asarray(x))
  logit = np.asarray(models.SlopeDropHead().apply({"params": params["drop_head"]}, x))[..., 0]
  p = 1 / (1 + np.exp(-logit))
  dropped = np.asarray(noise)[..., -1] < p
  assert 0.1 < dropped.mean() < 0.9
  np.testing.assert_array_equal(out_straight[..., 0] == 1.0, dropped | (np.asarray(x)[..., 0] == 1.0))
  np.testing.assert_allclose(np.asarray(sown["drop_log_density"][0]),
                             np.where(dropped, np.log(p), np.log(1 - p)), rtol=1e-4, atol=1e-5)
  total = lambda m: lambda q: jnp.sum(m.apply({"params": q}, x, noise, mutable=["intermediates"])[0])  # noqa: E731
  assert float(jnp.abs(jax.grad(total(scored))(params)["drop_head"]["kernel"]).sum()) == 0.0
  assert float(jnp.abs(jax.grad(total(straight))(params)["drop_head"]["kernel"]).sum()) > 0
  assert "learnt by the score function" in models.refiner_extras(config.refiner)[0]
  with pytest.raises(ValueError, match="config.refiner.dropout_gradient: 'reinforce' is not one of"):
    models.Refiner(channels=1, dropout_value=1.0, dropout_gradient="reinforce").init(
        jax.random.PRNGKey(0), x, noise)


def test_receptive_field_and_patch_radius_of_the_presets():
  """The eye preset's patches are 23 px every 4 (the configs' docstrings say so), the
  hand preset's 71 every 32; a pixel moves the cells within 2 (eye) or 1 (hand) of its own."""
  assert models.receptive_field(models.DISCRIMINATOR_PRESETS["eye"]) == (23, 4)
  assert models.receptive_field(models.DISCRIMINATOR_PRESETS["hand"]) == (71, 32)
  assert models.patch_radius(models.LocalDiscriminator(layers=models.DISCRIMINATOR_PRESETS["eye"])) == 2
  assert models.patch_radius(models.LocalDiscriminator(layers=models.DISCRIMINATOR_PRESETS["hand"])) == 1


def test_light_stage_tone_moves_every_image_the_same_way():
  """LightStage(tone=True): the formula with learned means m added to the log-gamma and
  log-contrast draws and to the brightness draw; zero at initialisation (the stage
  without tone, exactly); each mean gets a gradient; with zero magnitudes and a positive
  brightness mean, every image is brighter by the same amount."""
  rng = np.random.default_rng(0)
  x = rng.uniform(-0.8, 0.8, (2, 16, 24, 1)).astype(np.float32)
  key = jax.random.PRNGKey(5)
  draws = jnp.stack([models.light_noise(jax.random.fold_in(key, i), (16, 24)) for i in range(2)])
  stage, plain = models.LightStage(tone=True), models.LightStage()
  params = stage.init(jax.random.PRNGKey(0), x, draws)["params"]
  np.testing.assert_allclose(np.asarray(params["tone"]), 0.0)
  np.testing.assert_array_equal(np.asarray(stage.apply({"params": params}, x, draws)),
                                np.asarray(plain.apply({"params": {"magnitude": params["magnitude"]}}, x, draws)))
  params = {"magnitude": jnp.asarray([0.03, -0.02, 0.01, 0.02, -0.01]), "tone": jnp.asarray([0.3, -0.2, -0.1])}
  a = models.LIGHT_AMP_INIT + models.LIGHT_AMP_RATE * np.asarray(params["magnitude"])
  m = np.asarray(params["tone"])
  d = np.asarray(draws)
  c = (x + 1) / 2 * np.exp(a[0] * d[..., :1] + a[1] * d[..., 1:2])
  c = np.clip(c, 1e-4, 1) ** np.exp(m[0] + a[2] * d[..., 2:3])
  c = (c - 0.5) * np.exp(m[1] + a[3] * d[..., 3:4]) + 0.5
  c = c + m[2] + a[4] * d[..., 4:5]
  np.testing.assert_allclose(np.asarray(stage.apply({"params": params}, x, draws)), np.clip(2 * c - 1, -1, 1),
                             atol=2e-5)
  g = jax.grad(lambda pp: jnp.sum(stage.apply({"params": pp}, x, draws) * jnp.asarray(x)))(params)
  assert np.all(np.abs(np.asarray(g["tone"])) > 1e-3)
  flat = {"magnitude": jnp.full((5,), -models.LIGHT_AMP_INIT / models.LIGHT_AMP_RATE),
          "tone": jnp.asarray([0.0, 0.0, 0.05])}
  y = np.asarray(stage.apply({"params": flat}, x, draws))
  np.testing.assert_allclose(y - x, 0.1, atol=1e-5)


def test_light_stage_exposure_scales_every_linear_value_alike():
  """LightStage(exposure=True): one learned log-gain e, zero at initialisation (the stage
  without it, exactly); with zero light magnitudes c -> c exp(e) (clipped), unlike a gamma,
  so dark tones keep their ratios; it gets a gradient; the Refiner flag builds it."""
  rng = np.random.default_rng(1)
  x = rng.uniform(-0.9, 0.9, (2, 16, 24, 1)).astype(np.float32)
  key = jax.random.PRNGKey(6)
  draws = jnp.stack([models.light_noise(jax.random.fold_in(key, i), (16, 24)) for i in range(2)])
  stage, plain = models.LightStage(tone=True, exposure=True), models.LightStage(tone=True)
  params = stage.init(jax.random.PRNGKey(0), x, draws)["params"]
  assert float(params["exposure"]) == 0.0 and "exposure" not in plain.init(jax.random.PRNGKey(0), x, draws)["params"]
  no_exposure = {k: v for k, v in params.items() if k != "exposure"}
  np.testing.assert_array_equal(np.asarray(stage.apply({"params": params}, x, draws)),
                                np.asarray(plain.apply({"params": no_exposure}, x, draws)))
  flat = {"magnitude": jnp.full((5,), -models.LIGHT_AMP_INIT / models.LIGHT_AMP_RATE),
          "tone": jnp.zeros((3,)), "exposure": jnp.asarray(-0.4)}
  y = np.asarray(stage.apply({"params": flat}, x, draws))
  np.testing.assert_allclose((y + 1) / 2, (x + 1) / 2 * np.exp(-0.4), atol=1e-5)
  g = jax.grad(lambda pp: jnp.sum(stage.apply({"params": pp}, x, draws)))(flat)
  assert float(g["exposure"]) > 1.0  # brighter images, larger sum
  refiner = models.Refiner(features=8, num_blocks=1, output_activation="identity", light_stage=True,
                           light_stage_exposure=True)
  noise = models.refiner_noise(refiner, jax.random.split(key, 2), (16, 24))
  assert "exposure" in refiner.init(jax.random.PRNGKey(0), x, noise)["params"]["light_stage"]


def test_camera_only_refiner_runs_its_stages_on_the_input():
  """output_activation="identity" with camera stages and no drop-out head: R is the
  stages applied to the input itself, exactly what they make of a residual refiner's
  output at initialisation (its zero-initialised change leaves the input); its only
  parameters are the stages', and each gets a gradient."""
  config = default.get_config("smoke")
  config.refiner.noise_channels = 0
  config.refiner.light_stage = config.refiner.sensor_stage = config.refiner.jpeg_quantizer = True
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 16, 24, 1), minval=-0.9, maxval=0.9)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(2))
  config.refiner.output_activation = "residual"
  residual = models.make_refiner(config)
  noise = models.refiner_noise(residual, keys, (16, 24))
  residual_params = residual.init(jax.random.PRNGKey(0), x, noise)["params"]
  config.refiner.output_activation = "identity"
  camera = models.make_refiner(config)
  np.testing.assert_array_equal(np.asarray(models.refiner_noise(camera, keys, (16, 24))), np.asarray(noise))
  params = camera.init(jax.random.PRNGKey(0), x, noise)["params"]
  assert set(params) == {"light_stage", "sensor_stage", "jpeg_quantizer"}
  # Moved magnitudes, the same in both, so the stages visibly act.
  params = jax.tree.map(lambda p: p + 0.5, params)
  residual_params = {**residual_params, **params}
  out = np.asarray(camera.apply({"params": params}, x, noise))
  np.testing.assert_allclose(out, np.asarray(residual.apply({"params": residual_params}, x, noise)), atol=1e-6)
  assert np.abs(out - np.asarray(x)).max() > 0.05
  g = jax.grad(lambda p: jnp.sum(camera.apply({"params": p}, x, noise) * x))(params)
  for name in ("light_stage", "sensor_stage"):
    assert all(np.all(np.abs(np.asarray(v)) > 0) for v in jax.tree.leaves(g[name])), name
  # The residual refiner with its trunk frozen (train.py until refiner.trunk_start_step) is
  # this camera-only refiner whatever its trunk's parameters: the trunk is skipped.
  moved_trunk = jax.tree.map(lambda p: p + 0.3, {k: v for k, v in residual_params.items() if k not in params})
  frozen = residual.clone(trunk_frozen=True)
  np.testing.assert_allclose(np.asarray(frozen.apply({"params": {**residual_params, **moved_trunk}}, x, noise)),
                             out, atol=1e-6)
  with pytest.raises(ValueError, match="config.refiner.trunk_start_step: a frozen trunk must be the identity"):
    camera.clone(trunk_frozen=True).apply({"params": params}, x, noise)
  config.refiner.light_stage = config.refiner.sensor_stage = config.refiner.jpeg_quantizer = False
  with pytest.raises(ValueError, match="'identity' changes nothing without a local drop-out head"):
    models.make_refiner(config).init(jax.random.PRNGKey(0), x, models.refiner_noise(
        models.make_refiner(config), keys, (16, 24)))
