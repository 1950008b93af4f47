"""``train.py``'s job: train (or resume) a mixture-prior VAE in a run directory.

A run has up to two phases, each resumable on its own:

1. ``pretrain`` (``trainer.pretrain_epochs``): the encoder and decoder as a plain autoencoder
   (z = encoder mean), checkpointed under ``checkpoints/pretrain``; then the prior is fitted to the
   pretrained latent means (``prior.init``) and saved at once as ``ckpt-0``
   (:mod:`vaemix.apps.pretraining`, which also keeps the best of ``trainer.pretrain_candidates``).
2. the ELBO phase: distortion + beta * rate, beta warming up over ``trainer.kl_warmup_epochs``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from pathlib import Path

import tensorflow as tf

from vaemix.apps.loop import Loop, Phase
from vaemix.apps.pretraining import initialise
from vaemix.apps.resolve import resolve
from vaemix.apps.scoring import elbo_evaluator, model_report
from vaemix.apps.state import State, build_state, take_configured_rates
from vaemix.apps.steps import Schedule, StepOptions, make_schedule, make_train_step, use_jit
from vaemix.errors import VaemixError
from vaemix.infra.atomic import write_json
from vaemix.infra.checkpoints import Checkpoints
from vaemix.infra.config import Config
from vaemix.infra.datasets import load_dataset
from vaemix.infra.examples import Dataset
from vaemix.infra.lock import RunLock
from vaemix.infra.pictures import all_pictures
from vaemix.infra.rundir import (
    RUN_CONFIG,
    check_run_config,
    read_data_record,
    record_command,
    set_aside,
    write_data_record,
)
from vaemix.infra.strategies import is_chief, make_strategy
from vaemix.infra.summaries import Summaries, hparam_values, prior_scalars
from vaemix.maths.streams import AUGMENTATION_VIEWS
from vaemix.maths.vae import VAE

log = logging.getLogger("vaemix")

# What a multi-worker run's surviving workers see when a peer dies: its collectives fail.
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
    tf.errors.InternalError,
)


def training_pictures(vae: VAE, data: Dataset, seed: int, n: int = 1000) -> dict:
    """Pictures of the model on (up to ``n``) test examples, for TensorBoard while training."""
    test = data.test.first(n)
    _, z, clusters = model_report(vae, test)
    return all_pictures(vae, next(test.first(32).batches(32)), z, clusters, test.labels, seed, data.features)


def _eval_metrics(vae: VAE, data: Dataset, cfg: Config, summaries: Summaries):
    """``step -> held-out metrics``: ELBO, the model's clusters, the prior's weights; logged as ``eval/``."""
    evaluate = elbo_evaluator(vae, cfg.seed, cfg.trainer.eval_samples)

    def at(step: int) -> dict[str, float]:
        clustering, _, _ = model_report(vae, data.test)
        values = {f"eval/{k}": float(v) for k, v in (evaluate(data.test) | clustering).items()}
        values |= prior_scalars(vae.prior)
        summaries.scalars(step, values)
        return values

    return at


def _initialise(loop: Loop, state: State, run_dir: Path, eval_metrics) -> None:
    """A fresh run's start: pretraining and the prior's fit (:mod:`vaemix.apps.pretraining`), then the
    initial model's test metrics at step 0."""
    cfg = loop.cfg
    kept = initialise(loop, state, run_dir)
    if "agreement" in kept:
        acc = eval_metrics(0).get("eval/cluster_acc")
        log.info(
            "prior initialised by %s (the consensus of %d fits: mean ARI %.3f to the others): test cluster_acc %s",
            cfg.prior.init,
            cfg.prior.init_restarts,
            kept["agreement"],
            "n/a" if acc is None else f"{acc:.3f}",
        )


def _beta(warmup_steps: int):
    """The rate's weight at a step: rising linearly to 1 over ``warmup_steps``."""
    if not warmup_steps:
        return lambda step: 1.0
    return lambda step: tf.minimum(1.0, tf.cast(step + 1, tf.float32) / warmup_steps)


