"""Compiled steps: device-count invariance, determinism, Kg/Kd and the history in the state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simgan_jax import parallel, training
from simgan_jax.train import PHASE_ORDER

SCHEDULE = ["refiner_pretrain"] * 2 + ["discriminator_pretrain"] * 2 + ["adversarial"] * 3


def run_steps(config, sources, num_devices, schedule=SCHEDULE):
  mesh = parallel.make_mesh(num_devices)
  s = training.make_setup(config, *sources, num_devices)
  state = training.create_state(s, mesh)
  specs = training.state_specs(state)
  data = parallel.put_replicated({"synthetic": sources[0].device_data(), "real": sources[1].device_data()}, mesh)
  fns = {phase: training.compile_step(training.PHASES[phase], s, mesh, specs) for phase in PHASE_ORDER}
  curve = []
  for phase in schedule:
    state, metrics = fns[phase](state, data)
    curve.append({k: float(v) for k, v in metrics.items()})
  return jax.device_get(state), curve


def assert_same_updates(init, a, b, rtol=1e-3):
  """``a - init`` equals ``b - init`` leaf by leaf, relative to the update's size.

  Comparing the updates rather than the parameters is what can fail on an
  N-times gradient: SGD's small steps hide inside a tolerance on the weights.
  """
  def check(path, i, x, y):
    dx, dy = np.asarray(x, np.float64) - i, np.asarray(y, np.float64) - i
    scale = np.max(np.abs(dx))
    assert scale > 0, f"{jax.tree_util.keystr(path)} did not move"
    np.testing.assert_allclose(dy, dx, rtol=rtol, atol=rtol * scale, err_msg=jax.tree_util.keystr(path))

  jax.tree_util.tree_map_with_path(check, init, a, b)


def initial_state(config, sources):
  s = training.make_setup(config, *sources, 1)
  return jax.device_get(training.init_state(s))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_eight_devices_match_one_device(tiny_config, array_sources, optimizer):
  # SGD's update is the gradient itself: an 8x gradient on 8 devices fails here.
  tiny_config.optimizer.name = optimizer
  tiny_config.optimizer.learning_rate = {"sgd": 1e-3, "adam": 1e-4}[optimizer]
  init = initial_state(tiny_config, array_sources)
  state1, curve1 = run_steps(tiny_config, array_sources, 1)
  state8, curve8 = run_steps(tiny_config, array_sources, 8)
  assert [sorted(m) for m in curve1] == [sorted(m) for m in curve8]
  for m1, m8 in zip(curve1, curve8):
    for name in m1:
      np.testing.assert_allclose(m8[name], m1[name], rtol=2e-4 if optimizer == "sgd" else 2e-5, err_msg=name)
  for params in ("refiner_params", "discriminator_params"):
    assert_same_updates(getattr(init, params), getattr(state1, params), getattr(state8, params))
  # The sharded history holds the same images in the same slots.
  np.testing.assert_allclose(state8.history.images, state1.history.images, atol=1e-5)
  assert int(state8.history.filled_rows) == 4  # 5 pushes (2 pretraining, 3 iterations) fill all 4 rows


def test_same_seed_same_bits_other_seed_other_bits(tiny_config, array_sources):
  a, _ = run_steps(tiny_config, array_sources, 2, SCHEDULE[1:4])
  b, _ = run_steps(tiny_config, array_sources, 2, SCHEDULE[1:4])
  jax.tree.map(np.testing.assert_array_equal, a, b)
  tiny_config.seed = 1
  c, _ = run_steps(tiny_config, array_sources, 2, SCHEDULE[1:4])
  assert not np.array_equal(a.refiner_params["conv_out"]["kernel"], c.refiner_params["conv_out"]["kernel"])


def test_iteration_runs_kg_refiner_and_kd_discriminator_updates(tiny_config, array_sources):
  tiny_config.kg, tiny_config.kd = 3, 2
  state, curve = run_steps(tiny_config, array_sources, 1, ["adversarial"])
  # Adam's step counters count the updates made inside the single compiled call.
  assert int(state.refiner_opt_state[0].count) == 3
  assert int(state.discriminator_opt_state[0].count) == 2
  assert int(state.history.filled_rows) == 1  # b/2 images per iteration, whatever Kd (the paper)
  assert curve[0]["kg"] == 3.0


def test_adaptive_kg_rises_while_the_discriminator_wins(tiny_config, array_sources):
  tiny_config.adaptive_kg = True
  tiny_config.kg, tiny_config.kg_min, tiny_config.kg_max = 1, 1, 3
  # Always "winning": Kg must climb to kg_max and stay there.
  tiny_config.kg_raise_above, tiny_config.kg_lower_below = -1.0, -2.0
  state, curve = run_steps(tiny_config, array_sources, 1, ["adversarial"] * 4)
  assert [m["kg"] for m in curve] == [1.0, 2.0, 3.0, 3.0]
  assert int(state.kg) == 3


def test_batch_norm_discriminator_trains_on_eight_devices(tiny_config, array_sources):
  tiny_config.discriminator.batch_norm = True
  state1, curve1 = run_steps(tiny_config, array_sources, 1, SCHEDULE[2:5])
  state8, curve8 = run_steps(tiny_config, array_sources, 8, SCHEDULE[2:5])
  np.testing.assert_allclose(curve8[-1]["discriminator_loss"], curve1[-1]["discriminator_loss"], rtol=1e-4)
  # Float summation order differs between 1 and 8 devices: 2e-5 on stats of about 0.05 after
  # 3 steps (shard_map itself refuses per-device statistics that are not averaged).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5),
               state1.discriminator_batch_stats, state8.discriminator_batch_stats)


def test_pretraining_reduces_self_regularization(tiny_config, array_sources):
  tiny_config.optimizer.learning_rate = 1e-3
  _, curve = run_steps(tiny_config, array_sources, 1, ["refiner_pretrain"] * 30)
  assert curve[-1]["self_regularization_loss"] < 0.6 * curve[0]["self_regularization_loss"]


def test_pretraining_uses_pretrain_psi_and_the_adversarial_phase_psi(tiny_config, array_sources):
  """With psi=low_pass_4 the adversarial phase charges block means only, while refiner
  pretraining (pretrain_psi=identity) charges every pixel: the same refiner on the same
  batch reports a smaller self-regularisation loss in the adversarial phase."""
  tiny_config.loss.psi = "low_pass_4"
  schedule = ["refiner_pretrain"] * 2 + ["adversarial"]
  _, curve = run_steps(tiny_config, array_sources, 1, schedule)
  tiny_config.loss.pretrain_psi = "low_pass_4"
  _, same = run_steps(tiny_config, array_sources, 1, schedule)
  # Same key and parameters at step 1: identity L1 >= block-mean L1, strictly for a
  # refiner with any within-block detail.
  assert curve[0]["self_regularization_loss"] > 1.05 * same[0]["self_regularization_loss"]
  tiny_config.loss.pretrain_psi = "vgg"
  with pytest.raises(ValueError, match="config.loss.pretrain_psi: unknown feature map 'vgg'"):
    training.make_setup(tiny_config, *array_sources, 1)


def test_free_above_frees_dropped_pixels_in_the_adversarial_phase_only(tiny_config, array_sources):
  """loss.self_regularization_free_above reaches the train step: with a threshold below
  every pixel ([-1, 1] images) each refined pixel counts as dropped, so the adversarial
  phase's self-regularisation is exactly 0, while refiner pretraining still charges the
  same refiner (identity psi); a threshold above every pixel changes nothing."""
  schedule = ["refiner_pretrain", "adversarial"]
  _, off = run_steps(tiny_config, array_sources, 1, schedule)
  tiny_config.loss.self_regularization_free_above = 1.5
  _, above_all = run_steps(tiny_config, array_sources, 1, schedule)
  tiny_config.loss.self_regularization_free_above = -1.5
  _, all_free = run_steps(tiny_config, array_sources, 1, schedule)
  assert off[1]["self_regularization_loss"] > 0
  assert above_all == off
  assert all_free[0]["self_regularization_loss"] == off[0]["self_regularization_loss"] > 0
  assert all_free[1]["self_regularization_loss"] == 0.0


def test_camera_stages_are_outside_the_self_regularisation(tiny_config, array_sources):
  """With JPEG, light and sensor stages the self-regularisation compares the trunk's output
  (before them) with the input: refiner pretraining, which has no other loss, leaves the
  stages' parameters exactly where they started while it moves the trunk, and the
  reported loss equals the plain refiner's on the same trunk (identity at step 0);
  the adversarial phase moves them."""
  tiny_config.refiner.output_activation = "residual"
  tiny_config.refiner.jpeg_quantizer, tiny_config.refiner.light_stage = True, True
  tiny_config.refiner.sensor_stage = True
  init = initial_state(tiny_config, array_sources).refiner_params
  state, curve = run_steps(tiny_config, array_sources, 1, ["refiner_pretrain"] * 2)
  for stage in ("jpeg_quantizer", "light_stage", "sensor_stage"):
    jax.tree.map(np.testing.assert_array_equal, state.refiner_params[stage], init[stage])
  assert np.abs(state.refiner_params["conv_in"]["kernel"] - init["conv_in"]["kernel"]).max() > 0
  # The residual trunk is the identity at step 0: nothing to charge before the stages,
  # while the stages alone change every image (JPEG at scale 0.5, light at 0.05).
  assert curve[0]["self_regularization_loss"] < 1e-3
  state, _ = run_steps(tiny_config, array_sources, 1, ["refiner_pretrain", "discriminator_pretrain", "adversarial"])
  for stage in ("jpeg_quantizer", "light_stage", "sensor_stage"):
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), state.refiner_params[stage], init[stage])
    assert all(v > 0 for v in jax.tree.leaves(moved)), (stage, moved)


def test_frozen_trunk_trains_the_camera_stages_alone_then_the_trunk(tiny_config, array_sources):
  """refiner.trunk_start_step: the adversarial step of training.with_frozen_trunk moves the
  camera stages and leaves every trunk parameter bitwise where it started (R is the
  camera-only refiner, its noise input unused); the plain step afterwards moves the trunk.
  Catches a frozen step that still updates the trunk (e.g. through Adam's state) or one
  that freezes the stages too."""
  tiny_config.refiner.output_activation = "residual"
  tiny_config.refiner.light_stage = tiny_config.refiner.sensor_stage = True
  mesh = parallel.make_mesh(1)
  s = training.make_setup(tiny_config, *array_sources, 1)
  state = training.create_state(s, mesh)
  init = jax.device_get(state.refiner_params)
  specs = training.state_specs(state)
  data = parallel.put_replicated({"synthetic": array_sources[0].device_data(),
                                  "real": array_sources[1].device_data()}, mesh)
  frozen = training.compile_step(training.PHASES["adversarial"], training.with_frozen_trunk(s), mesh, specs)
  for _ in range(2):
    state, _ = frozen(state, data)
  params = jax.device_get(state.refiner_params)
  trunk = [name for name in init if name not in ("light_stage", "sensor_stage")]
  assert {"conv_in", "conv_out", "block0"} <= set(trunk)
  for name in trunk:
    jax.tree.map(np.testing.assert_array_equal, params[name], init[name])
  for name in ("light_stage", "sensor_stage"):
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), params[name], init[name])
    assert all(v > 0 for v in jax.tree.leaves(moved)), (name, moved)
  plain = training.compile_step(training.PHASES["adversarial"], s, mesh, specs)
  state, _ = plain(state, data)
  after = jax.device_get(state.refiner_params)
  assert np.abs(after["conv_out"]["kernel"] - init["conv_out"]["kernel"]).max() > 0


def test_score_function_drop_head_learns_in_the_adversarial_phase_alike_on_eight_devices(tiny_config, array_sources):
  """refiner.dropout_gradient="score_function" (a slope head, R only drops pixels):
  refiner pretraining, whose only loss (self-regularisation) has no score-function
  term, leaves the head where it was; the adversarial phase moves it, by the same
  SGD updates on 8 devices as on 1 (an 8x or a per-device unaveraged score-function
  gradient fails here)."""
  tiny_config.refiner.output_activation, tiny_config.refiner.dropout_value = "identity", 1.0
  tiny_config.refiner.dropout_slope_head = True
  tiny_config.refiner.dropout_gradient = "score_function"
  tiny_config.optimizer.name, tiny_config.optimizer.learning_rate = "sgd", 1e-3
  init = initial_state(tiny_config, array_sources).refiner_params
  state, _ = run_steps(tiny_config, array_sources, 1, ["refiner_pretrain"] * 2)
  jax.tree.map(np.testing.assert_array_equal, state.refiner_params, init)
  state1, _ = run_steps(tiny_config, array_sources, 1)
  state8, _ = run_steps(tiny_config, array_sources, 8)
  assert_same_updates(init, state1.refiner_params, state8.refiner_params)


def test_score_function_drop_head_pays_for_drops_in_self_regularisation(tiny_config, array_sources):
  """With a D that cannot tell anything (all-zero parameters: the same logits for every
  image, so the adversarial credit is 0), the adversarial phase's refiner updates still
  teach the head to drop less (its bias falls): drops cost self-regularisation. Without
  that credit the head would not move at all (a run on hands then dropped whole hands,
  which D took for the target's background)."""
  tiny_config.refiner.output_activation, tiny_config.refiner.dropout_value = "identity", 1.0
  tiny_config.refiner.dropout_slope_head = True
  tiny_config.refiner.dropout_gradient = "score_function"
  tiny_config.optimizer.name, tiny_config.optimizer.learning_rate = "sgd", 1e-3
  mesh = parallel.make_mesh(1)
  data = parallel.put_replicated({"synthetic": array_sources[0].device_data(),
                                  "real": array_sources[1].device_data()}, mesh)

  def one_adversarial_step():  # from a fresh state (the step donates its input)
    s = training.make_setup(tiny_config, *array_sources, 1)
    state = training.create_state(s, mesh)
    state = state.replace(discriminator_params=jax.tree.map(jnp.zeros_like, state.discriminator_params))
    init = jax.device_get(state.refiner_params)
    step = training.compile_step(training.PHASES["adversarial"], s, mesh, training.state_specs(state))
    return init, jax.device_get(step(state, data)[0].refiner_params)

  init, after = one_adversarial_step()
  assert float(after["drop_head"]["bias"][0]) < float(init["drop_head"]["bias"][0])
  tiny_config.loss.self_regularization_weight = 0.0
  init, after = one_adversarial_step()
  jax.tree.map(np.testing.assert_array_equal, after, init)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizers_from_config_follow_the_lr_schedule(tiny_config, name):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  tiny_config.optimizer.name = name
  tiny_config.optimizer.learning_rate = 0.1
  tiny_config.optimizer.lr_decay_steps = (2,)
  tiny_config.optimizer.lr_decay_factor = 0.25
  tx = training.make_optimizer(tiny_config)
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  steps = []
  for _ in range(4):
    # A constant gradient of 1: SGD steps by lr, Adam (bias-corrected) by about lr.
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    steps.append(-float(updates["w"]))
  np.testing.assert_allclose(steps, [0.1, 0.1, 0.025, 0.025], rtol=1e-3)


def test_unknown_optimizer_names_the_field(tiny_config):
  tiny_config.optimizer.name = "lamb"
  with pytest.raises(ValueError, match="config.optimizer.name: unknown optimiser 'lamb'"):
    training.make_optimizer(tiny_config)


def test_unrolled_and_looped_updates_agree(tiny_config, array_sources):
  # CPU unrolls Kg/Kd (XLA:CPU is slow at convolutions in loop bodies); accelerators loop.
  tiny_config.unroll_updates = "unroll"
  unrolled, curve_unrolled = run_steps(tiny_config, array_sources, 1, ["adversarial"] * 2)
  tiny_config.unroll_updates = "loop"
  looped, curve_looped = run_steps(tiny_config, array_sources, 1, ["adversarial"] * 2)
  for a, b in zip(curve_unrolled, curve_looped):
    for name in a:
      np.testing.assert_allclose(a[name], b[name], rtol=1e-5, err_msg=name)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), unrolled.refiner_params,
               looped.refiner_params)


