"""Stabilisers beyond the paper: refiner EMA, R1, DiffAugment, TTUR (stabilisers.py,
augment.py, training.py); the brightness-free psi are in test_losses.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax import augment, checkpoints, models, parallel, stabilisers, train, training
from simgan_jax.refining import refine
from tests.test_training import assert_same_updates, initial_state, run_steps


def tree_np(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


# ----------------------------------------------------------------------------- EMA


def test_ema_is_the_closed_form_average_of_the_recorded_params(tiny_config, array_sources):
  tiny_config.refiner_ema.decay = 0.15  # below the warm-up from step 1 on: both branches of the min
  tiny_config.kg = 1
  schedule = ["refiner_pretrain", "discriminator_pretrain", "adversarial"]
  mesh = parallel.make_mesh(1)
  s = training.make_setup(tiny_config, *array_sources, 1)
  state = training.create_state(s, mesh)
  specs = training.state_specs(state)
  data = parallel.put_replicated({"synthetic": array_sources[0].device_data(),
                                  "real": array_sources[1].device_data()}, mesh)
  fns = {p: training.compile_step(training.PHASES[p], s, mesh, specs) for p in set(schedule)}
  init = tree_np(jax.device_get(state.refiner_params))
  np.testing.assert_array_equal(jax.tree.leaves(init)[0], jax.tree.leaves(tree_np(state.refiner_ema_params))[0])
  expected, previous = init, init
  for t, phase in enumerate(schedule):
    state, _ = fns[phase](state, data)
    params = tree_np(jax.device_get(state.refiner_params))
    if phase == "discriminator_pretrain":  # no refiner update, no average update
      jax.tree.map(np.testing.assert_array_equal, params, previous)
    else:
      d = min(0.15, (1 + t) / (10 + t))  # 0.1, -, 0.15
      expected = jax.tree.map(lambda e, p: d * e + (1 - d) * p, expected, params)
    previous = params
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), tree_np(state.refiner_ema_params),
                 expected)
  # It is an average, not the params.
  assert not np.allclose(state.refiner_ema_params["conv_out"]["kernel"], state.refiner_params["conv_out"]["kernel"])


def test_ema_off_adds_nothing_to_the_state(tiny_config, array_sources):
  def shapes():
    return jax.eval_shape(lambda: training.init_state(training.make_setup(tiny_config, *array_sources, 1)))

  off = shapes()
  assert off.refiner_ema_params == {}
  assert training.inference_refiner_params(off) is off.refiner_params
  tiny_config.refiner_ema.decay = 0.999
  on = shapes()
  assert len(jax.tree.leaves(on)) == len(jax.tree.leaves(off)) + len(jax.tree.leaves(off.refiner_params))
  assert training.inference_refiner_params(on) is on.refiner_ema_params


def test_sample_grids_refine_and_export_use_the_average(tiny_config, array_sources, tmp_path):
  tiny_config.refiner_ema.decay = 0.999
  mesh = parallel.make_mesh(1)
  s = training.make_setup(tiny_config, *array_sources, 1)
  state = training.create_state(s, mesh)
  # A distinguishable average: zero weights refine every image to tanh(0) = 0.
  state = state.replace(refiner_ema_params=jax.tree.map(jnp.zeros_like, state.refiner_ema_params))
  data = {"synthetic": array_sources[0].device_data(), "real": array_sources[1].device_data()}
  samples = training.make_sample_fn(s, 4)(state, data)
  np.testing.assert_array_equal(samples["refined"], 0.0)
  assert np.abs(training.make_sample_fn(s, 4)(state.replace(refiner_ema_params={}), data)["refined"]).max() > 0
  # refine.restore_refiner (refine, export, pretrained) reads the average from a checkpoint.
  mngr = checkpoints.manager(str(tmp_path), 3)
  checkpoints.save(mngr, 0, state)
  mngr.close()
  (tmp_path / "config.json").write_text(tiny_config.to_json_best_effort(indent=2))
  params, _ = refine.restore_refiner(refine.load_config(str(tmp_path)), str(tmp_path))
  for leaf in jax.tree.leaves(params):
    np.testing.assert_array_equal(leaf, 0.0)


def test_a_checkpoint_written_before_the_ema_field_existed_still_restores(tiny_config, tmp_path):
  mesh = parallel.make_mesh(1)
  state = training.create_state(training.make_setup(tiny_config, None, None, 1), mesh)
  # The old TrainState as orbax wrote it: the same fields, without refiner_ema_params.
  old = {f: getattr(state, f) for f in state.__dataclass_fields__ if f != "refiner_ema_params"}
  mngr = checkpoints.manager(str(tmp_path), 3)
  checkpoints.save(mngr, 0, old)
  mngr.close()
  restored = train.restore_state(tiny_config, str(tmp_path))
  assert restored.refiner_ema_params == {}
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.refiner_params),
               jax.device_get(state.refiner_params))
  # With the average on, the same checkpoint is refused with the field named.
  tiny_config.refiner_ema.decay = 0.999
  with pytest.raises(Exception, match="refiner_ema_params"):
    train.restore_state(tiny_config, str(tmp_path))


# ----------------------------------------------------------------------------- R1


def test_r1_on_a_linear_and_a_quadratic_discriminator_is_the_hand_computed_norm():
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(3, 5, 4, 2)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(2, 3, 2, 5, 4, 2)), jnp.float32)  # [class, h, w, H, W, C]

  def linear(y):  # logits [B, 3, 2, 2]: each class a linear function of the image
    return jnp.einsum("bHWC,khwHWC->bhwk", y, weights)

  # d/dy sum_patches (logit_real - logit_refined) = sum_patches (w_real - w_refined), every image.
  grad = np.sum(np.asarray(weights[0] - weights[1], np.float64), axis=(0, 1))
  np.testing.assert_allclose(stabilisers.r1_penalty(linear, images, 10.0), 5.0 * np.sum(grad ** 2), rtol=1e-5)

  def quadratic(y):  # one patch, logit_real = |y|^2 / 2, logit_refined = 0: the gradient is y itself
    real = 0.5 * jnp.sum(jnp.square(y), axis=(1, 2, 3))
    return jnp.stack([real, jnp.zeros_like(real)], -1)[:, None, None, :]

  per_image = np.sum(np.asarray(images, np.float64) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(stabilisers.r1_penalty(quadratic, images, 2.0), np.mean(per_image), rtol=1e-5)


def test_r1_of_the_native_discriminator_is_twice_differentiable_and_matches_xla(tiny_config):
  images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 35, 55, 1)), jnp.float32)
  d = models.make_discriminator(tiny_config)  # the native kernels on CPU
  params = d.init(jax.random.PRNGKey(0), images, train=False)["params"]

  def loss_and_grad(discriminator):
    return jax.value_and_grad(lambda p: stabilisers.discriminator_r1_penalty(discriminator, p, {}, images, 1.0))(params)

  value, grads = loss_and_grad(d)
  value_xla, grads_xla = loss_and_grad(d.clone(conv_impl="xla"))
  assert value > 0
  np.testing.assert_allclose(value, value_xla, rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * np.abs(b).max()), grads, grads_xla)


# ----------------------------------------------------------------------------- DiffAugment


def keys(n, seed=0):
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))


def images(n, seed=0, shape=(35, 55, 1)):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n, *shape)), jnp.float32)


def test_empty_policy_is_the_identity_and_unknown_names_fail():
  x = images(2)
  assert augment.augment(x, keys(2), "") is x
  assert augment.augment_examples(x, jax.random.PRNGKey(0), ()) is x
  with pytest.raises(ValueError, match="augment.policy.*flip"):
    augment.parse_policy("translation, flip")


def test_same_key_same_transform_for_real_and_refined_and_each_transform_does_what_it_says():
  real, refined, k = images(16, 0), images(16, 1), keys(16)
  # Translation and cutout are linear maps fixed by the key: with the same keys, the
  # augmented difference is the augmented difference (one map for both images).
  for policy in ("translation", "cutout", "translation,cutout"):
    np.testing.assert_allclose(augment.augment(real, k, policy) - augment.augment(refined, k, policy),
                               augment.augment(real - refined, k, policy), atol=1e-6)
  # Brightness and contrast: one offset / factor per key, the same for both images.
  offset = augment.augment(real, k, "brightness") - real
  np.testing.assert_allclose(offset, augment.augment(refined, k, "brightness") - refined, atol=1e-6)
  assert np.ptp(offset, axis=(1, 2, 3)).max() < 1e-6 and np.abs(offset).max() <= 0.5
  assert np.unique(np.round(offset[:, 0, 0, 0], 6)).size == 16  # per-image draws
  contrasted = augment.augment(real, k, "contrast")
  np.testing.assert_allclose(contrasted.mean(axis=(1, 2, 3)), real.mean(axis=(1, 2, 3)), atol=1e-5)
  # A single bright pixel moves by at most 1/8 of each side, by different shifts per key.
  dot = jnp.zeros((16, 35, 55, 1)).at[:, 17, 27, 0].set(1.0)
  moved = np.asarray(augment.augment(dot, k, "translation"))
  ys, xs = np.nonzero(moved[..., 0].reshape(16, -1) > 0)[1] // 55, np.nonzero(moved[..., 0].reshape(16, -1))[1] % 55
  assert np.abs(ys - 17).max() <= 4 and np.abs(xs - 27).max() <= 7 and len({*zip(ys, xs)}) > 4
  # Cutout zeroes a 18 x 28 rectangle (clipped at the border), nothing else.
  cut = np.asarray(augment.augment(jnp.ones((16, 35, 55, 1)), k, "cutout"))
  assert set(np.unique(cut)) <= {0.0, 1.0} and 0 < (cut == 0).sum(axis=(1, 2, 3)).max() <= 18 * 28


def test_gradient_flows_through_the_augmentation_to_the_refined_images():
  refined, k = images(4, 1), keys(4)
  weights = images(4, 2)

  def loss(x, policy):
    return jnp.sum(weights * augment.augment(x, k, policy))

  grad = jax.grad(loss)(refined, "translation,cutout,brightness,contrast")
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
  # Cutout's gradient is the weights outside the cut rectangle and exactly zero inside it.
  grad = jax.grad(loss)(refined, "cutout")
  kept = augment.augment(jnp.ones_like(refined), k, "cutout")
  np.testing.assert_allclose(grad, weights * kept)
  assert np.all(grad[kept == 0] == 0)


# ----------------------------------------------------------------------------- TTUR


def test_separate_learning_rates(tiny_config):
  tiny_config.optimizer.name = "sgd"
  tiny_config.optimizer.learning_rate = 0.5
  tiny_config.optimizer.discriminator_learning_rate = 0.0
  grads = {"w": jnp.ones(3)}
  step = lambda tx: tx.update(grads, tx.init(grads), grads)[0]["w"]  # noqa: E731
  np.testing.assert_allclose(step(training.make_optimizer(tiny_config, "refiner")), -0.5)
  np.testing.assert_allclose(step(training.make_optimizer(tiny_config, "discriminator")), 0.0)
  np.testing.assert_allclose(step(training.make_optimizer(tiny_config)), -0.5)  # other users: the shared lr
  tiny_config.optimizer.refiner_learning_rate = 0.25
  np.testing.assert_allclose(step(training.make_optimizer(tiny_config, "refiner")), -0.25)


def test_discriminator_at_lr_zero_stays_while_the_refiner_moves_and_augmentation_reaches_both_losses(
    tiny_config, array_sources):
  tiny_config.optimizer.discriminator_learning_rate = 0.0
  tiny_config.kg = 1
  init = initial_state(tiny_config, array_sources)
  state, plain = run_steps(tiny_config, array_sources, 1, ["adversarial"])
  jax.tree.map(np.testing.assert_array_equal, state.discriminator_params, init.discriminator_params)
  assert not np.allclose(state.refiner_params["conv_out"]["kernel"], init.refiner_params["conv_out"]["kernel"])
  # The same step with augmentation: D sees other images in both updates' losses.
  tiny_config.augment.policy = "translation,cutout"
  _, augmented = run_steps(tiny_config, array_sources, 1, ["adversarial"])
  for name in ("refiner_adversarial_loss", "discriminator_loss"):
    assert abs(augmented[0][name] - plain[0][name]) > 1e-3 * abs(plain[0][name]), name
  assert augmented[0]["self_regularization_loss"] == plain[0]["self_regularization_loss"]  # on R(x), not augmented


# ----------------------------------------------------------------------------- data parallel


def test_eight_devices_match_one_device_with_ema_r1_and_augmentation(tiny_config, array_sources):
  tiny_config.optimizer.name = "sgd"  # an N-times gradient (R1's included) shows with SGD
  tiny_config.optimizer.learning_rate = 1e-3
  tiny_config.refiner_ema.decay = 0.999
  tiny_config.discriminator.r1_gamma = 1.0
  tiny_config.augment.policy = "translation,cutout,brightness,contrast"
  tiny_config.kg = 1  # one refiner update is enough for the property; half the compile time
  init = initial_state(tiny_config, array_sources)
  state1, curve1 = run_steps(tiny_config, array_sources, 1, ["adversarial"])
  state8, curve8 = run_steps(tiny_config, array_sources, 8, ["adversarial"])
  assert curve1[0]["r1_penalty"] > 0
  for name in curve1[0]:
    np.testing.assert_allclose(curve8[0][name], curve1[0][name], rtol=2e-4, err_msg=name)
  for params in ("refiner_params", "discriminator_params", "refiner_ema_params"):
    assert_same_updates(getattr(init, params), getattr(state1, params), getattr(state8, params))
