r"""The paper's experiment, end to end: does refinement help a gaze estimator?

``launch/reproduce.py`` reads this file. One config holds the SimGAN config
(``simgan``, as in ``default.py``), the gaze estimator config (``gaze``, as in
``gaze.py``) and the experiment around them. Commands (repository root):

  # The built-in benchmark, sized for 2 CPU cores (the run behind docs/results_eyesim.md):
  python launch/reproduce.py --experiment=eyesim_gaze:cpu --workdir=runs/repro_cpu
  # Full size, for an accelerator:
  python launch/reproduce.py --experiment=eyesim_gaze --workdir=runs/repro
  # The paper's data (prepare UnityEyes and MPIIGaze first, docs/datasets.md):
  python launch/reproduce.py --experiment=unityeyes_mpiigaze --workdir=runs/repro_mpiigaze
  # Every stage in a minute or two, for tests:
  python launch/reproduce.py --experiment=eyesim_gaze:smoke --workdir=/tmp/r

Any field can be changed with ``--set FIELD=VALUE`` (repeatable), e.g.
``--set simgan.num_iterations=2000 --set seeds=0,1,2,3``. An ablation that keeps
the test split out of the decision scores a few rows on the target validation
split instead (the ``target`` row trains on that split, so it is left out):

  python launch/reproduce.py --experiment=eyesim_gaze:cpu --workdir=runs/ablate_lambda1 \
      --set simgan.loss.self_regularization_weight=1.0 --set training_sets=synthetic,refined \
      --set data_multiplier=1 --set seeds=0,1 --set test_data=eyesim_target:validation

Stages (each resumes or is skipped when its outputs exist in the workdir):

1. ``simgan/``: SimGAN training with a checkpoint every ``simgan.checkpoint_every``
   steps, all kept. At each checkpoint the training loop logs ``realism_kid``: the
   KID between refined simulator images and real-pool images on fixed random
   features (``probe/realism.py``), ``two_sample_accuracy`` (a fresh
   refined-vs-real classifier), ``label_drift`` (of a gaze estimator trained on
   the simulator's labels) and ``selection_score``. No target label is used.
2. ``selection.json``: the adversarial-phase checkpoint with the lowest
   ``selection_score`` (``simgan.selection.metric``: realism KID, or in ``:cpu``
   the two-sample accuracy; +inf when collapsed or over ``simgan.drift.max_drift``) is the
   refiner used from here on (target labels are never used to select).
3. ``refined/``: the first ``data_multiplier * num_synthetic`` images of
   ``synthetic_data`` refined by that checkpoint, labels unchanged; an
   ``array_record`` TFDS dataset (``launch/refine.py``'s format).
4. ``gaze/<training set>/seed_<s>/``: one gaze estimator per training set and seed:
   ``synthetic`` (the first ``num_synthetic`` images), ``synthetic_4x`` (all),
   ``refined``, ``refined_4x``, ``oracle`` (eyesim only: the ``num_synthetic``
   synthetic scenes rendered by the target domain's own appearance model, what a
   perfect refiner would make: the most refinement can gain here) and ``target``
   (``target_train_data``: labelled target-domain images, the upper bound the
   paper does not have). All are tested on ``test_data``.
5. ``preservation.json``: pupil-centre shift between ``num_label_pairs``
   synthetic/refined pairs (with the pupil localiser's own error against the
   simulator's labels beside it), and gaze drift: the angle between the
   predictions of the ``target``-trained estimator (first seed) for a synthetic
   image and its refinement; the same two measures for the oracle images (a
   perfect refiner's shift and drift, the scale to read the refiner's against).
6. ``report.md`` with ``within_d.png``, ``losses.png`` and ``samples.png``.

Several SimGAN seeds (``simgan_seeds``, e.g. ``--set simgan_seeds=0,1,2``; empty:
``simgan.seed`` alone): stages 1-3, the refined rows' estimators (estimator seeds
``refined_seeds``, empty: ``seeds``) and stage 5 run once per SimGAN seed, the
first seed's at the top level of the workdir as above, seed ``s``'s others under
``simgan_seed<s>/``; the rows that do not depend on the refiner are trained once.
A refined row is mean +- standard deviation over every (SimGAN seed x estimator
seed) run; the report gives the spread over SimGAN seeds alone beside it and each
seed's selected checkpoint (experiments/seeds.py).

Variants (``--experiment=NAME:VARIANT``):

* ``eyesim_gaze`` (no variant): the paper's networks and schedule on the
  built-in simulator and target domain, for an accelerator; not timed at full
  size (a shortened run on one H200 is in docs/results_eyesim_gpu.md).
* ``eyesim_gaze:cpu``: SimGAN's ``cpu,camera`` variant (a camera-only refiner: the
  simulator's eyes through learned light, sensor and JPEG stages; default.py ``_camera``
  says why) and a narrower gaze estimator
  (conv widths 16, 16, 32, 40, 96; FC 256; 600 steps at batch 64) for 2 CPU
  cores; three SimGAN seeds (``simgan_seeds``), the refined rows with two
  estimator seeds each (``refined_seeds``). Its results, stage times and caveats:
  docs/results_eyesim.md.
* ``eyesim_gaze:smoke``: tiny networks and a few steps of everything (tests).
* ``unityeyes_mpiigaze``: UnityEyes refined towards MPIIGaze ``train``, tested
  on MPIIGaze ``test``; the paper's gaze network at batch 512. The paper's
  "synthetic" set has 1.2M images; set ``num_synthetic`` to what you have.
  There are no labelled target images besides the test set in our preparation,
  so the ``target`` row trains on MPIIGaze ``train`` (which the paper's refiner
  saw without labels); drop it with ``--set target_train_data=``.
* ``image_folder[:cpu|:smoke]``: your own folders (``--synthetic``, ``--real``,
  ``--real_test``), a classifier or regressor of their labels: configs/image_folder.py.
"""

