"""The static pieces of a SimGAN run, built once from the config: ``Setup``, by concern.

``Setup.nets`` (the refiner, the local discriminator, their optimisers, the weight
average and the frozen task network of the task-consistency loss), ``Setup.loss``
(the loss callables and weights of ``losses.py``), ``Setup.schedule`` (Kg refiner
and Kd discriminator updates per iteration, fixed or adaptive), ``Setup.data`` (the
synthetic and real sources, image shape, global batch, devices, history size and
the discriminator's input augmentation) and the run's ``seed``. The compiled steps
of ``training.py`` read them; ``make_setup(config, synthetic, real, num_devices)``
builds one (``training.make_setup`` is the same function).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import optax

from simgan_jax import augment as augment_lib
from simgan_jax import losses
from simgan_jax import models
from simgan_jax.data import sources as sources_lib


@dataclasses.dataclass(frozen=True)
class Networks:
  """The two networks, their optimisers, and what the refiner's training sees of other nets."""

  refiner: models.Refiner
  discriminator: models.LocalDiscriminator
  refiner_tx: optax.GradientTransformation
  discriminator_tx: optax.GradientTransformation
  refiner_ema_decay: float = 0.0  # moving average of the refiner's weights (stabilisers.py); 0 = off
  # A frozen probe.drift.TaskNetwork for the task-consistency loss, set by train.py
  # (Setup.with_task_network) when that loss's weight is > 0.
  task_network: Any = None


@dataclasses.dataclass(frozen=True)
class Losses:
  """The loss callables and weights (losses.py)."""

  adversarial_loss: Callable
  discriminator_loss: Callable
  self_regularization_loss: Callable
  psi: Callable
  pretrain_psi: Callable  # psi during refiner pretraining
  reduction: str
  self_regularization_weight: float
  task_consistency_loss: Callable | None = None  # losses.task_consistency_loss
  task_consistency_weight: float = 0.0
  r1_gamma: float = 0.0  # R1 gradient penalty on real images (stabilisers.py); 0 = off
  # Refined pixels at or above this value skip self-regularisation (losses.free_missing); None = off.
  free_above: float | None = None


@dataclasses.dataclass(frozen=True)
class KgSchedule:
  """Kg refiner and Kd discriminator updates per iteration, fixed or adaptive."""

  kg: int
  kd: int
  adaptive_kg: bool
  kg_min: int
  kg_max: int
  kg_raise_above: float
  kg_lower_below: float
  # Python-unrolled Kg/Kd loops instead of lax.fori_loop (see _repeat).
  unroll_updates: bool = False


@dataclasses.dataclass(frozen=True)
class Data:
  """Where images come from and how many: the sources, shapes, batch and history sizes."""

  synthetic: sources_lib.ImageSource
  real: sources_lib.ImageSource
  image_shape: tuple[int, int, int]
  batch_size: int  # global
  num_devices: int
  use_history: bool
  history_size: int
  # Differentiable augmentation of the discriminator's inputs (augment.py); () = off.
  augment_policy: tuple[str, ...] = ()

  @property
  def local_batch(self) -> int:
    return self.batch_size // self.num_devices

  @property
  def local_half(self) -> int:
    return self.local_batch // 2


@dataclasses.dataclass(frozen=True)
class Setup:
  """Static pieces of a run, by concern: ``nets``, ``loss``, ``schedule``, ``data``, ``seed``."""

  nets: Networks
  loss: Losses
  schedule: KgSchedule
  data: Data
  seed: int

  def with_task_network(self, task_network) -> "Setup":
    return dataclasses.replace(self, nets=dataclasses.replace(self.nets, task_network=task_network))


def make_optimizer(config, network: str = "") -> optax.GradientTransformation:
  """The optimiser; ``network`` ("refiner", "discriminator") reads its own learning rate
  ``config.optimizer.NETWORK_learning_rate`` where set (TTUR), else the shared one."""
  o = config.optimizer
  boundaries = {int(s): float(o.lr_decay_factor) for s in o.lr_decay_steps}
  own = o.get(f"{network}_learning_rate") if network else None
  base = o.learning_rate if own is None else own
  lr = optax.piecewise_constant_schedule(base, boundaries) if boundaries else base
  if o.name == "adam":
    return optax.adam(lr, b1=o.b1, b2=o.b2)
  if o.name == "sgd":
    return optax.sgd(lr, momentum=o.momentum or None)
  raise ValueError(f"config.optimizer.name: unknown optimiser {o.name!r}; known: adam, sgd")


