"""Test setup: 8 fake CPU devices, set before JAX is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# 8 fake devices x 2 test workers share 2 cores: XLA:CPU's default (40 s) for one device
# to wait on the others at a collective is there to catch deadlocks, not slow machines.
if "collective_call_terminate_timeout" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_cpu_collective_call_terminate_timeout_seconds=900"
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _xla_accepts_flag(flag: str) -> bool:
  """Whether this jax's XLA accepts ``flag`` in XLA_FLAGS: XLA aborts the process on a flag
  it does not know, and flags come and go between versions (the flag's name appearing in
  jaxlib's library is not enough: some names there are refused). One child process,
  about 1.5 s, in the first process only: test workers inherit the flag."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  env = dict(os.environ, XLA_FLAGS=f"{os.environ['XLA_FLAGS']} {flag}", JAX_PLATFORMS="cpu")
  try:
    return subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True,
                          timeout=300).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


# XLA:CPU's newer MLIR fusion emitters compile these tiny programs about twice as slowly
# as its classic ones (the smoke training's three steps, fresh cache, alternated: 32-43 s
# with them, 20-23 s without). Tests compile far more than they run, so they use the
# classic emitters; both sides of every equality test compile the same way.
if "xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"] and _xla_accepts_flag(
    "--xla_cpu_use_fusion_emitters=false"):
  os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"
# Tests run tiny programs a few times each: compiling dominates, so XLA's slow
# optimisation passes are skipped (jax_disable_most_optimizations; measured on two
# 8-device training tests, alternated: 51.8-55.7 s with the passes, 29.3-31.4 s without).
# Launch scripts the tests start inherit it. Both sides of every equality test are
# compiled the same way. JAX_DISABLE_MOST_OPTIMIZATIONS=0 turns it back on.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# One persistent compilation cache for this test session, shared with the launch
# scripts the tests start as subprocesses: identical programs compile once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile  # noqa: E402

  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="simgan_jax_test_xla_cache_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import contextlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny_config():
  """The smoke config on in-memory data: every phase in a few steps."""
  from simgan_jax.configs import default

  return default.get_config("smoke")


def random_pool(seed: int, n: int = 64, shape=(35, 55, 1)) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.fixture
def array_sources():
  from simgan_jax.data.sources import ArraySource

  return ArraySource(random_pool(0)), ArraySource(random_pool(1))


@pytest.fixture
def npz_pools(tmp_path):
  """Synthetic and real pools written as .npz files for the npz source."""
  paths = {}
  for name, seed in (("synthetic", 0), ("real", 1)):
    paths[name] = str(tmp_path / f"{name}.npz")
    np.savez(paths[name], images=random_pool(seed))
  return paths


def npz_flags(paths) -> list[str]:
  return [
      "--config.synthetic_data.name=npz", f"--config.synthetic_data.path={paths['synthetic']}",
      "--config.real_data.name=npz", f"--config.real_data.path={paths['real']}",
  ]