import ml_collections

from simgan_jax.configs import default
from simgan_jax.configs import gaze
from simgan_jax.configs import hand_reproduce
from simgan_jax.configs import image_folder
from simgan_jax.configs import unityeyes_mpiigaze

EXPERIMENTS = ("eyesim_gaze", "unityeyes_mpiigaze") + hand_reproduce.EXPERIMENTS + image_folder.EXPERIMENTS
VARIANTS = ("cpu", "smoke")


def get_config(experiment: str = "eyesim_gaze") -> ml_collections.ConfigDict:
  """``experiment`` is ``NAME`` or ``NAME:VARIANT`` (see the module docstring)."""
  name, _, variant = experiment.partition(":")
  if name not in EXPERIMENTS:
    raise ValueError(f"--experiment: unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
  if variant and variant not in VARIANTS:
    raise ValueError(f"--experiment: unknown variant {variant!r} of {name}; known: {', '.join(VARIANTS)}")
  variant = variant or None
  if name in hand_reproduce.EXPERIMENTS:  # the hand experiment (Table 4): configs/hand_reproduce.py
    return hand_reproduce.get_config(name, variant, experiment)
  if name in image_folder.EXPERIMENTS:  # your own folders: configs/image_folder.py
    return image_folder.get_config(variant, experiment)

  c = ml_collections.ConfigDict()
  c.experiment = experiment
  if name == "eyesim_gaze":
    # The eye benchmark's 2-core refiner is camera-only (default.py _camera).
    c.simgan = default.get_config("cpu,camera" if variant == "cpu" else variant)
    c.synthetic_data = "eyesim"  # what gets refined: a tasks.data spec
    c.target_train_data = "eyesim_target:validation"  # labelled target eyes ('' = no target row)
    c.test_data = "eyesim_target:test"
  else:
    c.simgan = unityeyes_mpiigaze.get_config(variant)
    c.synthetic_data = "unityeyes/35x55:train"
    c.target_train_data = "mpiigaze/crop:train"
    c.test_data = "mpiigaze/crop:test"
  c.gaze = gaze.get_config({"cpu": "cpu", "smoke": "smoke"}.get(variant) if variant else None)

  # SimGAN: checkpoints are the candidates for selection, so all are kept. Their spacing
  # is the SimGAN config's own (launch/train.py on it scores the same checkpoints, and
  # its keep-best keeps the ones this selection ranks first).
  c.simgan.max_checkpoints_to_keep = 1000
  # Training sets: `synthetic`/`refined` hold num_synthetic images, the 4x sets
  # data_multiplier times as many (the paper's "4x data").
  c.num_synthetic = 50_000
  c.data_multiplier = 4
  c.synthetic_seed = 1  # simulator sets: image i is rendered from fold_in(PRNGKey(seed), i)
  c.seeds = (0, 1, 2)  # gaze estimator seeds per training set
  # SimGAN seeds: one SimGAN run, selected refiner and refined set per seed; the refined
  # rows are trained for each with the estimator seeds `refined_seeds` (empty: `seeds`)
  # and report mean +- spread over all (SimGAN seed x estimator seed) runs; the other rows
  # are trained once. Empty: simgan.seed alone. The first seed's stages are the workdir's
  # top level (a single-seed workdir's layout), seed s's others under simgan_seed<s>/.
  c.simgan_seeds = ()
  c.refined_seeds = ()
  # Rows of the table, i.e. which estimators to train (a subset for an ablation,
  # e.g. ``--set training_sets=synthetic,refined``). ``target`` also needs
  # target_train_data; gaze drift is measured by the ``target`` estimator.
  # ``oracle`` (eye simulator + eyesim_target only): the synthetic scenes rendered by
  # the target's own appearance model, what a perfect refiner would make: the most
  # refinement can gain on this benchmark, and a perfect refiner's drift and shift.
  c.training_sets = ("synthetic", "synthetic_4x", "refined", "refined_4x", "target")
  if name == "eyesim_gaze":
    c.training_sets = ("synthetic", "synthetic_4x", "refined", "refined_4x", "oracle", "target")
  c.num_label_pairs = 1000  # synthetic/refined pairs for label preservation
  c.num_sample_images = 8  # rows of samples.png
  # A stronger two-sample test, once on the selected refiner (default.py
  # final_two_sample_config; experiments/reproduce.py final_two_sample).
  c.final_two_sample = default.final_two_sample_config(variant)
  c.refine_chunk = 4096  # images per refined chunk (the resumable unit)
  c.data_dir = ""  # prepared TFDS datasets ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
  c.overrides = ()  # the --set assignments applied (apply_overrides), quoted in report.md

  if variant == "cpu":
    # SimGAN's cpu,camera variant (a camera-only refiner, 6,300 steps at batch 32) as it
    # is, with its checkpoint (and selection candidate) every 100 steps: launch/train.py
    # with default.py:cpu,camera scores the same checkpoints and selects the same one.
    c.num_synthetic = 5000
    c.gaze.model.conv_features = (16, 16, 32, 40, 96)
    c.gaze.model.hidden_features = 256
    c.gaze.batch_size = 64
    c.gaze.num_steps = 600
    c.gaze.log_every = 100
    c.gaze.checkpoint_every = 600
    c.refine_chunk = 2000
    c.simgan_seeds = (0, 1, 2)  # three refiners; two estimator seeds each for the refined rows
    c.refined_seeds = (0, 1)
  elif variant == "smoke":
    c.simgan.checkpoint_every = 3
    c.simgan.realism.num_images = 64
    c.simgan.realism.subset_size = 32
    c.num_synthetic = 64
    c.seeds = (0, 1)
    c.num_label_pairs = 32
    c.num_sample_images = 4
    c.refine_chunk = 64
  c.gaze.data_dir = c.data_dir
  return c


def apply_overrides(config: ml_collections.ConfigDict, assignments) -> ml_collections.ConfigDict:
  """Applies ``["simgan.num_iterations=2000", "seeds=0,1", ...]`` (``--set``), each value
  parsed as the type of the field it replaces (tuples: comma-separated)."""
  for assignment in assignments or ():
    field, sep, text = assignment.partition("=")
    field = field.strip()
    if not sep or not field:
      raise ValueError(f"--set {assignment!r}: expected FIELD=VALUE, e.g. simgan.num_iterations=2000")
    *parents, leaf = field.split(".")
    node = config
    try:
      for name in parents:
        node = node[name]
      old = node[leaf]
    except (KeyError, AttributeError, TypeError):
      raise ValueError(f"--set {assignment!r}: no config field {field!r}") from None
    # A placeholder field (e.g. optimizer.refiner_learning_rate) is a typed FieldReference:
    # parsed as its declared type even while unset, and "none" unsets it again.
    ref = node._fields.get(leaf)  # pylint: disable=protected-access
    kind = ref.get_type() if isinstance(ref, ml_collections.FieldReference) else None
    if kind is not None and text.strip().lower() == "none":
      value = None
    else:
      like = kind() if old is None and kind in (bool, int, float, str) else old
      value = _parse(text.strip(), like, field)
    try:
      node[leaf] = value
    except TypeError:
      raise ValueError(f"--set {assignment!r}: {value!r} does not fit the type of {field!r}") from None
  config.overrides = tuple(config.get("overrides", ())) + tuple(assignments or ())
  return config


def _parse(text: str, like, field: str):
  try:
    if isinstance(like, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
      return text.lower() in ("true", "1")
    if isinstance(like, (tuple, list)):
      items = [t.strip() for t in text.split(",") if t.strip()]
      kind = type(like[0]) if like else (int if all(t.lstrip("-").isdigit() for t in items) else str)
      return tuple(_parse(t, kind(), field) for t in items)
    if isinstance(like, int):
      return int(text)
    if isinstance(like, float):
      return float(text)
    return text
  except ValueError:
    raise ValueError(f"--set {field}={text!r}: expected a {type(like).__name__}") from None