def test_random_streams_cannot_collide():
  # Old derivation: step keys were fold_in(root, step) and the refiner's init key
  # fold_in(root, 1), i.e. step 1's key; the sample grid's was step 10's.
  root = jax.random.PRNGKey(0)
  keys = [training.init_key(root, training.REFINER), training.init_key(root, training.DISCRIMINATOR),
          training.samples_key(root), jax.random.fold_in(root, training.PURPOSE_REALISM)]
  keys += [training.step_key(root, step) for step in range(200)]
  as_tuples = {tuple(np.asarray(jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k))
               for k in keys}
  assert len(as_tuples) == len(keys)


def _one_step(config, sources, phase, state=None, count=1):
  mesh = parallel.make_mesh(1)
  s = training.make_setup(config, *sources, 1)
  state = training.create_state(s, mesh) if state is None else state
  specs = training.state_specs(state)
  data = parallel.put_replicated({"synthetic": sources[0].device_data(), "real": sources[1].device_data()}, mesh)
  fn = training.compile_step(training.PHASES[phase], s, mesh, specs)
  for _ in range(count):
    state, metrics = fn(state, data)
  return state, metrics


@pytest.mark.parametrize("mode", ["unroll", "loop"])
def test_fixed_kg_follows_the_config_on_resume_on_every_path(tiny_config, array_sources, mode):
  # A state saved with Kg 5, resumed with --config.kg=3: the old looped path (the
  # accelerators') ran the state's 5 updates, the unrolled CPU path the config's 3.
  tiny_config.kg, tiny_config.unroll_updates = 3, mode
  s = training.make_setup(tiny_config, *array_sources, 1)
  state = training.create_state(s, parallel.make_mesh(1))
  state = state.replace(kg=jnp.asarray(5, jnp.int32))
  state, metrics = _one_step(tiny_config, array_sources, "adversarial", state)
  assert int(state.refiner_opt_state[0].count) == 3
  assert float(metrics["kg"]) == 3.0 and int(state.kg) == 3


