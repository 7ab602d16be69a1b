"""Train state and the compiled SimGAN steps (Algorithm 1), data-parallel.

Everything that changes during training is one ``TrainState`` pytree. Each step is
``state, metrics = step_fn(state, data)``: a pure function, wrapped in
``jax.shard_map`` over a one-axis ``Mesh`` (axis ``"batch"``) and ``jax.jit`` with
the state donated. Parameters and optimiser states are replicated; the history
buffer is sharded along its column (batch) axis; gradients are averaged across
devices by ``parallel.mean_grad`` (exact on any mesh) and metrics with ``lax.pmean``.

Randomness: one root per purpose, ``fold_in(root, PURPOSE)`` (initialisation,
steps, sample grids, the realism probe), so no two purposes can share a key;
``step_key(root, step) = fold_in(fold_in(root, STEPS), step)``; a named stream is
``fold_in(step_key, STREAM)``; sub-step ``i`` of Kg/Kd folds in ``i``; and each
example folds in its *global* index in the batch (``axis_index * local + i``).
Hosts and devices therefore draw disjoint keys without any per-device state, and
a batch is identical whether it is computed on 1 device or on 8.

Kg on resume, the same rule on every backend: with a fixed Kg the step always runs
``config.kg`` refiner updates (a changed ``--config.kg`` is obeyed; ``state.kg``
just records it); with the adaptive Kg the state's ``kg`` is the run's current
value and ``config.kg`` is only where a fresh run starts.

History: whatever Kd, one iteration replaces ``batch_size // 2`` history images
(the paper's "after each training iteration, randomly replace b/2 samples"): only
the last of the Kd discriminator updates pushes its fresh half.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

from simgan_jax import augment as augment_lib
from simgan_jax import history as history_lib
from simgan_jax import losses
from simgan_jax import models
from simgan_jax import parallel
from simgan_jax import stabilisers
from simgan_jax import run_setup
from simgan_jax.run_setup import Setup

AXIS = parallel.AXIS
# Purposes, folded into the root key first: each has its own root.
PURPOSE_INIT, PURPOSE_STEPS, PURPOSE_SAMPLES, PURPOSE_REALISM = 0, 1, 2, 3
PURPOSE_DRIFT = 4  # the label-drift task network (probe/drift.py): init, training, survey
# Under PURPOSE_INIT: which network.
REFINER, DISCRIMINATOR = 0, 1
# Named random streams, folded into the step key.
_REFINER_STEP, _DISCRIMINATOR_STEP = 1, 2
_SYNTHETIC, _SYNTHETIC_EXTRA, _REAL, _HISTORY_SAMPLE, _HISTORY_PUSH = 1, 2, 3, 4, 5
_AUGMENT_REAL, _AUGMENT_REFINED, _AUGMENT_PAST = 6, 7, 8  # augment.py's per-image keys


# Built once per run from the config (run_setup.py); kept here under their old names.
make_setup = run_setup.make_setup
make_optimizer = run_setup.make_optimizer


def init_key(root: jax.Array, network: int) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(root, PURPOSE_INIT), network)


def step_key(root: jax.Array, step) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(root, PURPOSE_STEPS), step)


def samples_key(root: jax.Array) -> jax.Array:
  return jax.random.fold_in(root, PURPOSE_SAMPLES)
# Folded into a synthetic example's own key for the refiner's noise input (if any).
NOISE_STREAM = 11


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32: global step, counting pretraining steps and iterations
  key: jax.Array  # uint32[2]: root key from config.seed
  kg: jax.Array  # int32: refiner updates per iteration (changes with adaptive Kg)
  refiner_params: Any
  refiner_opt_state: Any
  discriminator_params: Any
  discriminator_batch_stats: Any  # {} unless config.discriminator.batch_norm
  discriminator_opt_state: Any
  history: history_lib.History
  refiner_ema_params: Any = flax.struct.field(default_factory=dict)  # {} unless config.refiner_ema.decay


# ----------------------------------------------------------------------------- state


def init_state(s: Setup) -> TrainState:
  """A fresh state (traceable; see ``create_state`` for the sharded version)."""
  key = jax.random.PRNGKey(s.seed)
  images = jnp.zeros((1, *s.data.image_shape), jnp.float32)
  noise = models.refiner_noise(s.nets.refiner, key[None], s.data.image_shape[:2])
  refiner_params = s.nets.refiner.init(init_key(key, REFINER), images, noise)["params"]
  d_vars = s.nets.discriminator.init(init_key(key, DISCRIMINATOR), images, train=False)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      key=key,
      kg=jnp.asarray(s.schedule.kg, jnp.int32),
      refiner_params=refiner_params,
      refiner_opt_state=s.nets.refiner_tx.init(refiner_params),
      discriminator_params=d_vars["params"],
      discriminator_batch_stats=d_vars.get("batch_stats", {}),
      discriminator_opt_state=s.nets.discriminator_tx.init(d_vars["params"]),
      history=history_lib.init(s.data.history_size, s.data.batch_size // 2, s.data.image_shape),
      refiner_ema_params=jax.tree.map(jnp.copy, refiner_params) if s.nets.refiner_ema_decay else {},
  )


def inference_refiner_params(state: TrainState):
  """The refiner to use once trained (probes, sample grids, refining, export): the
  weight average when ``config.refiner_ema.decay`` is on, else the trained weights."""
  return state.refiner_ema_params if state.refiner_ema_params else state.refiner_params


def state_specs(state: TrainState) -> TrainState:
  """PartitionSpecs: everything replicated except the history's column axis."""
  specs = jax.tree.map(lambda _: P(), state)
  return specs.replace(history=history_lib.History(images=P(None, AXIS), filled_rows=P()))