def learning_rate_text(config) -> str:
  """``"adam lr 0.0002"``, or each network's own rate where one is set (TTUR):
  ``"adam lr 5e-05 (refiner) / 0.0002 (discriminator)"`` (reports, model cards)."""
  o = config.optimizer
  lr_r, lr_d = o.get("refiner_learning_rate"), o.get("discriminator_learning_rate")
  if lr_r is None and lr_d is None:
    return f"{o.name} lr {o.learning_rate}"
  return (f"{o.name} lr {o.learning_rate if lr_r is None else lr_r} (refiner) / "
          f"{o.learning_rate if lr_d is None else lr_d} (discriminator)")


def self_regularization_text(config) -> str:
  """``"lambda 1.0, psi `low_pass_4`"``, or that there is none: with the identity output
  and no drop-out head the term compares the input with itself (training._refiner_update
  takes it before the camera stages), so lambda and psi do nothing (reports, model cards)."""
  if config.refiner.output_activation == "identity" and config.refiner.get("dropout_value") is None:
    return "no self-regularisation (its term is 0 without a trunk)"
  return f"lambda {config.loss.self_regularization_weight}, psi `{config.loss.psi}`"


def make_setup(config, synthetic, real, num_devices: int) -> Setup:
  return Setup(
      nets=Networks(
          refiner=models.make_refiner(config),
          discriminator=models.make_discriminator(config),
          refiner_tx=make_optimizer(config, "refiner"),
          discriminator_tx=make_optimizer(config, "discriminator"),
          refiner_ema_decay=config.get("refiner_ema", {}).get("decay", 0.0)),
      loss=Losses(
          adversarial_loss=losses.get_loss(config.loss.adversarial, "loss.adversarial"),
          discriminator_loss=losses.get_loss(config.loss.discriminator, "loss.discriminator"),
          self_regularization_loss=losses.get_loss(config.loss.self_regularization, "loss.self_regularization"),
          psi=losses.get_psi(config.loss.psi),
          pretrain_psi=losses.get_psi(config.loss.get("pretrain_psi", "identity"), "loss.pretrain_psi"),
          reduction=config.loss.reduction,
          self_regularization_weight=config.loss.self_regularization_weight,
          task_consistency_loss=losses.get_loss(config.loss.get("task_consistency", "task_consistency_loss"),
                                                "loss.task_consistency"),
          task_consistency_weight=config.loss.get("task_consistency_weight", 0.0),
          r1_gamma=config.discriminator.get("r1_gamma", 0.0),
          free_above=config.loss.get("self_regularization_free_above")),
      schedule=KgSchedule(
          kg=config.kg,
          kd=config.kd,
          adaptive_kg=config.adaptive_kg,
          kg_min=config.kg_min,
          kg_max=config.kg_max,
          kg_raise_above=config.kg_raise_above,
          kg_lower_below=config.kg_lower_below,
          unroll_updates=_unroll_updates(config)),
      data=Data(
          synthetic=synthetic,
          real=real,
          image_shape=(config.image_height, config.image_width, config.channels),
          batch_size=config.batch_size,
          num_devices=num_devices,
          use_history=config.use_history,
          history_size=config.history_size,
          augment_policy=augment_lib.parse_policy(config.get("augment", {}).get("policy", ""))),
      seed=config.seed,
  )


def _unroll_updates(config) -> bool:
  # XLA:CPU runs convolutions inside loop bodies (while/scan/cond) about 35x slower
  # than in straight-line code (measured: 106 s vs 3.2 s for two refiner updates of
  # batch 32), so on CPU the Kg and Kd updates are unrolled; that needs a fixed Kg.
  # Accelerators keep lax.fori_loop, which also allows the adaptive Kg.
  mode = config.get("unroll_updates", "auto")
  if mode == "auto":
    return jax.default_backend() == "cpu" and not config.adaptive_kg
  if mode == "unroll" and config.adaptive_kg:
    raise ValueError("config.unroll_updates: 'unroll' needs a fixed Kg; adaptive_kg changes it")
  if mode in ("unroll", "loop"):
    return mode == "unroll"
  raise ValueError(f"config.unroll_updates: {mode!r} is not 'auto', 'unroll' or 'loop'")
