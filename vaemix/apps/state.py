"""Training state: the VAE built from the config, and the optimizers that train it."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from vaemix.apps.steps import use_jit
from vaemix.infra.config import Config, ModelConfig, PriorConfig
from vaemix.maths.keras import keras  # tf_keras (Keras 2)
from vaemix.maths.networks import build_decoder, build_encoder
from vaemix.maths.priors import build_prior
from vaemix.maths.vae import VAE


def build_vae(shape: tuple[int, ...], model: ModelConfig, prior: PriorConfig, seed: int = 0) -> VAE:
    """Networks and prior for examples of ``shape`` (``[H, W, C]`` or ``[F]``); weights seeded by ``seed``.
    ``model`` must be resolved (:func:`vaemix.apps.resolve.resolve`): no ``auto`` likelihood, widths set."""
    if model.likelihood == "auto" or model.hidden is None:
        raise ValueError("build_vae needs a resolved model config (see vaemix.apps.resolve.resolve)")
    keras.utils.set_random_seed(seed)  # Keras initialisers draw from the global seeds
    arch = dict(
        architecture=model.architecture, hidden=model.hidden, filters=model.filters, conv_dense=model.conv_dense
    )
    encoder = build_encoder(shape, model.latent_dim, sphere_radius=model.sphere_radius, **arch)
    decoder = build_decoder(shape, model.latent_dim, likelihood=model.likelihood, **arch)
    return VAE(encoder, decoder, build_prior(prior.kind, model.latent_dim, prior.components, prior.covariance, seed))


def _adam(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule, jit: bool, loss_scaling: bool = False
) -> keras.optimizers.Optimizer:
    """Adam whose update is XLA-compiled with ``jit`` (Keras compiles it only when it sees a GPU, but it
    pays on a CPU too), in a dynamic ``LossScaleOptimizer`` with ``loss_scaling``."""
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.jit_compile = jit
    return keras.mixed_precision.LossScaleOptimizer(optimizer) if loss_scaling else optimizer


def _decayed(lr: float, decay: float, every_steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if decay == 1.0:
        return lr
    return keras.optimizers.schedules.ExponentialDecay(lr, every_steps, decay, staircase=True)


@dataclass
class State:
    """The model and its optimizers: ``updates`` pairs each ELBO-phase optimizer with its variables."""

    vae: VAE
    optimizer: keras.optimizers.Optimizer  # its step counter is the run's step
    updates: list[tuple[keras.optimizers.Optimizer, list[tf.Variable]]]
    optimizers: dict[str, keras.optimizers.Optimizer]  # what the checkpoint holds, by name
    pre_optimizer: keras.optimizers.Optimizer


def _built_vae(cfg: Config, shape: tuple[int, ...]) -> VAE:
    """The VAE with the hidden layers in ``trainer.precision`` (the policy is read when layers are built)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(cfg.trainer.precision)
    try:
        return build_vae(shape, cfg.model, cfg.prior, cfg.seed)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_state(cfg: Config, shape: tuple[int, ...], steps_per_epoch: int) -> State:
    """Model and optimizers (slots built, so checkpoints restore at once); call in ``strategy.scope()``."""
    t = cfg.trainer
    vae = _built_vae(cfg, shape)
    decay_steps = t.lr_decay_epochs * steps_per_epoch
    jit, scaled = use_jit(t.jit, cfg.model.architecture, t.precision).update, t.precision == "mixed_float16"
    optimizer = _adam(_decayed(t.lr, t.lr_decay, decay_steps), jit, scaled)  # the networks' (float16 layers)
    updates = [(optimizer, list(vae.trainable_variables))]
    optimizers = {"optimizer": optimizer}
    if t.prior_lr is not None and vae.prior.trainable_variables:
        prior_optimizer = _adam(_decayed(t.prior_lr, t.lr_decay, decay_steps), jit)
        updates = [(optimizer, vae.network_variables), (prior_optimizer, list(vae.prior.trainable_variables))]
        optimizers["prior_optimizer"] = prior_optimizer
    for opt, vs in updates:
        opt.build(vs)
    return State(vae, optimizer, updates, optimizers, pretrain_optimizer(cfg, vae))


def take_configured_rates(cfg: Config, optimizers: dict[str, keras.optimizers.Optimizer]) -> None:
    """After a restore, give the ELBO phase's optimizers the constant learning rates of ``cfg``: the
    checkpoint holds the rates it was trained at, and a run resumed with a lower ``trainer.lr`` (the
    advice after a divergence) must train at that. A decaying schedule is rebuilt from ``cfg`` anyway."""
    t = cfg.trainer
    if t.lr_decay == 1.0:
        rates = {"optimizer": t.lr, "prior_optimizer": t.prior_lr}
        for name, optimizer in optimizers.items():
            optimizer.learning_rate.assign(rates[name])


def pretrain_optimizer(cfg: Config, vae: VAE) -> keras.optimizers.Optimizer:
    """A fresh optimizer of pretraining, built; call in ``strategy.scope()``."""
    jit = use_jit(cfg.trainer.jit, cfg.model.architecture, cfg.trainer.precision).update
    optimizer = _adam(cfg.trainer.pretrain_lr, jit, cfg.trainer.precision == "mixed_float16")
    optimizer.build(vae.network_variables)
    return optimizer
