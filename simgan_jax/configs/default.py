"""Default config: SimGAN on the built-in eye simulator -> "in the wild" target eyes.

Commands (from the repository root):

  python launch/train.py --workdir=runs/eyesim                       # this config
  python launch/train.py --config=simgan_jax/configs/default.py:cpu,camera --workdir=runs/cpu
  python launch/train.py --config=simgan_jax/configs/default.py:cpu --workdir=runs/cpu_trunk
  python launch/train.py --config=simgan_jax/configs/default.py:smoke --workdir=/tmp/s

Variants (``--config=...default.py:VARIANT``; several separated by commas, applied in order):

* (none) the paper's eye setup (35x55 grey, 64-wide 4-block refiner, local
  discriminator) on the built-in simulator, batch 512, Adam 1e-4 as the article
  advises a small learning rate, 1,000 + 200 pretraining steps and 10,000
  iterations. Meant for an accelerator: on one NVIDIA H200 an adversarial
  iteration at batch 512 runs at 28.6 iterations/s (benchmarks/train_step.py),
  and a shortened run (500 + 200 pretraining steps, 2,000 iterations) took 3.9
  minutes wall, compilation and the target cache build included; its realism
  KID fell from 10.2 (unrefined) to 0.55 (docs/results_eyesim_gpu.md).
* ``cpu``: batch 32, a 32-wide residual refiner (the input plus a learned change) with
  mirror (REFLECT) padding and one noise channel, self-regularisation on 4x4 block means
  of each image at zero mean and unit std (``normalized_low_pass_4``, lambda 1.0; identity
  during pretraining; the hand and folder configs keep ``low_pass_4`` at 0.5), 200 + 100
  pretraining steps and 2,000 iterations; the checkpoint to use is the one a two-sample
  classifier tells from real images least often (``selection``). The general-purpose
  2-core refiner (your own data starts from it). Its times: docs/benchmarks.md; on eyes
  (test split) it got 88% (1x) and 101% (4x) of the perfect refiner's gain, but a
  classifier told its eyes from target eyes 94-100% of the time (docs/history.md, "The eye
  reproduction with the residual trunk"); ``cpu,camera`` below is the eye benchmark's.
* ``camera`` (after ``cpu`` or ``smoke``): a camera-only refiner, the eye benchmark's
  (``cpu,camera`` is what ``reproduce.py --experiment=eyesim_gaze:cpu`` trains): no
  network, the simulator's image through learned light, sensor and JPEG stages (13
  numbers), 6,000 iterations of which the checkpoints from step 5,000 compete; about 10
  minutes on 2 CPU cores with the probes (SimGAN seeds 1 and 2 of
  docs/ablation_val_camera_only.md: 9.8 and 10.0 min). For targets that differ from the
  simulator by their camera; ``_camera`` below gives its validation results.
* ``smoke``: a few steps of every phase with tiny batches; for tests (seconds).
* ``paper``: the paper's optimiser, SGD with constant lr 0.001 at batch 512.
* ``article``: the ML-journal article's advice, SGD lr 0.0001, adaptive Kg.

Stabilisers beyond the paper (SIMGAN.md "Beyond the paper"), each off by default
and documented at its field: ``refiner_ema.decay`` (refiner weight averaging, used by
probes, sample grids, refine and export), ``discriminator.r1_gamma`` (R1 penalty),
``augment.policy`` (DiffAugment), ``optimizer.refiner_learning_rate`` /
``optimizer.discriminator_learning_rate`` (TTUR), and the brightness-free
self-regularisation maps ``loss.psi=gradients|band_pass|contrast_normalized|normalized_low_pass_4``
(the last is ``cpu``'s). For depth images: ``refiner.dropout_value`` (a drop-out head
that sets pixels to "no measurement") and ``loss.self_regularization_free_above``
(such pixels skip self-regularisation).

Every field can be overridden on the command line: ``--config.batch_size=64``.
"""