def create_state(s: Setup, mesh: Mesh) -> TrainState:
  specs = state_specs(jax.eval_shape(functools.partial(init_state, s)))
  return jax.jit(functools.partial(init_state, s), out_shardings=parallel.shardings(mesh, specs))()


# ----------------------------------------------------------------------------- steps


def _apply_discriminator(s: Setup, state: TrainState, params, images, train: bool):
  """Logits; with batch norm, also the new statistics when ``train``."""
  variables = {"params": params}
  if state.discriminator_batch_stats:
    variables["batch_stats"] = state.discriminator_batch_stats
    if train:
      logits, new = s.nets.discriminator.apply(variables, images, train=True, mutable=["batch_stats"])
      return logits, new["batch_stats"]
  return s.nets.discriminator.apply(variables, images, train=train), state.discriminator_batch_stats


def _refine(s: Setup, params, images, keys):
  """R(images); ``keys`` are the examples' own keys (they seed R's noise input, if any)."""
  return _refine_both(s, params, images, keys)[0]


def _refine_both(s: Setup, params, images, keys):
  """(R(images), what the self-regularisation compares with the input, what R sowed):
  the second is R's output, or with camera stages (models.has_camera_stages) its trunk's
  output before them; the third a dict, empty unless models.sows_intermediates, with
  "jpeg_log_density" [B] (a JPEG stage), and "before_drop" and "drop_log_density"
  [B, H, W] (a drop-out head that learns by the score function)."""
  noise_keys = jax.vmap(lambda k: jax.random.fold_in(k, NOISE_STREAM))(keys)
  noise = models.refiner_noise(s.nets.refiner, noise_keys, images.shape[1:3])
  if not models.sows_intermediates(s.nets.refiner):
    refined = s.nets.refiner.apply({"params": params}, images, noise)
    return refined, refined, {}
  refined, sown = s.nets.refiner.apply({"params": params}, images, noise, mutable=["intermediates"])
  sown = sown["intermediates"]
  out = {name: value[0] for name, value in sown.items() if name in ("before_drop", "drop_log_density")}
  if "jpeg_quantizer" in sown:
    out["jpeg_log_density"] = sown["jpeg_quantizer"]["jpeg_log_density"][0]
  return refined, sown["before_camera"][0] if "before_camera" in sown else refined, out


def _per_patch(loss_fn, logits_BHW2, reduction):
  """[B, h, w]: ``loss_fn`` (an adversarial loss) of each patch alone."""
  b, h, w, k = logits_BHW2.shape
  flat = logits_BHW2.reshape(b * h * w, 1, 1, 1, k)
  return jax.vmap(lambda l: loss_fn(l, reduction=reduction))(flat).reshape(b, h, w)