# The slow tier: whole end-to-end files, and tests that took 8 s or more of one worker in
# a full `-n 2` run (`--durations`), and a few of 6-8 s, so that `-m "not slow"` runs in under 5 minutes on 2
# cores. The 1-vs-8-device equality of the training step stays in the fast tier.
SLOW_FILES = {
    "test_drift.py",
    "test_hand_reproduce.py",
    "test_multiprocess.py",
    "test_train_on_datasets.py",
}
SLOW_TESTS = {
    "test_selection_rules.py::test_compare_judges_every_checkpoint_against_its_downstream_error",
    "test_selection_rules.py::test_rules_prefer_refined_data_that_keeps_labels_and_looks_real",
    "test_training.py::test_iteration_runs_kg_refiner_and_kd_discriminator_updates",
    "test_train.py::test_trunk_start_step_freezes_the_trunk_in_the_train_loop_until_that_step",
    "test_target.py::test_all_factors_off_is_the_simulator_and_on_is_far_from_it",
    "test_builders_image_folder.py::test_launch_script_summary_and_one_line_error",
    "test_checkpoints.py::test_changed_shapes_name_the_config_field_and_keep_config_json",
    "test_tfds_sources.py::test_host_shard_on_two_processes_samples_the_one_process_batch",
    "test_sources.py::test_realism_probe_picks_the_same_images_from_a_sharded_pool",
    "test_checkpoints.py::test_loop_keeps_the_best_by_the_probe_scores",
    "test_gaze.py::test_launcher_trains_evaluates_writes_results_and_resumes",
    "test_gaze.py::test_other_input_sizes_compute_the_flattened_size",
    "test_gaze.py::test_sgd_on_eight_devices_takes_the_one_device_step",
    "test_gaze.py::test_training_reduces_the_loss_and_eight_devices_match_one",
    "test_hands.py::test_sensor_off_is_the_simulator_and_on_changes_the_image",
    "test_hands.py::test_sources_and_the_cached_target",
    "test_image_folder_experiment.py::test_labels_pick_the_task_and_regression_trains_on_a_prepared_folder",
    "test_image_folder_experiment.py::test_smoke_end_to_end_without_then_with_real_test",
    "test_image_folder_experiment.py::test_train_launcher_trains_on_two_folders_at_their_own_size",
    "test_hand_oracle.py::test_hand_oracle_is_the_synthetic_hands_through_the_target_sensor",
    "test_seeds.py::test_two_simgan_seeds_smoke",
    "test_reproduce.py::test_diagnose_realism_scores_the_perfect_refiner_with_factor_groups_off",
    "test_layers.py::test_bfloat16_training_stays_close_to_float32",
    "test_layers.py::test_matmul_conv_equals_xla_conv",
    "test_layers.py::test_networks_get_flax_conv_parameters_and_match_across_impls",
    "test_native.py::test_everything_works_without_the_native_package",
    "test_native.py::test_refiner_trains_the_same_with_native_and_hybrid",
    "test_pose.py::test_estimator_fits_a_few_images",
    "test_pose.py::test_hourglass_implementations_agree_and_bfloat16_tracks_float32",
    "test_pose.py::test_smoke_training_on_the_simulator",
    "test_pretrained.py::test_shipped_eyesim_refiner_loads_and_refines",
    "test_refine.py::test_launcher_end_to_end_and_one_line_errors",
    "test_reproduce.py::test_oracle_pool_renders_the_synthetic_scenes_with_the_target_appearance",
    "test_reproduce.py::test_smoke_reproduction_end_to_end",
    "test_reproduce.py::test_unityeyes_mpiigaze_preset_on_fixtures",
    "test_simulator_sources.py::test_eyesim_overrides_and_bad_fields",
    "test_simulator_sources.py::test_eyesim_target_source_and_labelled_split",
    "test_sources.py::test_launch_on_sharded_npz_pools_prints_memory_and_resumes_bitwise",
    "test_sources.py::test_training_on_sharded_pools_matches_one_device_replicated",
    "test_stabilisers.py::test_discriminator_at_lr_zero_stays_while_the_refiner_moves_and_augmentation_reaches_both_losses",
    "test_stabilisers.py::test_eight_devices_match_one_device_with_ema_r1_and_augmentation",
    "test_stabilisers.py::test_ema_is_the_closed_form_average_of_the_recorded_params",
    "test_stabilisers.py::test_r1_of_the_native_discriminator_is_twice_differentiable_and_matches_xla",
    "test_stabilisers.py::test_sample_grids_refine_and_export_use_the_average",
    "test_target.py::test_deterministic_and_staged_equals_one_program",
    "test_tasks_loop.py::test_pose_pool_is_sharded_along_the_batch_axis",
    "test_tasks_loop.py::test_sigterm_saves_says_where_and_resumes_to_the_uninterrupted_run",
    "test_train.py::test_killed_run_resumes_bitwise_equal_to_an_uninterrupted_run",
    "test_train.py::test_nan_loss_stops_with_one_line_and_keeps_the_last_checkpoint",
    "test_train.py::test_run_writes_metrics_samples_checkpoints_and_restores_in_a_fresh_process",
    "test_train.py::test_sigterm_mid_phase_saves_says_where_and_resumes_bitwise",
    "test_training.py::test_adaptive_kg_resumes_from_the_state",
    "test_training.py::test_batch_norm_discriminator_trains_on_eight_devices",
    "test_training.py::test_fixed_kg_follows_the_config_on_resume_on_every_path",
    "test_training.py::test_kd_updates_replace_half_a_batch_of_history_per_iteration",
    "test_training.py::test_pretraining_uses_pretrain_psi_and_the_adversarial_phase_psi",
    "test_training.py::test_same_seed_same_bits_other_seed_other_bits",
    "test_training.py::test_the_accelerator_path_xla_convolutions_trains_like_native",
    "test_training.py::test_unrolled_and_looped_updates_agree",
}