import ml_collections


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``variant`` is the text after ':' in ``--config``."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Images: (height, width, channels). The eye preset is 35x55 grey, in [-1, 1].
  c.image_height = 35
  c.image_width = 55
  c.channels = 1

  # Data: sources from the registry in simgan_jax/data/sources.py.
  c.synthetic_data = data_config("eyesim")
  c.real_data = data_config("eyesim_target")

  # Networks (SIMGAN.md "Networks"). Refiner: conv k x k, num_blocks ResNet blocks,
  # 1x1 conv, tanh (our choice; the paper's output is linear).
  c.refiner = ml_collections.ConfigDict()
  c.refiner.features = 64
  c.refiner.num_blocks = 4
  c.refiner.kernel_size = 3
  # "tanh", "linear" (the paper's text), "residual" (not in the paper): input + a
  # zero-initialised change, clipped to [-1, 1], so R is the identity from step 0, or
  # "identity" (only with a local drop-out head, below: R only drops pixels); a
  # tanh R learns it slowly on depth (hands :cpu: realism KID 83 after 200 identity
  # steps, 30 after 1,000, against 21 for the unrefined images).
  c.refiner.output_activation = "tanh"
  # "SAME" (zeros) or "REFLECT": not stated by the paper; zero padding lets R mark
  # the image border, which D's patches then see (frame artefacts in our cpu runs).
  c.refiner.padding = "SAME"
  # Channels of standard normal noise appended to R's input (not in the paper: 0).
  # A deterministic R can add texture to flat regions only from the image border or
  # nearby edges; noise gives it a source of grain (one key per example).
  c.refiner.noise_channels = 0
  # Drop-out head (not in the paper; None = off): R also learns where to set pixels to
  # this "no measurement" value (1.0 for the hand depth images), binary in the forward
  # pass, straight-through gradients (models.drop_pixels). For depth sensors, whose
  # missing pixels a refiner cannot reach by small changes: a pixel halfway to 1.0 is a
  # surface no sensor reports. Pair with loss.self_regularization_free_above.
  c.refiner.dropout_value = ml_collections.config_dict.placeholder(float)
  # The drop-out head's view: 0 reads the refiner's features; K > 0 only a K x K
  # neighbourhood of the input (local depth and slope, where a sensor drops pixels).
  # With output_activation="identity" R does nothing but drop pixels. Hands :cpu, validation
  # split, 3 SimGAN x 2 estimator seeds (identity, K = 5): 32.97 +- 0.74 px against 32.03
  # +- 0.73 for synthetic, scattered single drops (docs/ablation_val_hand_localdrop.md);
  # with 4x the iterations 41.29 +- 8.44: dense speckle, then most of the hand dropped
  # (docs/ablation_val_hand_localdrop_long.md).
  c.refiner.dropout_head_kernel = 0
  # Or the drop-out head as a linear function of the input's local slope and value only
  # (models.SlopeDropHead, 5 parameters): drop-out on steep surfaces and silhouettes, as
  # a structured-light sensor's. Hands :cpu, validation split, 3 SimGAN x 2 estimator
  # seeds (identity output, 1,200 iterations): 33.12 +- 1.22 px against 32.03 +- 0.73 for
  # synthetic; it drops speckle over the whole hand (docs/ablation_val_hand_slopedrop.md).
  c.refiner.dropout_slope_head = False
  # How the drop-out head learns: "straight_through" (models.drop_pixels) or
  # "score_function" (a local REINFORCE estimate: each pixel's drop is credited with how
  # much the drops changed the adversarial loss of D's patches around it and the
  # self-regularisation of its cell; training._drop_head_surrogate). Hands :cpu,
  # validation split, 3 SimGAN x 2 estimator seeds, with the slope head, drops free
  # (loss.self_regularization_free_above=0.5) and refiner lr 5e-5: 30.02 +- 1.80 px
  # against 32.03 +- 0.73 for synthetic (13% of the perfect refiner's gain; SimGAN seeds
  # 3-5: 29.97 +- 1.33), but the picked refiners speckle the whole hand
  # (docs/ablation_val_hand_sfdrop_slow.md, _seeds345.md); at
  # refiner lr 2e-4 one seed erased the hands (docs/ablation_val_hand_sfdrop_free.md);
  # charged with the self-regularisation the drops die out (docs/ablations.md). Off here;
  # the hands' :cpu default (configs/handsim.py; test split: docs/results_handsim.md).
  c.refiner.dropout_gradient = "straight_through"
  # Grid-phase input (not in the paper; 0 = off): sin/cos of the pixel's phase in a
  # P-pixel grid as 4 more input channels (models.grid_phase), so R can draw artefacts
  # locked to the real camera's 8x8 JPEG blocks (P = 8), which a translation-equivariant
  # network otherwise cannot place. Eye validation split, 3 SimGAN x 2 estimator seeds, on
  # :cpu: 8.88 +- 0.81 deg (35% of the perfect refiner's gain) against 7.66 +- 0.13 (86%)
  # without; realism KID 1.3-1.5 against 0.65-0.77, final two-sample 100% on every seed
  # (docs/ablation_val_grid_phase8.md): R tiles one fixed 8-px motif over every image. Off.
  c.refiner.grid_phase_period = 0
  # Block quantiser (not in the paper; 0 = off): R's output through a learned JPEG-like
  # stage on the absolute B x B grid (models.BlockQuantizer: block DCT, each coefficient
  # rounded to a learned step, inverse DCT), so R can compress as the real camera does
  # (B = 8) with blocks that follow the content; starts at step 0.05 (mild blocking).
  # Eye validation split, 3 SimGAN x 2 estimator seeds, on :cpu: 8.07 +- 0.16 deg (69%
  # of the perfect refiner's gain) against 7.66 +- 0.13 (86%) without; final two-sample
  # 97.2/100/99.4% (docs/ablation_val_block_quantizer.md): R learns large steps on
  # mid frequencies, not a JPEG table, and its eyes lose the sclera. Off.
  c.refiner.block_quantizer = 0
  # Smooth noise inputs (not in the paper; () = off): per entry c one more input channel of
  # standard normal values on a c-row grid (square cells), bilinearly upsampled; c = 1 is
  # one value per image (models.smooth_noise). A random source for what varies per image
  # and over tens of pixels in the target (light, contrast, brightness), which per-pixel
  # noise_channels through R's ~19 px receptive field cannot supply. Eye validation split,
  # 3 SimGAN x 2 estimator seeds, 1,2,4 with psi normalized_band: 7.75 +- 0.23 deg (82%
  # of the perfect refiner's gain; normalized_band alone 7.69 +- 0.21), final two-sample
  # 100%: the trunk does not use them, refined eyes stay evenly lit
  # (docs/ablation_val_smooth_noise_band.md). Off.
  c.refiner.smooth_noise_cells = ()
  # JPEG stage (not in the paper; False = off): R's output through 8x8 block-DCT rounding
  # with JPEG's standard luminance table times a quality scale drawn per image, its mean
  # and spread over images learned (models.JpegQuantizer): blocks on the camera's grid
  # with one table shape, where block_quantizer learns 64 free steps. Assumes the real
  # images are JPEG-compressed with a scaled standard table (the eye target's are).
  # Not usable yet: on eyes :cpu (SimGAN seed 0, run stopped; no report) D pushed the
  # scale from 0.5 to 3.2 by step 500 and 1,879 by step 1,700 (every block flat): the
  # learned-step-size gradient keeps pushing once all of a block's AC coefficients round
  # to zero, where the true effect of a larger step is none. With the self-regularisation
  # after the stage instead, it shrank to 0.07 by step 800. The scale now learns by the
  # score function of the per-image adversarial losses: with light_stage, one SimGAN seed
  # (a probe, not a decision), it stayed at 0.57-0.59; 7.61 +- 0.16 deg (88% of the perfect
  # refiner's gain), final two-sample 94.4% (docs/ablation_val_light_jpeg_seed0.md). With
  # light_stage over 3 SimGAN seeds: 7.73 +- 0.18 deg (83%, within :cpu's spread), final
  # two-sample 94-98%, pupil shift 3.5-4.7 px (docs/ablation_val_light_jpeg.md). Off.
  c.refiner.jpeg_quantizer = False
  # Light stage (not in the paper; False = off): after the trunk (before the JPEG stage), a
  # random light and tone per image: a smooth gain field (2- and 4-row grids), gamma,
  # contrast and brightness, each a random draw times a learned magnitude
  # (models.LightStage). For targets whose light and exposure vary from image to image.
  # With the first JPEG stage (above) its magnitudes grew to 0.6 and 1.3 (log-gain
  # fields), 2.0 (gamma), 2.1 (brightness) by step 1,400. Alone, one SimGAN seed (a probe):
  # they stay moderate, 7.76 +- 0.13 deg (82%), final two-sample 99.2%
  # (docs/ablation_val_light_stage_seed0.md); with jpeg_quantizer over 3 SimGAN seeds, as
  # :cpu's downstream (docs/ablation_val_light_jpeg.md, above). Off.
  c.refiner.light_stage = False
  # The light stage also learns the mean of its tone draws (models.LightStage.tone: mean
  # gamma, contrast and brightness over images, zero at the start), so it can make every
  # image darker or flatter, not only vary them. Needs light_stage. Off.
  # With all three stages on the identity output (a camera-only refiner: 13 learned numbers,
  # no trunk), noise_channels=0, 6,000 iterations and selection.min_step=5000, eyes :cpu on
  # the target validation split over 3 SimGAN seeds: final two-sample 70.2-71.5% (perfect
  # refiner 63.2%; :cpu's 94-100%), 7.82 +- 0.18 deg downstream (79% of the perfect
  # refiner's gain, within :cpu's spread) (docs/ablation_val_camera_only.md): the
  # ``camera`` variant (below), the eye benchmark's refiner.
  c.refiner.light_stage_tone = False
  # A learned mean exposure for the light stage (models.LightStage.exposure: every image's
  # linear values times exp(e), e zero at the start): darkens or brightens like a camera's
  # exposure, without the gamma's crushing of dark tones. Needs light_stage. Off.
  c.refiner.light_stage_exposure = False
  # Sensor stage (not in the paper; False = off): after any light stage, before any JPEG
  # stage, a Gaussian blur of random width and signal-dependent sensor noise per image,
  # each a random draw times a learned magnitude (models.SensorStage): the two camera
  # effects besides light and JPEG blocking without which even the perfect refiner's
  # eyes are told from target eyes (87.9% without blur, 96.8% without noise, against
  # 63.2%; docs/diagnosis_eye_realism.md). With light_stage and jpeg_quantizer, one SimGAN
  # seed (a probe): 7.80 +- 0.07 deg (80%), final two-sample 98.6% (94.4% without it), the
  # learned blur shrank from 0.6 to 0.42 px (docs/ablation_val_sensor_stage_seed0.md). Off.
  c.refiner.sensor_stage = False
  # Trunk start (not in the paper; 0 = off): R's trunk is skipped, its zero-initialised
  # residual change left untouched, until this global step; before it R is its camera
  # stages alone (a camera-only refiner), after it the trunk learns what the camera stages
  # cannot draw (the target's eyelashes, skin and iris texture, glints) against a
  # discriminator already tuned to the camera. Residual output only. One SimGAN seed on eyes
  # (a probe; cpu,camera with the residual trunk from step 5,300): 7.90 +- 0.20 deg against
  # the camera-only 7.73 at the same step, final two-sample 69.6%: the trunk went back to
  # about the identity and drew nothing (docs/ablation_val_trunk_late_seed0.md); at
  # self-regularisation weight 0.1 as well: 7.88 +- 0.11 deg, 69.4%
  # (docs/ablation_val_trunk_late_lam01_seed0.md). Off.
  c.refiner.trunk_start_step = 0
  # Discriminator: layer table by preset ("eye", "hand" or "patch9": 9 px patches), widths scaled by
  # width_multiplier, optional batch norm (the article credits it for faster D).
  c.discriminator = ml_collections.ConfigDict()
  c.discriminator.preset = "eye"
  c.discriminator.width_multiplier = 1.0
  c.discriminator.batch_norm = False
  # R1 gradient penalty on real images (Mescheder et al., ICML 2018; not in the paper;
  # 0 = off): r1_gamma / 2 * E_y ||grad_y D(y)||^2 added to D's loss, D(y) the image's
  # real log-odds, logit_real - logit_refined summed over patches (stabilisers.py).
  c.discriminator.r1_gamma = 0.0
  # How convolutions run (simgan_jax/layers.py): "xla" (lax.conv: cuDNN / TPU),
  # "matmul" (shifted slices + one matmul), "hybrid" (XLA's forward and input
  # gradient, a hand-written kernel gradient), "native" (C++ kernels compiled on
  # first use, simgan_jax/native: the fastest on CPU, 2x hybrid, README "Benchmarks"),
  # or "auto" (native on CPU, hybrid there without a C++ compiler, xla elsewhere).
  # Same maths and parameters.
  c.conv_impl = "auto"
  # Compute dtype of the networks: "float32", or "bfloat16" (activations and
  # matmuls; parameters, optimiser states and losses stay float32).
  c.compute_dtype = "float32"

  # Losses, each named from a registry in simgan_jax/losses.py.
  c.loss = ml_collections.ConfigDict()
  c.loss.adversarial = "local_adversarial_loss"
  c.loss.discriminator = "local_discriminator_loss"
  c.loss.self_regularization = "self_regularization_loss"
  # Feature map psi for self-regularisation: identity, channel_mean, low_pass_2,
  # low_pass_4 (losses.py), or your own (register_psi). Four leave global brightness
  # free (a constant added to the whole image costs nothing): gradients (finite
  # differences), band_pass (Laplacian pyramid without its lowest level),
  # contrast_normalized (each image at zero mean, unit std; contrast is free too),
  # normalized_low_pass_4 (4x4 block means of that: blur and grain are free as well).
  c.loss.psi = "identity"
  # psi during refiner pretraining, which has no adversary: identity makes R start
  # as the identity map. With a low-pass psi and no D, nothing would hold R's
  # high frequencies (a low_pass_4 + noise-input refiner pretrained with low_pass_4
  # reached realism KID 2,638, against 7-9 for the identity-pretrained ones).
  c.loss.pretrain_psi = "identity"
  # "sum" over patches and pixels per image as in the paper, or "mean".
  c.loss.reduction = "sum"
  # lambda: weight of the self-regularisation term. Not given by the paper. With
  # summed losses the adversarial term of a 35x55 image starts near 126*log 2 = 87
  # and the L1 term is a sum over 1925 pixels; 0.5 keeps refined pixels within a
  # few grey levels of their input where the adversarial gradient is weak.
  c.loss.self_regularization_weight = 0.5
  # Refined pixels at or above this value are not self-regularised (None: off): a
  # depth sensor's "no measurement" (1.0 in the hand images) carries no label, so the
  # refiner may drop pixels to it for free, as the target's sensor does at grazing
  # angles (losses.free_missing). Adversarial phase only.
  c.loss.self_regularization_free_above = ml_collections.config_dict.placeholder(float)
  # Task consistency (issue 11; off at 0): the refiner is also penalised by the squared
  # change of the frozen synthetic-trained task network's predictions (config.drift),
  # in drift units squared (degrees^2 for gaze, KL nats for a classifier).
  c.loss.task_consistency = "task_consistency_loss"
  c.loss.task_consistency_weight = 0.0

  # Optimiser (optax), shared by refiner and discriminator; optimizer.refiner_learning_rate
  # and optimizer.discriminator_learning_rate (None: learning_rate) separate them (TTUR).
  c.optimizer = optimizer_config(learning_rate=1e-4, b1=0.5)  # b1 0.5 as is usual for GANs

  # Weight averaging of the refiner (Karras et al., ICLR 2018; Yazici et al., ICLR 2019;
  # not in the paper): refiner_ema.decay > 0 keeps an exponential moving average of R's
  # parameters, updated after every refiner update with decay min(decay, (1 + step) /
  # (10 + step)) (a warm-up; step = the global step), and every use of the trained
  # refiner (probes, sample grids, refine, export) takes the average. 0 = off; 0.999 is
  # typical.
  c.refiner_ema = ml_collections.ConfigDict()
  c.refiner_ema.decay = 0.0

  # Differentiable augmentation of D's inputs (DiffAugment, Zhao et al., NeurIPS 2020;
  # simgan_jax/augment.py): comma-separated transforms from translation, cutout,
  # brightness, contrast, applied to real and refined images in D's update and in R's
  # adversarial loss. "" = off.
  c.augment = ml_collections.ConfigDict()
  c.augment.policy = ""

  # Schedule (Algorithm 1): refiner pretraining, discriminator pretraining, then
  # adversarial iterations of kg refiner updates followed by kd discriminator updates.
  c.batch_size = 512
  c.refiner_pretrain_steps = 1000
  c.discriminator_pretrain_steps = 200
  c.num_iterations = 10000
  c.kg = 2
  c.kd = 1
  # Adaptive Kg (the article): start at kg, after each iteration raise it by one
  # while the discriminator wins (its accuracy on refined patches > kg_raise_above),
  # lower it by one when it loses (< kg_lower_below), within [kg_min, kg_max].
  c.adaptive_kg = False
  c.kg_min = 1
  c.kg_max = 50
  c.kg_raise_above = 0.9
  c.kg_lower_below = 0.6
  # "auto": unroll the Kg/Kd loops on CPU (XLA:CPU runs convolutions in loop bodies
  # ~35x slower) unless Kg is adaptive; lax.fori_loop elsewhere. Or "unroll" / "loop".
  c.unroll_updates = "auto"

  # History of refined images (SIMGAN.md "Training" 4): history_size images; each
  # discriminator batch is half fresh, half from the history. Must be a multiple
  # of batch_size // 2.
  c.history_size = 512 * 100
  c.use_history = True

  # Logging, samples and checkpoints (in steps of the global step counter, which
  # counts pretraining steps and adversarial iterations alike).
  c.log_every = 50
  c.sample_every = 1000
  c.num_sample_images = 16
  c.checkpoint_every = 1000
  # Also a checkpoint every this many minutes of wall time (0: off), at the end of
  # every phase and on SIGTERM/SIGINT, so a stopped run loses little.
  c.checkpoint_every_minutes = 10.0
  # Kept on disk: the newest max_checkpoints_to_keep, plus the keep_best_checkpoints
  # with the lowest score (selection_score if the probe gives one, else realism_kid).
  c.max_checkpoints_to_keep = 3
  c.keep_best_checkpoints = 3
  # Several processes: every sync_every_steps steps they agree (one tiny all-gather)
  # on stopping after a signal and on time-based checkpoints. One process: every step.
  c.sync_every_steps = 10

  # Realism score (simgan_jax/probe/realism.py), logged as `realism_kid` at
  # every checkpoint: the KID between num_images refined synthetic images (the
  # same synthetic images each time) and num_images images of the real pool, on
  # fixed random features. Lower is more realistic; no label is used, so it can
  # pick the checkpoint to keep (launch/reproduce.py does). 0 turns it off.
  c.realism = ml_collections.ConfigDict()
  c.realism.num_images = 1000
  c.realism.subset_size = 500  # KID is averaged over num_subsets subsets of this size
  c.realism.num_subsets = 10
  c.realism.seed = 0

  # Label drift (simgan_jax/probe/drift.py), logged as `label_drift` at every
  # checkpoint on the realism probe's images: a task network trained on the
  # synthetic labels (gaze estimator for a `gaze` label, classifier for integer
  # classes, regressor otherwise) at the start of the run, then how far its
  # predictions move from synthetic to refined (degrees / flip rate / label stds).
  c.drift = ml_collections.ConfigDict()
  c.drift.enabled = True
  c.drift.label = ""  # '' = gaze, else `label`, else the only numeric label
  c.drift.task = "auto"  # or gaze, classify, regress
  c.drift.train_steps = 300
  c.drift.batch_size = 64
  c.drift.learning_rate = 1e-3
  c.drift.conv_features = (8, 8, 16, 16, 32)  # gaze estimator widths (the first 3 otherwise)
  c.drift.hidden_features = 64
  c.drift.estimator_dir = ""  # a launch/train_gaze.py workdir to use instead of training one
  # Checkpoints drifting more are never selected (0: gaze 12 deg, flip rate 0.1, 0.5 label
  # std; probe/drift.py DEFAULT_MAX_DRIFT says why 12). Applied again at selection
  # time, so it can be changed for a finished run (reproduce.py --set simgan.drift.max_drift=).
  c.drift.max_drift = 0.0
  c.drift.seed = 0

  # Two-sample classifier test (probe/two_sample.py), `two_sample_accuracy` at every
  # checkpoint: a fresh small classifier trained on the probe's refined vs real images
  # less num_test of each, tested on those; 0.5 = indistinguishable.
  c.two_sample = ml_collections.ConfigDict()
  c.two_sample.enabled = True
  c.two_sample.num_test = 400
  c.two_sample.steps = 300
  c.two_sample.batch_size = 64
  c.two_sample.features = (16, 32, 32)
  c.two_sample.seed = 0

  # Checkpoint selection (probe/selection.py): `selection_score` is this metric
  # (lower is better), +inf when collapsed (refined per-image std or spread across
  # images below min_std_ratio x the synthetic input's) or over config.drift.max_drift.
  c.selection = ml_collections.ConfigDict()
  c.selection.metric = "realism_kid"  # or label_drift, two_sample_accuracy
  # With a metric other than realism_kid: only checkpoints whose realism_kid is at most
  # this factor times the run's lowest compete (0: no such bound).
  c.selection.realism_ratio = 2.0
  c.selection.min_std_ratio = 0.1
  # Checkpoints whose realism_kid is above (1 - min_kid_gain) x the unrefined images'
  # (refiners that have barely started, or made images less real) compete only when every
  # candidate is so (0: off). On the eye validation split the two-sample probe preferred
  # such a refiner (KID 9.6, unrefined 10.5; probe 74%) to every later one (probe 78.5%
  # and up) on 2 of 3 seeds of the grid-phase run (docs/ablation_val_grid_phase8.md).
  # Where selection ranks by KID (hands, folders, the full-size default) it cannot change
  # the pick; of the committed eye reports (ranked by the probe) it changes only those two.
  c.selection.min_kid_gain = 0.25
  # A checkpoint whose realism_kid is above the unrefined images' (refining made them
  # less real) is never selected; when no other candidate qualifies, the last
  # pretraining checkpoint (R about the identity) is. On the hand validation split a
  # score-function drop-out head erased most of each hand on SimGAN seed 1 by step 400
  # (KID 63.7 against the unrefined 20.7, every later checkpoint collapsed) and that
  # pick's estimators erred by 52 px against synthetic's 32
  # (docs/ablation_val_hand_sfdrop_free.md).
  c.selection.refuse_kid_above_unrefined = True
  # Only checkpoints at or after this global step compete (0: every adversarial one), for a
  # refiner still converging where the per-checkpoint probe cannot see it: the camera-only
  # eye refiner's final two-sample accuracy fell from 93.5% (step 2,100, the probe's pick)
  # to 81.4% (step 6,300) while the :cpu-sized probe scored the later ones worse.
  c.selection.min_step = 0

  if variant:
    names = variant.split(",")
    for name in names:
      if name not in _VARIANTS:
        raise ValueError(f"--config variant {name!r} unknown; known: {', '.join(sorted(_VARIANTS))}")
    if "camera" in names and set(names[names.index("camera") + 1:]) & {"cpu", "smoke"}:
      raise ValueError(f"--config variant {variant!r}: camera must come after cpu and smoke "
                       "(e.g. cpu,camera): they set the schedule that camera lengthens")
    for name in names:
      _VARIANTS[name](c)
  return c


