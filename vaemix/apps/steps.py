"""The distributed training step: the schedule of global batches, the choice of XLA, and
:func:`make_train_step`, which runs the steps between two log lines in one ``tf.function`` call under any
``tf.distribute`` strategy and records the first step that stopped being finite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import tensorflow as tf

from vaemix.errors import VaemixError
from vaemix.infra.pipeline import steps_per_epoch
from vaemix.maths.keras import keras  # tf_keras (Keras 2)
from vaemix.maths.objectives import autoencoder_terms, contrastive_loss, elbo, latent_noise
from vaemix.maths.vae import VAE

_TERMS = ("reconstruction", "kl", "gradients")
Updates = list[tuple[keras.optimizers.Optimizer, list[tf.Variable]]]


class NonFiniteError(VaemixError):
    """The loss or the gradients stopped being finite."""


@dataclass
class Schedule:
    """How many steps, in which global batches."""

    global_batch: int
    replicas: int
    steps_per_epoch: int
    total_steps: int

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.replicas


def make_schedule(num_examples: int, batch_size: int, replicas: int, epochs: int, max_steps: int | None) -> Schedule:
    if batch_size % replicas:
        raise VaemixError(f"trainer.batch_size={batch_size} must be divisible by the {replicas} replicas")
    if batch_size > num_examples:
        raise VaemixError(f"trainer.batch_size={batch_size} is larger than the {num_examples} training examples")
    spe = steps_per_epoch(num_examples, batch_size)
    return Schedule(batch_size, replicas, spe, max_steps if max_steps is not None else epochs * spe)


class Jit(NamedTuple):
    """Where XLA compiles: the per-replica loss and gradients (``step``), or else only their latent maths
    (``latent``: see :func:`vaemix.maths.objectives.latent_terms`), and the optimizer update (``update``)."""

    step: bool
    latent: bool
    update: bool


def use_jit(setting: str, architecture: str, precision: str = "float32") -> Jit:
    """Resolve ``trainer.jit``; ``auto`` is what measured fastest (benchmarks/README.md).

    On a CPU, XLA speeds the float32 MLP's whole step but slows the conv net's convolutions and the
    bfloat16 MLP's matrix products (oneDNN's run on the CPU's bfloat16 units, XLA's do not), so there it
    compiles only the latent maths around them; it compiles the optimizer update everywhere, and with a
    GPU everything. ``false`` turns XLA off everywhere. ``latent`` is never set with ``step``: an XLA
    function nested in the XLA step runs far slower."""
    if setting != "auto":
        return Jit(setting == "true", False, setting == "true")
    on_cpu = not tf.config.list_physical_devices("GPU")
    whole = not on_cpu or (architecture == "mlp" and precision != "mixed_bfloat16")
    return Jit(whole, not whole, True)


def all_finite(tensors: list[tf.Tensor]) -> tf.Tensor:
    """Whether every element of every float32 tensor is finite (True for none).

    A NaN or an infinity anywhere makes the sum non-finite, and finite float32 gradients would need
    entries near 1e32 to overflow it: one pass over the tensors instead of an elementwise ``is_finite``
    and its reduction."""
    return tf.math.is_finite(tf.add_n([tf.constant(0.0)] + [tf.reduce_sum(t) for t in tensors]))


@dataclass(frozen=True)
class StepOptions:
    """What a training step computes besides the model and its optimizers."""

    seed: int  # the latent noise of step s is drawn from the stateless seed (seed, s)
    jit: Jit
    kl_samples: int = 1  # samples of z per example; 0 trains a plain autoencoder (z = the encoder mean)
    beta: Callable[[tf.Tensor], tf.Tensor | float] = lambda step: 1.0  # weight of the rate at a step
    contrastive: float = 0.0  # weight of contrastive_loss between the encoder means of two views
    temperature: float = 1.0


class _Divergence:
    """Records the first step whose loss or gradients were not finite, and which of them."""

    def __init__(self) -> None:
        self.first_bad = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.bad_terms = tf.Variable([False] * len(_TERMS), trainable=False)

    def record(self, step: tf.Tensor, ok: tf.Tensor) -> None:
        is_first = (self.first_bad < 0) & ~tf.reduce_all(ok)
        self.first_bad.assign(tf.where(is_first, step, self.first_bad))
        self.bad_terms.assign(tf.where(is_first, ~ok, self.bad_terms))

    def check(self) -> None:
        step = int(self.first_bad.numpy())
        if step >= 0:
            terms = [t for t, bad in zip(_TERMS, self.bad_terms.numpy(), strict=True) if bad]
            raise NonFiniteError(
                f"training diverged at step {step + 1}: non-finite {', '.join(terms)}; "
                "the last good checkpoint is kept (lower trainer.lr, or try prior.covariance=diag)"
            )


def _loss_and_grads(vae: VAE, updates: Updates, options: StepOptions, global_batch: int):
    """``(views, targets, noise, beta) -> (distortion sum, rate sum, gradients, gradients finite)`` for one
    replica's batch, the loss averaged over the *global* batch."""
    variables = [v for _, vs in updates for v in vs]
    # Under mixed_float16 the network optimizer scales the loss, and skips the steps whose float16
    # gradients overflowed (lowering the scale): those are not divergence. Other gradients must be finite.
    scaler = loss_scaler(updates)
    scaled = {id(v) for o, vs in updates if o is scaler for v in vs}
    checked = [i for i, v in enumerate(variables) if id(v) not in scaled]

    def compute(views: tuple[tf.Tensor, ...], targets: tf.Tensor, noise: tf.Tensor, beta: tf.Tensor):
        with tf.GradientTape() as tape:
            if options.kl_samples:
                terms = elbo(vae, targets, noise, inputs=views[0], xla=options.jit.latent)
            else:
                terms = autoencoder_terms(vae, targets, inputs=views[0])
            per_example = terms.distortion + beta * terms.rate
            if options.contrastive:
                other = vae.encoder(views[1]).mean()
                per_example += options.contrastive * contrastive_loss(terms.latent_mean, other, options.temperature)
            # Mean over the global batch, so summing replicas' gradients gives the global gradient.
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if scaler:
                loss = scaler.get_scaled_loss(loss)
        grads = tape.gradient(loss, variables)
        if scaler:
            grads = scaler.get_unscaled_gradients(grads)
        # Checked here, not after: inside an XLA cluster the sums fuse into the backward pass.
        grads_ok = all_finite([grads[i] for i in checked])
        return tf.reduce_sum(terms.distortion), tf.reduce_sum(terms.rate), grads, grads_ok

    # XLA compiles the per-replica maths only: a jit-compiled function around strategy.run fails.
    return tf.function(compute, jit_compile=True) if options.jit.step else compute