def _drop_head_surrogate(s: Setup, state: TrainState, logits, sown, synthetic, regularised, augment_key):
  """The drop-out head's score-function term (models.Refiner.dropout_gradient): its draws
  are credited with what they changed in the adversarial loss of the patches around each
  pixel (the baseline: the same images without drops, through the same augmentation
  and D) and in the self-regularisation of its D-patch-sized cell (the baseline: the
  same images without drops, free_above applied alike), weighted as in the loss."""
  before_drop = jax.lax.stop_gradient(sown["before_drop"])
  unseen = augment_lib.augment_examples(before_drop, augment_key, s.data.augment_policy)
  baseline, _ = _apply_discriminator(s, state, state.discriminator_params, unseen, train=False)
  log_density = sown["drop_log_density"]
  term = losses.local_score_function_surrogate(
      _per_patch(s.loss.adversarial_loss, logits, s.loss.reduction),
      _per_patch(s.loss.adversarial_loss, baseline, s.loss.reduction),
      log_density, s.loss.reduction, radius=models.patch_radius(s.nets.discriminator))
  if not s.loss.self_regularization_weight or models.has_camera_stages(s.nets.refiner):
    return term  # with camera stages the self-regularisation reads R before them and its drops
  undropped = losses.free_missing(before_drop, synthetic, s.loss.free_above)
  cells = logits.shape[1:3]
  if s.loss.self_regularization_loss is losses.self_regularization_loss:
    reg = functools.partial(losses.self_regularization_cells, psi=s.loss.psi, reduction=s.loss.reduction,
                            cells_hw=cells)
  else:  # a user's own self-regularisation: credited per image
    reg = lambda r, x: jax.vmap(lambda a, b: s.loss.self_regularization_loss(  # noqa: E731
        a[None], b[None], psi=s.loss.psi, reduction=s.loss.reduction))(r, x)[:, None, None]
  with_drops = reg(jax.lax.stop_gradient(regularised), synthetic)
  return term + s.loss.self_regularization_weight * losses.local_score_function_surrogate(
      with_drops, reg(undropped, synthetic), log_density, "sum")


def _uses_task_consistency(s: Setup) -> bool:
  if s.loss.task_consistency_weight and s.nets.task_network is None:
    raise ValueError("config.loss.task_consistency_weight: > 0 but no task network was set up")
  return bool(s.loss.task_consistency_weight)


def _refiner_update(s: Setup, state: TrainState, data, key, adversarial: bool):
  keys = parallel.example_keys(jax.random.fold_in(key, _SYNTHETIC), s.data.local_batch)
  synthetic = s.data.synthetic.sample(data["synthetic"], keys)["image"]

  def loss_fn(params):
    refined, before_camera, sown = _refine_both(s, params, synthetic, keys)
    # Dropped ("no measurement") pixels are free in the adversarial phase only: pretraining
    # makes R the identity.
    regularised = losses.free_missing(before_camera, synthetic, s.loss.free_above) if adversarial else before_camera
    reg = s.loss.self_regularization_loss(regularised, synthetic,
                                          psi=s.loss.psi if adversarial else s.loss.pretrain_psi,
                                          reduction=s.loss.reduction)
    if not adversarial:
      return reg, {"self_regularization_loss": reg}
    # D's running statistics (if any) are used, not updated, in the refiner's loss.
    augment_key = jax.random.fold_in(key, _AUGMENT_REFINED)
    seen = augment_lib.augment_examples(refined, augment_key, s.data.augment_policy)
    logits, _ = _apply_discriminator(s, state, state.discriminator_params, seen, train=False)
    adv = s.loss.adversarial_loss(logits, reduction=s.loss.reduction)
    loss = adv + s.loss.self_regularization_weight * reg
    if "jpeg_log_density" in sown:  # the JPEG stage's scale learns by the score function
      per_image = jax.vmap(lambda l: s.loss.adversarial_loss(l[None], reduction=s.loss.reduction))(logits)
      loss = loss + losses.score_function_surrogate(per_image, sown["jpeg_log_density"])
    if "drop_log_density" in sown:  # so does the drop-out head (models.Refiner.dropout_gradient)
      loss = loss + _drop_head_surrogate(s, state, logits, sown, synthetic, regularised, augment_key)
    metrics = {"refiner_adversarial_loss": adv, "self_regularization_loss": reg}
    if _uses_task_consistency(s):
      task = s.loss.task_consistency_loss(refined, synthetic, s.nets.task_network, reduction=s.loss.reduction)
      loss, metrics["task_consistency_loss"] = loss + s.loss.task_consistency_weight * task, task
    return loss, metrics

  grads, metrics = parallel.mean_grad(loss_fn, state.refiner_params, has_aux=True)
  updates, opt_state = s.nets.refiner_tx.update(grads, state.refiner_opt_state, state.refiner_params)
  params = optax.apply_updates(state.refiner_params, updates)
  ema = state.refiner_ema_params
  if ema:
    ema = stabilisers.ema_update(ema, params, s.nets.refiner_ema_decay, state.step)
  state = state.replace(refiner_params=params, refiner_opt_state=opt_state, refiner_ema_params=ema)
  return state, lax.pmean(metrics, AXIS)