# Tests whose time goes into running, not compiling, programs: they run with XLA's
# optimisation passes (`xla_optimized` marker). Measured one test at a time, with and
# without (5 Dec 2026, while an ablation ran on the same 2 cores): the selection-rule comparison 99 s with the passes,
# 409 s without; the folder smoke 78 vs 48 s, pose on the simulator 53 vs 35 s and the
# pose fit 62 vs 58 s, so those three compile without them. test_drift.py's module
# fixture uses `xla_optimized()` itself.
OPTIMIZED_TESTS = {
    "test_selection_rules.py::test_compare_judges_every_checkpoint_against_its_downstream_error",
}


def _file(item) -> str:
  return item.nodeid.partition("::")[0].removeprefix("tests/")


def pytest_collection_modifyitems(config, items):
  del config
  slow_files = set()
  for item in items:
    test = f"{_file(item)}::{item.nodeid.partition('::')[2].split('[')[0]}"
    if _file(item) in SLOW_FILES or test in SLOW_TESTS:
      item.add_marker(pytest.mark.slow)
      slow_files.add(_file(item))
    if test in OPTIMIZED_TESTS:
      item.add_marker(pytest.mark.xla_optimized)
  # Longest first, a whole file at a time (module fixtures are built once per file run):
  # the files of LONGEST in its order, then the other files with slow tests, then the rest
  # (a stable sort keeps the order within each file). With pytest.ini's `--dist worksteal`
  # the workers start on the long tests and end on short ones stolen from each other.
  items.sort(key=lambda item: (_file(item) not in slow_files,
                               LONGEST.index(_file(item)) if _file(item) in LONGEST else len(LONGEST)))


# The files of the longest tests of a clean clone's `-n 2` run (`--durations`, 5 Dec 2026),
# longest first.
LONGEST = [
    "test_hand_reproduce.py", "test_reproduce.py", "test_seeds.py", "test_selection_rules.py",
    "test_drift.py", "test_multiprocess.py", "test_image_folder_experiment.py", "test_sources.py",
    "test_pose.py",
]


@contextlib.contextmanager
def xla_optimized():
  """XLA's optimisation passes on, in this process and in the launch scripts it starts."""
  import jax

  key = "JAX_DISABLE_MOST_OPTIMIZATIONS"
  env, flag = os.environ.get(key), jax.config._read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  os.environ[key] = "0"
  try:
    yield
  finally:
    if env is None:
      del os.environ[key]
    else:
      os.environ[key] = env
    jax.config.update("jax_disable_most_optimizations", flag)


@pytest.fixture(scope="session")
def optimized_xla():
  """The `xla_optimized` context manager, for fixtures of a wider scope than a test."""
  return xla_optimized


@pytest.fixture(autouse=True)
def _xla_optimizations(request):
  if request.node.get_closest_marker("xla_optimized") is None:
    yield
  else:
    with xla_optimized():
      yield