def optimizer_config(name: str = "adam", learning_rate: float = 1e-4, b1: float = 0.9,
                     **overrides) -> ml_collections.ConfigDict:
  """Fields read by ``training.make_optimizer`` (optax), shared by every config."""
  o = ml_collections.ConfigDict()
  o.name = name  # "adam" or "sgd"
  o.learning_rate = learning_rate
  o.momentum = 0.0  # SGD only
  o.b1 = b1  # Adam only
  o.b2 = 0.999
  # Piecewise-constant schedule: lr is multiplied by lr_decay_factor at each step
  # in lr_decay_steps (the NYU appendix lowers 2e-4 to 5e-5 after 600k steps).
  o.lr_decay_steps = ()
  o.lr_decay_factor = 1.0
  # SimGAN only: separate learning rates (TTUR, Heusel et al., NeurIPS 2017); None = learning_rate.
  o.refiner_learning_rate = ml_collections.config_dict.placeholder(float)
  o.discriminator_learning_rate = ml_collections.config_dict.placeholder(float)
  o.update(overrides)
  return o


def final_two_sample_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """``final_two_sample`` of the reproduction configs: a stronger two-sample test than
  the per-checkpoint probe (``c.two_sample``), run once on the selected refiner's images
  and on the raw synthetic ones (experiments/reproduce.py ``final_two_sample``). The
  probe at ``:cpu`` size scores visibly rippled refiners below raw synthetic images;
  this one scores them 97-100% (its docstring has the measurements)."""
  t = ml_collections.ConfigDict()
  t.enabled = True
  t.num_images = 1000  # refined and as many real-pool images
  t.num_test = 400  # of them held out per side
  t.features = (32, 64, 64)
  t.steps = 1000
  t.batch_size = 64
  t.learning_rate = 1e-3
  t.seed = 0
  if variant == "smoke":
    t.update(num_images=32, num_test=8, features=(4, 4, 4), steps=3, batch_size=8)
  return t


