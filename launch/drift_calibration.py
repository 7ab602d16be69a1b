r"""What ``label_drift`` values mean for a config: the drift of its task network
(``probe/drift.py``) between synthetic images and changes of known effect.

  python launch/drift_calibration.py --config=simgan_jax/configs/default.py:cpu

Trains the task network exactly as a run does (``config.drift``, on the config's
synthetic data), then prints its own error on synthetic images and its mean drift
for: the same scenes rendered by the target domain's appearance model (a perfect
refiner, labels kept exactly; eye simulator with ``eyesim_target`` only), 2 and
4 px shifts, a left-right flip, uniform noise, a constant image and shuffled
images. A refiner's drift is only evidence of moved labels when it is well above
the perfect refiner's. About a minute on 2 CPU cores.
"""

import os
import sys

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from launch import common  # pylint: disable=g-import-not-at-top

_CONFIG = common.define_config_file(
    "config", os.path.join(common.REPO, "simgan_jax/configs/default.py"),
    "SimGAN config file, optionally with a variant: path/to/config.py:variant.")
_NUM = flags.DEFINE_integer("num_images", 1000, "Synthetic images to measure on.")
_SEED = flags.DEFINE_integer("seed", 99, "Seed of the synthetic images (not the training stream's).")


def perfect_refiner_images(config, source, keys, image_shape):
  """The scenes of ``keys`` through eyesim_target's appearance model, or None when the
  config is not the eye simulator against eyesim_target."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  from simgan_jax.simulators import eyes  # pylint: disable=g-import-not-at-top
  from simgan_jax.simulators import sources as eye_sources  # pylint: disable=g-import-not-at-top
  from simgan_jax.simulators import target  # pylint: disable=g-import-not-at-top

  if not isinstance(getattr(source, "config", None), eyes.EyeSimConfig) or config.real_data.name != "eyesim_target":
    return None
  appearance = eye_sources.dataset_config(config.real_data, image_shape).target
  appearance = dataclasses.replace(appearance, scene=source.config)
  images, _ = target.render_batch_staged(keys, appearance, simulator_scenes=True)
  return np.asarray(images)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from simgan_jax.data import sources as sources_lib  # pylint: disable=g-import-not-at-top
  from simgan_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from simgan_jax.probe import drift  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  shape = (config.image_height, config.image_width, config.channels)
  source = sources_lib.make_source(config.synthetic_data, shape, "synthetic_data")
  data = source.device_data()
  task = drift.train_task_network(config, source, data, shape, log=common.say)
  if task is None:
    raise ConfigError("config.drift: the synthetic data has no numeric label to train a task network on")
  key = jax.random.PRNGKey(_SEED.value)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(_NUM.value))
  batch = jax.device_get(jax.jit(source.sample)(data, keys))
  synthetic = np.asarray(batch["image"], np.float32)
  before = drift.predict(task, synthetic)
  rng = np.random.default_rng(0)
  changes = {}
  oracle = perfect_refiner_images(config, source, keys, shape)
  if oracle is not None:
    changes["the same scenes, target appearance (a perfect refiner)"] = oracle
  changes.update({
      "shifted 2 px right": np.roll(synthetic, 2, axis=2),
      "shifted 4 px right": np.roll(synthetic, 4, axis=2),
      "flipped left-right": synthetic[:, :, ::-1],
      "uniform noise": rng.uniform(-1, 1, synthetic.shape).astype(np.float32),
      "constant (grey)": np.zeros_like(synthetic),
      "shuffled (another image's)": synthetic[rng.permutation(len(synthetic))],
  })
  unit = drift.UNITS[task.kind]
  error = drift.synthetic_error(task, before, np.asarray(batch[task.label]))
  print(f"\ntask network: {task.kind} on '{task.label}' ({config.drift.train_steps} steps); its own error "
        f"on {len(synthetic)} synthetic images: {error:.3g} {unit}; selection bound: {task.max_drift(config):g} "
        f"{unit}\n")
  print(f"| change to the synthetic images | label_drift ({unit}) |")
  print("|---|---|")
  for name, images in changes.items():
    print(f"| {name} | {np.mean(task.drift(drift.predict(task, images), before)):.3g} |", flush=True)


if __name__ == "__main__":
  common.run(main)