def test_adaptive_kg_resumes_from_the_state(tiny_config, array_sources):
  tiny_config.adaptive_kg = True
  tiny_config.kg, tiny_config.kg_min, tiny_config.kg_max = 1, 1, 4
  tiny_config.kg_raise_above, tiny_config.kg_lower_below = -1.0, -2.0
  s = training.make_setup(tiny_config, *array_sources, 1)
  state = training.create_state(s, parallel.make_mesh(1)).replace(kg=jnp.asarray(2, jnp.int32))
  state, metrics = _one_step(tiny_config, array_sources, "adversarial", state)
  assert int(state.refiner_opt_state[0].count) == 2 and float(metrics["kg"]) == 2.0 and int(state.kg) == 3


def test_kd_updates_replace_half_a_batch_of_history_per_iteration(tiny_config, array_sources):
  # Old code pushed once per discriminator update: Kd x b/2 slots per iteration.
  tiny_config.kd = 3
  half = tiny_config.batch_size // 2
  state, _ = _one_step(tiny_config, array_sources, "discriminator_pretrain",
                       count=tiny_config.history_size // half)  # fills every row
  before = np.asarray(jax.device_get(state.history.images))
  assert int(state.history.filled_rows) == before.shape[0]
  state, _ = _one_step(tiny_config, array_sources, "adversarial", state)
  after = np.asarray(jax.device_get(state.history.images))
  changed = np.any(after != before, axis=(2, 3, 4))  # [rows, columns]
  assert int(changed.sum()) == half and changed.sum(axis=0).tolist() == [1] * half
  assert int(state.discriminator_opt_state[0].count) == 4 + 3


def test_refined_images_per_step_counts_every_refiner_pass(tiny_config, array_sources):
  tiny_config.kg, tiny_config.kd = 2, 3
  s = training.make_setup(tiny_config, *array_sources, 1)
  b = tiny_config.batch_size
  assert training.refined_images_per_step(s, "refiner_pretrain", 2) == b
  assert training.refined_images_per_step(s, "discriminator_pretrain", 2) == b // 2
  assert training.refined_images_per_step(s, "adversarial", 2) == 2 * b + 3 * b // 2


@pytest.mark.slow
def test_the_accelerator_path_xla_convolutions_trains_like_native(tiny_config, array_sources):
  # conv_impl="xla" is the path GPUs and TPUs take (auto picks it off CPU); the CPU tests
  # otherwise run the C++ kernels. Every step on 8 devices, against the CPU default.
  init = initial_state(tiny_config, array_sources)
  states, curves = {}, {}
  for impl in ("xla", "auto"):
    tiny_config.conv_impl = impl
    states[impl], curves[impl] = run_steps(tiny_config, array_sources, 8)
  for m_xla, m_auto in zip(curves["xla"], curves["auto"]):
    for name in m_xla:
      assert np.isfinite(m_xla[name]), name
      np.testing.assert_allclose(m_xla[name], m_auto[name], rtol=1e-3, atol=1e-4, err_msg=name)
  for params in ("refiner_params", "discriminator_params"):
    assert_same_updates(getattr(init, params), getattr(states["auto"], params),
                        getattr(states["xla"], params), rtol=2e-2)