def data_config(name: str, **overrides) -> ml_collections.ConfigDict:
  """A data sub-config; every field a source may read is declared so the command
  line can set it (``--config.real_data.path=...``). Sources ignore what they don't use."""
  d = ml_collections.ConfigDict()
  d.name = name
  d.split = "train"  # dataset split to read
  d.path = ""  # npz source: the .npz file
  d.data_dir = ""  # TFDS sources: where prepared datasets live (default ~/tensorflow_datasets)
  d.builder_config = ""  # TFDS sources: builder config name, e.g. "real" / "synthetic"
  d.max_examples = 0  # 0: the whole split
  d.host_shard = False  # multi-host: each process reads only its devices' rows (sharded pool)
  d.shard_pool = "auto"  # pool split across devices: auto (above 256 MiB), true, false
  d.manual_dir = ""  # TFDS sources: folder the set was prepared from (checked, picks the match)
  d.cache_dir = ""  # built-in target domain: cache folder ('' = ~/.cache/simgan_jax)
  d.num_train = 50000  # built-in target domain: size of the unlabelled training pool
  d.update(overrides)
  return d


def _cpu(c):
  # Half-width refiner (32 features, 4 blocks): a quarter of the paper's FLOPs, so that
  # 1,300 steps took about 8 minutes on 2 CPU cores (README, Benchmarks); the 2,300 steps
  # below (with the checkpoint probes) about 18: 9.6 min for the first 1,300 and 8.1 for
  # the rest, the SimGAN stages of docs/ablation_val_nlp4w10_residual{,_long}.md.
  c.batch_size = 32
  c.refiner.features = 32
  # Mirror padding: the only refiner of the artefact ablations (target validation split,
  # 3 estimator seeds, one SimGAN run each; README "Does refinement help?") whose refined
  # data beat the raw images beyond the seed spread: 9.08 +- 0.31 deg against 9.67 +- 0.30
  # (zero padding 9.70 +- 0.44; mirror + noise input 9.30 +- 0.68). It trades the border
  # frame and corner marks for straight lines near the border (a partial frame in some eyes); ripples remain
  # (docs/ablation_reflect.md). On the test split (an early results_eyesim.md, another
  # SimGAN run; docs/history.md) it did not beat the raw images beyond the spread
  # (9.48 +- 0.13 vs 9.78 +- 0.43).
  c.refiner.padding = "REFLECT"
  # Self-regularisation on 4x4 block means (losses.low_pass_4): the target's grain,
  # blur and compression are zero-mean detail that identity L1 charges for. On the
  # target validation split (3 estimator seeds, one SimGAN run; docs/ablation_lp4.md)
  # refined data reached 8.83 +- 0.22 deg against 9.75 +- 0.43 for raw images (26% of
  # the gap to target-trained estimators), where identity L1 with mirror padding had
  # closed 17%. Pretraining stays on identity L1 (loss.pretrain_psi).
  # Then (issue 22) normalized_low_pass_4 at weight 1.0 (below): 4x4 block means of
  # each image at zero mean and unit std, so brightness and contrast are free too.
  # Target validation split, 3 SimGAN seeds x 2 estimator seeds: 7.77 +- 0.16 deg,
  # 81% of the perfect refiner's gain, against 8.36 +- 0.32 (59%) for low_pass_4 at
  # 0.5 (docs/ablation_val_normalized_low_pass_4_w10.md; weights 0.12, 0.25, 0.5 gave
  # 60, 70, 74%). Its refined eyes carry regular diagonal streaks. The hand and folder
  # configs keep low_pass_4 at 0.5, the setting their reports were measured with.
  c.loss.psi = "normalized_low_pass_4"
  # One noise input channel: with block-mean self-regularisation the refiner can then
  # draw the target's grain instead of deterministic ripples. Validation split, one
  # SimGAN run: 8.93 +- 0.22 deg (no noise input: 8.83 +- 0.22, within the spread),
  # and the only grid of all ablations without ripples or a frame
  # (docs/ablation_lp4_noise.md).
  c.refiner.noise_channels = 1
  # Select the checkpoint whose refined images a fresh two-sample classifier tells
  # from real ones least often, among all adversarial checkpoints (no KID window).
  # Of the label-free rules compared over 3 SimGAN seeds on the target validation
  # split (docs/selection_eyesim.md, launch/compare_selection.py), it lost least to the
  # best checkpoint: regret 0.08 +- 0.04 deg against 0.52 +- 0.34 for the least label
  # drift within 2x the lowest KID (the previous default, which picked checkpoints that
  # were worse than not refining on 2 of 3 runs). The label-drift bound still refuses
  # checkpoints that drift over config.drift.max_drift.
  c.selection.metric = "two_sample_accuracy"
  c.selection.realism_ratio = 0.0
  # The refiner outputs clip(input + change, -1, 1) with the change's last layer
  # zero-initialised (refiner.output_activation="residual"; not in the paper): it is the
  # identity from step 0 and draws no one-angle streaks. It stays near the identity
  # for about 800 adversarial steps, so the schedule is 2,000 iterations (was 1,000).
  # Target validation split, 3 SimGAN seeds x 2 estimator seeds: 7.66 +- 0.13 deg, 86%
  # of the perfect refiner's gain (docs/ablation_val_nlp4w10_residual_long.md), against
  # 7.75 +- 0.19 (83%) with 1,000 iterations (docs/ablation_val_nlp4w10_residual.md)
  # and 7.77 +- 0.16 (81%) for the tanh output with 1,000 (whose refined eyes carry
  # regular diagonal streaks: shared coherence 0.13-0.40 against the target's 0.05).
  c.refiner.output_activation = "residual"
  c.refiner_pretrain_steps = 200
  c.discriminator_pretrain_steps = 100
  c.num_iterations = 2000
  c.history_size = 16 * 200
  c.optimizer.learning_rate = 2e-4
  c.loss.self_regularization_weight = 1.0  # with normalized_low_pass_4 (above)
  c.log_every = 25
  c.sample_every = 250
  # Every checkpoint is scored and is a selection candidate: every 100 steps, the same
  # candidates launch/reproduce.py scores (configs/reproduce.py derives from this), so
  # train.py, refine.py --step=best and reproduce.py pick the same "best" of one run.
  c.checkpoint_every = 100
  # Checkpoint probes sized for 2 CPU cores (costs measured in issue 11's report).
  c.drift.batch_size = 32
  c.drift.train_steps = 200
  c.two_sample.features = (8, 16, 16)
  c.two_sample.batch_size = 32
  c.two_sample.steps = 150