def _elbo_phase(loop: Loop, state: State, schedule: Schedule, ckpts: Checkpoints, eval_metrics) -> Phase:
    cfg, vae = loop.cfg, state.vae
    t = cfg.trainer
    options = StepOptions(
        seed=cfg.seed,
        jit=use_jit(t.jit, cfg.model.architecture, t.precision),
        kl_samples=t.kl_samples,
        beta=_beta(t.kl_warmup_epochs * schedule.steps_per_epoch),
        contrastive=t.contrastive,
        temperature=t.temperature,
    )
    train_steps, check_finite = make_train_step(vae, state.updates, loop.strategy, schedule, options)
    pictures = lambda step: loop.summaries.images(step, training_pictures(vae, loop.data, cfg.seed), "train")  # noqa: E731
    return Phase(
        "train",
        schedule,
        train_steps,
        check_finite,
        ckpts,
        cfg.seed,
        views=AUGMENTATION_VIEWS if t.contrastive else 1,
        on_epoch=eval_metrics,
        on_picture=pictures,
    )


def _prepare_run_dir(run_dir: Path, cfg: Config, chief: bool, replicas: int, command: list[str] | None):
    """The data, the resolved config, checked against (or recorded as) the run's record."""
    if cfg.trainer.overwrite and chief:
        if aside := set_aside(run_dir):
            log.info("trainer.overwrite=true: the run dir's earlier files are in %s", aside)
    previous = read_data_record(run_dir, missing_ok=True) if (run_dir / RUN_CONFIG).is_file() else None
    data, record = load_dataset(cfg.data, cfg.seed, previous)
    cfg = resolve(cfg, data, replicas)
    check_run_config(run_dir, cfg, write=chief)
    if chief:
        if previous is None:
            write_data_record(run_dir, record)
        if command:
            record_command(run_dir, command)
    return data, cfg


def _result(step: int, data: Dataset, metrics: dict, final: dict) -> dict:
    return {
        "step": step,
        "num_examples": len(data.test),
        **{k.removeprefix("eval/"): v for k, v in final.items() if k.startswith("eval/")},
        **{k: v for k, v in metrics.items() if k.startswith("train/")},
        **{k: v for k, v in final.items() if k.startswith("prior/")},
    }


def _train(strategy, cfg: Config, run_dir: Path, chief: bool, command: list[str] | None) -> dict[str, float]:
    data, cfg = _prepare_run_dir(run_dir, cfg, chief, strategy.num_replicas_in_sync, command)
    t = cfg.trainer
    schedule = make_schedule(len(data.train), t.batch_size, strategy.num_replicas_in_sync, t.epochs, t.max_steps)
    with strategy.scope():
        state = build_state(cfg, data.shape, schedule.steps_per_epoch)
    ckpts = Checkpoints.for_model(run_dir / "checkpoints", state.vae, state.optimizers, t.keep_checkpoints, chief)
    loop = Loop(strategy, data, cfg, chief, Summaries(run_dir / "tensorboard", enabled=chief))
    eval_metrics = _eval_metrics(state.vae, data, cfg, loop.summaries)
    if restored := ckpts.restore():
        log.info("resumed from %s at step %d", restored, int(state.optimizer.iterations.numpy()))
        take_configured_rates(cfg, state.optimizers)
    else:
        loop.summaries.hparams(hparam_values(asdict(cfg)), trial=run_dir.name)
        _initialise(loop, state, run_dir, eval_metrics)
        ckpts.save(0)  # the pretrained networks and the fitted prior are never redone (ckpt-0 is pinned)
    start = int(state.optimizer.iterations.numpy())
    metrics = loop.run(_elbo_phase(loop, state, schedule, ckpts, eval_metrics), start)
    if start >= schedule.total_steps:
        log.info("already trained to step %d; evaluating only", start)
    step = int(state.optimizer.iterations.numpy())
    result = _result(step, data, metrics, eval_metrics(step))
    if chief:
        write_json(run_dir / "metrics.json", result)
    ckpts.close()
    return result


def train(cfg: Config, run_dir: str | Path, command: list[str] | None = None) -> dict[str, float]:
    """Train (or resume) the run in ``run_dir`` as ``cfg`` says, holding the run dir's lock (the chief);
    return the final metrics. ``command`` (the entry script's ``sys.argv``) is recorded in ``commands.log``."""
    strategy = make_strategy(cfg.strategy.kind, cfg.strategy.devices)  # before any other TF op
    if cfg.trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    run_dir, chief = Path(run_dir), is_chief(strategy)
    with RunLock(run_dir) if chief else contextlib.nullcontext():
        try:
            return _train(strategy, cfg, run_dir, chief, command)
        except PEER_ERRORS as e:
            if cfg.strategy.kind != "multi_worker":
                raise
            raise VaemixError(
                f"a worker of the cluster stopped answering ({type(e).__name__}); rerun every worker's command "
                "to resume from the chief's last checkpoint"
            ) from None