def _discriminator_update(s: Setup, state: TrainState, data, key, push: bool = True):
  """One discriminator update; ``push``: write the fresh half into the history."""
  h = s.data.local_half
  real_keys = parallel.example_keys(jax.random.fold_in(key, _REAL), s.data.local_batch)
  real = s.data.real.sample(data["real"], real_keys)["image"]

  def refined(stream):
    keys = parallel.example_keys(jax.random.fold_in(key, stream), h)
    synthetic = s.data.synthetic.sample(data["synthetic"], keys)
    return lax.stop_gradient(_refine(s, state.refiner_params, synthetic["image"], keys))

  current = refined(_SYNTHETIC)
  history = state.history
  if s.data.use_history:
    # Half fresh, half from the history (the fresh half itself until it holds any).
    past = history_lib.sample(history, parallel.example_keys(jax.random.fold_in(key, _HISTORY_SAMPLE), h), current)
    if push:
      history = history_lib.push(history, current,
                                 parallel.example_keys(jax.random.fold_in(key, _HISTORY_PUSH), h))
  else:
    past = refined(_SYNTHETIC_EXTRA)
  # Each part on its own stream: keys follow the global index within the part, as sampling does.
  real, current, past = (augment_lib.augment_examples(x, jax.random.fold_in(key, stream), s.data.augment_policy)
                         for x, stream in ((real, _AUGMENT_REAL), (current, _AUGMENT_REFINED), (past, _AUGMENT_PAST)))
  fake = jnp.concatenate([current, past], axis=0)

  def loss_fn(params):
    # One pass over real and refined together, so batch norm sees the mixed batch.
    logits, batch_stats = _apply_discriminator(s, state, params, jnp.concatenate([real, fake]), train=True)
    real_logits, fake_logits = logits[:s.data.local_batch], logits[s.data.local_batch:]
    loss = s.loss.discriminator_loss(real_logits, fake_logits, reduction=s.loss.reduction)
    metrics = {
        "discriminator_loss": loss,
        "discriminator_accuracy_real": losses.patch_accuracy(real_logits, losses.REAL),
        "discriminator_accuracy_refined": losses.patch_accuracy(fake_logits, losses.REFINED),
    }
    if s.loss.r1_gamma:
      metrics["r1_penalty"] = stabilisers.discriminator_r1_penalty(
          s.nets.discriminator, params, state.discriminator_batch_stats, real, s.loss.r1_gamma)
      loss = loss + metrics["r1_penalty"]
    return loss, (batch_stats, metrics)

  grads, (batch_stats, metrics) = parallel.mean_grad(loss_fn, state.discriminator_params, has_aux=True)
  updates, opt_state = s.nets.discriminator_tx.update(grads, state.discriminator_opt_state,
                                                 state.discriminator_params)
  state = state.replace(
      discriminator_params=optax.apply_updates(state.discriminator_params, updates),
      discriminator_opt_state=opt_state,
      # Batch-norm statistics are already averaged over the axis inside BatchNorm.
      discriminator_batch_stats=batch_stats,
      history=history)
  return state, lax.pmean(metrics, AXIS)


def _step_key(state: TrainState, stream: int) -> jax.Array:
  return jax.random.fold_in(step_key(state.key, state.step), stream)


def refiner_pretrain_step(s: Setup, state: TrainState, data):
  """Algorithm 1 step 1: the refiner learns the self-regularisation loss only."""
  state, metrics = _refiner_update(s, state, data, _step_key(state, _REFINER_STEP), adversarial=False)
  return state.replace(step=state.step + 1), metrics


def discriminator_pretrain_step(s: Setup, state: TrainState, data):
  """Algorithm 1 step 2: the discriminator learns real vs. the pretrained refiner."""
  state, metrics = _discriminator_update(s, state, data, _step_key(state, _DISCRIMINATOR_STEP))
  return state.replace(step=state.step + 1), metrics


def _repeat(update, state, count, key, metric_names, unroll: bool):
  """Runs ``update(state, key_i)`` ``count`` times; returns the mean metrics."""
  if isinstance(count, int) and count == 0:
    return state, {name: jnp.zeros((), jnp.float32) for name in metric_names}
  if unroll:
    total = None
    for i in range(count):
      state, metrics = update(state, jax.random.fold_in(key, i))
      total = metrics if total is None else jax.tree.map(jnp.add, total, metrics)
    return state, jax.tree.map(lambda x: x / count, total)

  def body(i, carry):
    state, total = carry
    state, metrics = update(state, jax.random.fold_in(key, i))
    return state, jax.tree.map(jnp.add, total, metrics)

  zeros = {name: jnp.zeros((), jnp.float32) for name in metric_names}
  state, total = lax.fori_loop(0, count, body, (state, zeros))
  return state, jax.tree.map(lambda x: x / count, total)