def _camera(c):
  # A camera-only refiner (the eye benchmark's: configs/reproduce.py eyesim_gaze:cpu is
  # default.py:cpu,camera). No trunk: R is the identity output through the three learned
  # camera stages, light (with a mean exposure, no mean tone), sensor (blur and noise) and
  # JPEG, 11 learned numbers in all (models.LightStage, SensorStage, JpegQuantizer; the
  # fields above say what each does). The adversarial loss fits them to the target camera;
  # the simulator's pixels are otherwise kept, so self-regularisation is 0 and refiner
  # pretraining does nothing. Its stages go on converging late, where the :cpu-sized
  # per-checkpoint probe cannot see it, hence 6,000 iterations of which only the
  # checkpoints at global step 5,000 or later compete (selection.min_step). Eyes, target
  # validation split, 3 SimGAN x 2 estimator seeds (with cpu): 7.62 +- 0.09 deg (88% of
  # the perfect refiner's gain, beyond the spread) and a final two-sample accuracy of
  # 77.5-77.8% (perfect refiner 63.2%) (docs/ablation_val_exposure.md). With the mean tone
  # (gamma, contrast, brightness) instead of the exposure, as until 7 Dec 2026: 7.82 +-
  # 0.18 deg (79%, within the spread) at 70.2-71.5% (docs/ablation_val_camera_only.md): the
  # discriminator darkens through a mean gamma of 2.0, which crushes the dark iris into
  # the pupil; with both, it takes the darkening back to the gamma (84% and 70.1% on one
  # SimGAN seed, docs/ablation_val_exposure_tone_seed0.md). The residual trunk of cpu
  # alone: 7.66 +- 0.13 (86%) at 94-100%. For targets that differ from the simulator by
  # their camera (light, blur, noise, compression), not by content (measured on grey
  # eyes only). Must come after cpu or smoke.
  c.refiner.output_activation = "identity"
  c.refiner.noise_channels = 0
  c.refiner.light_stage = True
  c.refiner.light_stage_exposure = True
  c.refiner.sensor_stage = True
  c.refiner.jpeg_quantizer = True
  c.num_iterations = 6000
  c.selection.min_step = 5000


