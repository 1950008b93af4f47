"""The training loop: a ``tf.function`` step under a ``tf.distribute`` strategy, with checkpoints,
TensorBoard scalars, a held-out ELBO each epoch, and exact resume from the latest checkpoint."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import tensorflow as tf
from tqdm.auto import tqdm

from vaemix.checkpoints import Checkpoints
from vaemix.config import Config
from vaemix.data import ImageData, data_kwargs, index_batches, load, steps_per_epoch, train_dataset
from vaemix.errors import UserError
from vaemix.evaluation import elbo_evaluator, model_report
from vaemix.keras import keras
from vaemix.models import VAE, build_vae_and_optimizer
from vaemix.objectives import elbo, latent_noise
from vaemix.pictures import all_pictures
from vaemix.strategies import is_chief, make_strategy
from vaemix.summaries import Summaries, flat_hparams, prior_scalars, write_json

log = logging.getLogger("vaemix")

_TERMS = ("reconstruction", "kl", "gradients")


class NonFiniteError(UserError):
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
        raise UserError(f"trainer.batch_size={batch_size} must be divisible by the {replicas} replicas")
    if batch_size > num_examples:
        raise UserError(f"trainer.batch_size={batch_size} is larger than the {num_examples} training examples")
    spe = steps_per_epoch(num_examples, batch_size)
    return Schedule(batch_size, replicas, spe, max_steps if max_steps is not None else epochs * spe)


def training_pictures(vae: VAE, data: ImageData, seed: int, n: int = 1000) -> dict:
    """Pictures of the model on (up to ``n``) test images, for TensorBoard while training."""
    images, labels = data.test_images[:n], None if data.test_labels is None else data.test_labels[:n]
    _, z, clusters = model_report(vae, images, labels)
    return all_pictures(vae, images[:32].astype("float32") / 255.0, z, clusters, labels, seed)


def make_train_step(
    vae: VAE,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    schedule: Schedule,
    kl_samples: int,
    seed: int,
    jit: bool,
):
    """The distributed step ``(per-replica x, step) -> global means`` and the first-non-finite record."""
    variables = vae.trainable_variables
    gb, b, d = schedule.global_batch, schedule.local_batch, vae.latent_dim
    first_bad = tf.Variable(-1, dtype=tf.int64, trainable=False)  # step of the first non-finite update
    bad_terms = tf.Variable([False] * len(_TERMS), trainable=False)

    def loss_and_grads(x: tf.Tensor, noise: tf.Tensor):
        with tf.GradientTape() as tape:
            terms = elbo(vae, x, noise)
            # Mean over the *global* batch, so summing replicas' gradients gives the global gradient.
            loss = tf.nn.compute_average_loss(terms.distortion + terms.rate, global_batch_size=gb)
        grads = tape.gradient(loss, variables)
        return tf.reduce_sum(terms.distortion), tf.reduce_sum(terms.rate), grads

    # XLA compiles the per-replica maths only: a jit-compiled function around strategy.run fails.
    compute = tf.function(loss_and_grads, jit_compile=True) if jit else loss_and_grads

    def replica_step(x: tf.Tensor, step: tf.Tensor):
        # Noise for the whole global batch, then this replica's rows: the same z whatever the layout.
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        noise = latent_noise(seed, step, [kl_samples, gb, d])[:, replica * b : (replica + 1) * b]
        distortion, rate, grads = compute(x, noise)
        grads_ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return distortion, rate, tf.cast(grads_ok, tf.float32)

    @tf.function
    def train_step(x, step: tf.Tensor) -> dict[str, tf.Tensor]:
        distortion, rate, grads_ok = strategy.run(replica_step, args=(x, step))
        total = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)  # noqa: E731
        rec, kl = total(distortion) / gb, total(rate) / gb
        ok = tf.stack([tf.math.is_finite(rec), tf.math.is_finite(kl), total(grads_ok) >= schedule.replicas])
        is_first = (first_bad < 0) & ~tf.reduce_all(ok)
        first_bad.assign(tf.where(is_first, step, first_bad))
        bad_terms.assign(tf.where(is_first, ~ok, bad_terms))
        return {"train/loss": rec + kl, "train/reconstruction": rec, "train/kl": kl}

    def check_finite() -> None:
        step = int(first_bad.numpy())
        if step >= 0:
            terms = [t for t, bad in zip(_TERMS, bad_terms.numpy(), strict=True) if bad]
            raise NonFiniteError(
                f"training diverged at step {step + 1}: non-finite {', '.join(terms)}; "
                "the last good checkpoint is kept (lower trainer.lr, or try prior.covariance=diag)"
            )

    return train_step, check_finite


def train(cfg: Config, run_dir: str | Path) -> dict[str, float]:
    """Train (or resume) the run in ``run_dir`` as ``cfg`` says; return the final metrics."""
    strategy = make_strategy(cfg.strategy.kind, cfg.strategy.devices)  # before any other TF op
    run_dir = Path(run_dir)
    t, seed = cfg.trainer, cfg.seed
    chief = is_chief(strategy)
    data: ImageData = load(cfg.data.name, seed=seed, **data_kwargs(cfg.data))
    n = len(data.train_images)
    schedule = make_schedule(n, t.batch_size, strategy.num_replicas_in_sync, t.epochs, t.max_steps)

    with strategy.scope():
        vae, optimizer = build_vae_and_optimizer(data.image_shape, cfg.model, cfg.prior, t.lr, seed)
    ckpts = Checkpoints.for_model(run_dir / "checkpoints", vae, optimizer, t.keep_checkpoints, chief)
    restored = ckpts.restore()
    start = int(optimizer.iterations.numpy())
    if restored:
        log.info("resumed from %s at step %d", restored, start)
    summaries = Summaries(run_dir / "tensorboard", enabled=chief)
    summaries.hparams(flat_hparams(asdict(cfg)), trial=run_dir.name)
    train_step, check_finite = make_train_step(vae, optimizer, strategy, schedule, t.kl_samples, seed, t.jit)
    evaluate = elbo_evaluator(vae, seed, t.eval_samples)

    def pipeline(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        per_pipeline = schedule.replicas // ctx.num_input_pipelines
        mine = slice(ctx.input_pipeline_id * per_pipeline, (ctx.input_pipeline_id + 1) * per_pipeline)
        batches, counters = index_batches(
            n, schedule.global_batch, seed, start, schedule.total_steps, schedule.replicas, mine
        )
        return train_dataset(data.train_images, batches, counters, cfg.data.binarize, seed)

    metrics: dict[str, float] = {}
    if start < schedule.total_steps:
        batches = iter(strategy.distribute_datasets_from_function(pipeline))
        bar = tqdm(
            total=schedule.total_steps,
            initial=start,
            unit="step",
            dynamic_ncols=True,
            disable=not (t.progress and chief and sys.stderr.isatty()),
        )
        started = time.perf_counter()
        for step in range(start, schedule.total_steps):
            values = train_step(next(batches), tf.constant(step, tf.int64))
            done = step + 1
            bar.update(1)
            epoch_end = done % schedule.steps_per_epoch == 0
            last = done == schedule.total_steps
            if done % t.log_every == 0 or epoch_end or last:
                check_finite()
                metrics = {k: float(v) for k, v in values.items()}
                summaries.scalars(done, {**metrics, **prior_scalars(vae.prior)})
                bar.set_postfix(loss=f"{metrics['train/loss']:.2f}")
            if epoch_end or last:
                ev = evaluate(data.test_images)
                summaries.scalars(done, {f"eval/{k}": v for k, v in ev.items()})
                metrics.update({f"eval/{k}": v for k, v in ev.items()})
                log.info(
                    "epoch %d step %d/%d  train/loss %.2f  eval/elbo %.2f  (%.0f steps/s)",
                    done // schedule.steps_per_epoch,
                    done,
                    schedule.total_steps,
                    metrics["train/loss"],
                    ev["elbo"],
                    (done - start) / (time.perf_counter() - started),
                )
            if chief and (last or (t.image_every and done % t.image_every == 0)):
                summaries.images(done, training_pictures(vae, data, seed), "train")
            if done % t.checkpoint_every == 0 or last:
                check_finite()  # never save a state that went non-finite
                ckpts.save(done)
        bar.close()
        summaries.flush()
    else:
        log.info("already trained to step %d; evaluating only", start)

    ev = evaluate(data.test_images)
    result = {
        "step": int(optimizer.iterations.numpy()),
        "elbo": ev["elbo"],
        "reconstruction": ev["reconstruction"],
        "kl": ev["kl"],
        "num_examples": len(data.test_images),
        **{k: v for k, v in metrics.items() if k.startswith("train/")},
        **prior_scalars(vae.prior),
    }
    if chief:
        write_json(run_dir / "metrics.json", result)
    ckpts.close()
    return result