def adversarial_step(s: Setup, state: TrainState, data):
  """One iteration of Algorithm 1: Kg refiner updates, then Kd discriminator updates."""
  # Fixed Kg: config.kg on every backend (static count); adaptive: the state's Kg.
  kg = state.kg if s.schedule.adaptive_kg else jnp.asarray(s.schedule.kg, jnp.int32)
  state, r_metrics = _repeat(
      lambda st, k: _refiner_update(s, st, data, k, adversarial=True), state,
      state.kg if s.schedule.adaptive_kg else s.schedule.kg, _step_key(state, _REFINER_STEP),
      ("refiner_adversarial_loss", "self_regularization_loss") +
      (("task_consistency_loss",) if _uses_task_consistency(s) else ()), s.schedule.unroll_updates)
  d_names = ("discriminator_loss", "discriminator_accuracy_real", "discriminator_accuracy_refined") + \
      (("r1_penalty",) if s.loss.r1_gamma else ())
  d_key = _step_key(state, _DISCRIMINATOR_STEP)
  # b/2 history images replaced per iteration whatever Kd: only the last update pushes.
  state, d_first = _repeat(lambda st, k: _discriminator_update(s, st, data, k, push=False), state,
                           s.schedule.kd - 1, d_key, d_names, s.schedule.unroll_updates)
  state, d_last = _discriminator_update(s, state, data, jax.random.fold_in(d_key, s.schedule.kd - 1), push=True)
  d_metrics = jax.tree.map(lambda a, b: (a * (s.schedule.kd - 1) + b) / s.schedule.kd, d_first, d_last)
  if s.schedule.adaptive_kg:
    # The article: fix Kd, raise Kg while the discriminator wins, lower it when it loses.
    accuracy = d_metrics["discriminator_accuracy_refined"]
    k = s.schedule
    change = (accuracy > k.kg_raise_above).astype(jnp.int32) - (accuracy < k.kg_lower_below).astype(jnp.int32)
    state = state.replace(kg=jnp.clip(kg + change, k.kg_min, k.kg_max))
  else:
    state = state.replace(kg=kg)
  metrics = {**r_metrics, **d_metrics, "kg": kg.astype(jnp.float32)}
  return state.replace(step=state.step + 1), metrics


PHASES = {
    "refiner_pretrain": refiner_pretrain_step,
    "discriminator_pretrain": discriminator_pretrain_step,
    "adversarial": adversarial_step,
}


def with_frozen_trunk(s: Setup) -> Setup:
  """``s`` with R's trunk skipped (models.Refiner.trunk_frozen): the same parameters and
  optimiser, so the trunk's gradients are zero and Adam leaves it exactly where it is."""
  return dataclasses.replace(s, nets=dataclasses.replace(s.nets, refiner=s.nets.refiner.clone(trunk_frozen=True)))


def compile_step(step_fn, s: Setup, mesh: Mesh, specs: TrainState, data_specs: Any = P()):
  """jit(shard_map(step)) with the state donated; data as ``data_specs`` (replicated
  by default; ``sources.place`` gives the specs of sharded pools)."""
  mapped = jax.shard_map(functools.partial(step_fn, s), mesh=mesh, in_specs=(specs, data_specs),
                         out_specs=(specs, P()))
  return jax.jit(mapped, donate_argnums=0)


def make_sample_fn(s: Setup, num_images: int):
  """(state, data) -> synthetic, refined and real images, the same examples each call."""

  def sample(state: TrainState, data):
    key = samples_key(state.key)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_images))
    synthetic = s.data.synthetic.sample(data["synthetic"], keys)["image"]
    real = s.data.real.sample(data["real"], jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))["image"]
    refined = _refine(s, inference_refiner_params(state), synthetic, keys)
    return {"synthetic": synthetic, "refined": refined, "real": real}

  return jax.jit(sample)


def refined_images_per_step(s: Setup, phase: str, kg: int) -> int:
  """Images the refiner processes in one step of ``phase`` (the honest throughput unit):
  a refiner update refines a batch; a discriminator update a fresh half (a whole
  batch without the history); an iteration does Kg and Kd of them."""
  discriminator = s.data.batch_size // 2 if s.data.use_history else s.data.batch_size
  return {"refiner_pretrain": s.data.batch_size, "discriminator_pretrain": discriminator,
          "adversarial": kg * s.data.batch_size + s.schedule.kd * discriminator}[phase]