def _smoke(c):
  c.batch_size = 16
  c.refiner_pretrain_steps = 3
  c.discriminator_pretrain_steps = 2
  c.num_iterations = 4
  c.history_size = 8 * 4
  c.refiner.features = 8
  c.refiner.num_blocks = 1
  c.discriminator.width_multiplier = 0.25
  c.log_every = 2
  c.sample_every = 5
  c.num_sample_images = 4
  c.checkpoint_every = 5
  c.real_data.num_train = 256
  c.realism.num_images = 0
  # Sizes for when a test turns the probe on (realism.num_images > 32). A 20-step task
  # network and a 3-step refiner give meaningless drifts: no bound, so selection works;
  # likewise such a refiner's KIDs, often above the unrefined images': no KID guard.
  c.drift.train_steps = 20
  c.drift.max_drift = float("inf")
  c.selection.refuse_kid_above_unrefined = False
  c.drift.batch_size = 16
  c.two_sample.num_test = 16
  c.two_sample.steps = 20
  c.two_sample.batch_size = 16


def _paper(c):
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e-3


def _article(c):
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 1e-4
  c.adaptive_kg = True
  c.kg = 1


_VARIANTS = {"cpu": _cpu, "smoke": _smoke, "paper": _paper, "article": _article, "camera": _camera}