def loss_scaler(updates: Updates) -> keras.mixed_precision.LossScaleOptimizer | None:
    """The optimizer that scales the loss (mixed_float16), if any."""
    return next((o for o, _ in updates if isinstance(o, keras.mixed_precision.LossScaleOptimizer)), None)


def _replica_step(vae: VAE, updates: Updates, options: StepOptions, schedule: Schedule):
    """``(batch, step, beta) -> (distortion sum, rate sum, gradients finite)``: one replica's update."""
    gb, b, d = schedule.global_batch, schedule.local_batch, vae.latent_dim
    compute = _loss_and_grads(vae, updates, options, gb)

    def step_fn(batch: tuple[tuple[tf.Tensor, ...], tf.Tensor], step: tf.Tensor, beta: tf.Tensor):
        # A multi-worker iterator read inside the loop forgets the static batch size, which XLA needs.
        shape = [b, *batch[1].shape[1:]]
        views, targets = tuple(tf.ensure_shape(v, shape) for v in batch[0]), tf.ensure_shape(batch[1], shape)
        if options.kl_samples:
            # Noise for the whole global batch, then this replica's rows: the same z whatever the layout.
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            noise = latent_noise(options.seed, step, [options.kl_samples, gb, d])[:, replica * b : (replica + 1) * b]
        else:
            noise = tf.zeros([1, tf.shape(targets)[0], d])
        distortion, rate, grads, grads_ok = compute(views, targets, noise, beta)
        i = 0
        for optimizer, vs in updates:
            optimizer.apply_gradients(zip(grads[i : i + len(vs)], vs, strict=True))
            i += len(vs)
        return distortion, rate, tf.cast(grads_ok, tf.float32)

    return step_fn


def make_train_step(
    vae: VAE, updates: Updates, strategy: tf.distribute.Strategy, schedule: Schedule, options: StepOptions
) -> tuple[Callable, Callable[[], None]]:
    """``train_steps(batches, start, count) -> global means of the last step`` and a ``check_finite()``
    that raises at the first step whose loss or gradients were not finite.

    ``train_steps`` runs steps ``[start, start + count)`` on the distributed iterator ``batches`` of
    per-replica ``(views, targets)`` in one ``tf.function`` call: no Python between steps.
    ``updates`` pairs each optimizer with the variables it updates.
    """
    replica_step = _replica_step(vae, updates, options, schedule)
    divergence, scaler, gb = _Divergence(), loss_scaler(updates), schedule.global_batch

    def train_step(batch, step: tf.Tensor) -> dict[str, tf.Tensor]:
        weight = tf.cast(options.beta(step), tf.float32)
        distortion, rate, grads_ok = strategy.run(replica_step, args=(batch, step, weight))
        total = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)  # noqa: E731
        rec, kl = total(distortion) / gb, total(rate) / gb
        divergence.record(
            step, tf.stack([tf.math.is_finite(rec), tf.math.is_finite(kl), total(grads_ok) >= schedule.replicas])
        )
        values = {"loss": rec + weight * kl, "reconstruction": rec, "kl": kl}
        if scaler:
            values["loss_scale"] = tf.cast(scaler.loss_scale, tf.float32)
        return values

    @tf.function
    def train_steps(batches, start: tf.Tensor, count: tf.Tensor) -> dict[str, tf.Tensor]:
        names = ["loss", "reconstruction", "kl"] + (["loss_scale"] if scaler else [])
        values = {k: tf.constant(0.0) for k in names}
        for i in tf.range(count):
            values = train_step(next(batches), start + i)
        return values

    return train_steps, divergence.check
